"""
Two tiny FLUX.1-architecture pipelines for bench/engine/vs-torch, each as a diffusers checkpoint (what
PyTorch runs) and as optimum's ONNX export of that same checkpoint (what the engine runs):

- schnell-like: no guidance embedding, FLUX.1-schnell's scheduler (shift 1, no dynamic shifting), T5 length 256
- dev-like: guidance embedding, FLUX.1-dev's scheduler (shift 3, dynamic shifting), T5 length 512

The T5 length is each model's own (FLUX.1-schnell pads prompts to 256 tokens, FLUX.1-dev to 512), so the
dev-like transformer attends over 512 + image tokens, the schnell-like one over 256 + image tokens.
Weights are seeded random (nothing is downloaded). Output: .cache/bench/vs-torch/<shape>/{diffusers,onnx}.

  .venv-export/bin/python bench/engine/torch/build_models.py      # ~1 minute on 2 cores (see tools/flux_export)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "flux_export"))
from build_fixtures import build_components  # noqa: E402  (the exporter fixtures' tiny pipeline, same vocabularies)

OUT = os.path.join(ROOT, ".cache", "bench", "vs-torch")
SEED = 20241204
SHAPES = {
    "schnell": {"guidance_embeds": False, "max_sequence_length": 256, "guidance": 0.0,
                "scheduler": {"shift": 1.0, "use_dynamic_shifting": False, "base_shift": 0.5, "max_shift": 1.15,
                              "base_image_seq_len": 256, "max_image_seq_len": 4096}},
    "dev": {"guidance_embeds": True, "max_sequence_length": 512, "guidance": 3.5,
            "scheduler": {"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                          "base_image_seq_len": 256, "max_image_seq_len": 4096}},
}
WIDTH, HEIGHT, STEPS = 64, 48, 3


def build(shape: dict, work: str) -> FluxPipeline:
    torch.manual_seed(SEED)
    clip_tok, t5_tok, clip, t5, transformer, vae = build_components(work, guidance_embeds=shape["guidance_embeds"])
    scheduler = FlowMatchEulerDiscreteScheduler(**shape["scheduler"])
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    optimum = os.path.join(os.path.dirname(sys.executable), "optimum-cli")
    for name, shape in SHAPES.items():
        base = os.path.join(OUT, name)
        shutil.rmtree(base, ignore_errors=True)
        with tempfile.TemporaryDirectory() as work:
            pipe = build(shape, work)
            ckpt = os.path.join(base, "diffusers")
            pipe.save_pretrained(ckpt)
        onnx_dir = os.path.join(base, "onnx")
        subprocess.run([optimum, "export", "onnx", "--model", ckpt, "--task", "text-to-image", "--opset", "17", onnx_dir], check=True)
        settings = {"name": f"tiny-flux-{name}-like", "width": WIDTH, "height": HEIGHT, "steps": STEPS, "guidance": shape["guidance"],
                    "max_sequence_length": shape["max_sequence_length"]}
        json.dump(settings, open(os.path.join(onnx_dir, "t2i.json"), "w"), indent=1)
        json.dump(settings, open(os.path.join(base, "settings.json"), "w"), indent=1)
        print(f"{name}: {ckpt} and {onnx_dir}", flush=True)


if __name__ == "__main__":
    main()
