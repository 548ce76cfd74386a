#!/usr/bin/env python3
"""The VAE's ceiling: the judge's ground-truth renders (test/fixtures/eval/renders.png, 400 scenes)
encoded and decoded by a trained VAE, written as a sprite sheet the judge can score
(bench/eval/judge-sheet.ts). A shape the VAE cannot reproduce, no transformer can draw.
    .venv-flux/bin/python tools/flux_train/vae_roundtrip.py --work .cache/flux-train --out .cache/vae-roundtrip
    node --import tsx bench/eval/judge-sheet.ts .cache/vae-roundtrip
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="a train.py work folder (its vae.pt)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    state = torch.load(os.path.join(args.work, "vae.pt"), weights_only=False)
    train.set_latent_channels(train.checkpoint_channels(state))
    vae = AutoencoderKL(**train.VAE_CONFIG)
    vae.load_state_dict(state["model"])
    vae.eval()
    fixture = os.path.join(train.ROOT, "test", "fixtures", "eval")
    meta = json.load(open(os.path.join(fixture, "renders.json")))
    sheet = np.asarray(Image.open(os.path.join(fixture, "renders.png")).convert("RGB"))
    w, h, cols, n = meta["tileWidth"], meta["tileHeight"], meta["columns"], len(meta["scenes"])
    tiles = np.stack([sheet[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] for i in range(n)])
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        y = vae.decode(vae.encode(x).latent_dist.mean).sample
    y = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    out = np.concatenate([np.concatenate(list(y[r * cols : (r + 1) * cols]), 1) for r in range(n // cols)], 0)
    os.makedirs(args.out, exist_ok=True)
    Image.fromarray(out).save(os.path.join(args.out, "renders.png"))
    shutil.copy(os.path.join(fixture, "renders.json"), os.path.join(args.out, "renders.json"))
    print(f"{n} scenes through {args.work}/vae.pt ({train.LATENT_CHANNELS} latent channels) -> {args.out}")


if __name__ == "__main__":
    main()
