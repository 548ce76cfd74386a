"""Reference images of the bundled demo model from diffusers' own FluxPipeline, for the Node parity test.

The engine's true classifier-free guidance (t2i.json `true_cfg_scale`) must match diffusers'
FluxPipeline(true_cfg_scale=..., negative_prompt="") exactly, so this script loads the trained PyTorch
weights (the checkpoints train.py exported from), builds a real diffusers FluxPipeline around them with
the exported tokenizers and scheduler config, and writes, for a few prompts, with and without true CFG:
the initial packed latents (torch's RNG cannot be reproduced in JS), the final packed latents and the
decoded uint8 image, into test/fixtures/flux-shapes-reference/.

Run from the repository root after train.py has exported the model:
    .venv-flux/bin/python tools/flux_train/reference.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402  (the model definitions and constants of the bundled model)

PROMPTS = ["a red circle on the left on a blue background", "small green triangle, top left, white backdrop"]
SEEDS = [11, 12]


def load(work: str, model_dir: str):
    vae_state = torch.load(os.path.join(work, "vae.pt"), weights_only=False)
    train.set_latent_channels(train.checkpoint_channels(vae_state))
    clip, t5, clip_cfg = train.load_tokenizers()
    model = train.TextToImage(clip_cfg, t5.get_vocab_size(with_added_tokens=True))
    model.load_state_dict(torch.load(os.path.join(work, "transformer.pt"), weights_only=False)["model"])
    vae = AutoencoderKL(**train.VAE_CONFIG)
    vae.load_state_dict(vae_state["model"])
    vcfg = json.load(open(os.path.join(model_dir, "vae_decoder", "config.json")))
    vae.register_to_config(scaling_factor=vcfg["scaling_factor"], shift_factor=vcfg["shift_factor"])
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(model_dir, "scheduler"))
    sys.path.insert(0, os.path.join(train.ROOT, "tools", "flux_tiny"))
    import build as flux_tiny

    return flux_tiny.make_pipeline(model_dir, model.text_encoder.eval(), model.text_encoder_2.eval(), model.transformer.eval(), vae.eval(), sched)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.join(train.ROOT, ".cache", "flux-train"))
    ap.add_argument("--model", default=os.path.join(train.ROOT, "models", "tiny-flux-shapes"))
    ap.add_argument("--out", default=os.path.join(train.ROOT, "test", "fixtures", "flux-shapes-reference"))
    ap.add_argument("--true-cfg-scale", type=float, default=None, help="default: the model's t2i.json true_cfg_scale")
    args = ap.parse_args()
    pipe = load(args.work, args.model)
    t2i = json.load(open(os.path.join(args.model, "t2i.json")))
    width, height, steps, msl = t2i["width"], t2i["height"], t2i["steps"], t2i["max_sequence_length"]
    os.makedirs(args.out, exist_ok=True)
    cases = []
    for k, (prompt, seed) in enumerate(zip(PROMPTS, SEEDS)):
        noise = torch.randn(1, train.LATENT_CHANNELS, height // 4, width // 4, generator=torch.Generator().manual_seed(seed))
        packed = train.pack(noise)
        for scale in [1.0, args.true_cfg_scale or t2i.get("true_cfg_scale", 1.0)]:
            common = dict(prompt=prompt, height=height, width=width, num_inference_steps=steps, max_sequence_length=msl, latents=packed.clone())
            cfg = dict(negative_prompt="", true_cfg_scale=scale) if scale > 1 else {}
            final = pipe(**common, **cfg, output_type="latent").images
            image = pipe(**common, **cfg, output_type="np").images  # float [0, 1], HWC
            u8 = (image[0] * 255).round().clip(0, 255).astype(np.uint8)
            name = f"case{k}-cfg{scale:g}"
            packed.numpy().astype("<f4").tofile(os.path.join(args.out, f"{name}.initial_latents.f32"))
            final.numpy().astype("<f4").tofile(os.path.join(args.out, f"{name}.final_latents.f32"))
            u8.tofile(os.path.join(args.out, f"{name}.image.u8"))
            cases.append({"name": name, "prompt": prompt, "seed": seed, "true_cfg_scale": scale, "width": width, "height": height, "steps": steps, "max_sequence_length": msl})
            print(name, "mean level", float(u8.mean()))
    with open(os.path.join(args.out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"model": os.path.relpath(args.model, train.ROOT), "diffusers_pipeline": "FluxPipeline", "cases": cases}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
