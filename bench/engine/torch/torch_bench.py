"""
diffusers' FluxPipeline (PyTorch, CPU, float32) on a diffusers checkpoint: images/s for batches of prompts at
the given size and steps, after a warm-up. One JSON line on stdout. Run by bench/engine/vs-torch.ts, which
runs the engine on the ONNX export of the same checkpoint with the same settings in the same run.

  .venv-export/bin/python bench/engine/torch/torch_bench.py --model DIR --threads 1 --batch 8 --batches 10
"""
import argparse
import json
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: PyTorch's default")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--batches", type=int, default=10)
parser.add_argument("--width", type=int, default=64)
parser.add_argument("--height", type=int, default=48)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--guidance", type=float, default=3.5)
parser.add_argument("--max-sequence-length", type=int, required=True)
args = parser.parse_args()
if args.threads > 0:
    torch.set_num_threads(args.threads)

from diffusers import FluxPipeline  # noqa: E402  (after the thread setting)

pipe = FluxPipeline.from_pretrained(args.model, torch_dtype=torch.float32)
pipe.set_progress_bar_config(disable=True)


def run(first: int) -> None:
    prompts = [f"a photo of object number {first + i} on a table, studio light" for i in range(args.batch)]
    generator = [torch.Generator().manual_seed(first + i) for i in range(args.batch)]
    with torch.inference_mode():
        pipe(prompts, width=args.width, height=args.height, num_inference_steps=args.steps, guidance_scale=args.guidance,
             max_sequence_length=args.max_sequence_length, generator=generator, output_type="np")


run(0)  # warm-up
start = time.perf_counter()
for b in range(args.batches):
    run((b + 1) * args.batch)
seconds = time.perf_counter() - start
print(json.dumps({"imagesPerSecond": args.batches * args.batch / seconds, "msPerBatch": 1000 * seconds / args.batches,
                  "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
