#!/usr/bin/env python3
"""Model directories made by the REAL exporters, for the engine's parity tests: a tiny FLUX.1-dev
pipeline (diffusers / transformers classes, seeded random weights) saved as a diffusers checkpoint, then
  - optimum-fp32   `optimum-cli export onnx --task text-to-image` (optimum-onnx), files kept as written:
                   CLIP as vocab.json + merges.txt (no tokenizer.json), T5 as spiece.model
  - ort-fp16       onnxruntime's `optimize_pipeline.py --float16 --disable_layer_norm` over optimum-fp32
  - fp16-overflow  optimum-fp32 with the transformer's output projection scaled x1e6 and converted to
                   float16 I/O: its first step overflows to Inf (proves the engine's non-finite guard)
and diffusers FluxPipeline (PyTorch fp32) references for each: token ids, packed initial latents and
the uint8 images, in test/fixtures/exporters/<kind>/reference.json + .bin arrays.

Needs its own venv (optimum-onnx pins transformers < 4.58), see tools/flux_export/README.md:
    python3.11 -m venv .venv-export
    .venv-export/bin/pip install -r tools/flux_export/requirements.txt
    .venv-export/bin/python tools/flux_export/build_fixtures.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

torch.set_num_threads(2)

import diffusers  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import sentencepiece as spm  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "exporters")
SEED = 20261204
PROMPTS = [
    "a red fox in snow, morning light",
    "A café in Paris, naïve style — rain at night; 3 umbrellas!",
]
WIDTH, HEIGHT, STEPS, GUIDANCE, MSL = 64, 48, 3, 3.5, 32


def log(*a):
    print(*a, flush=True)


def t5_spiece(work: str) -> str:
    """A SentencePiece unigram model (T5's kind: pad 0, eos 1, unk 2, nmt_nfkc) trained on plain text."""
    corpus = os.path.join(work, "corpus.txt")
    words = open(os.path.join(ROOT, "models", "tiny-flux", "tokenizer", "vocab.json"), encoding="utf-8").read()
    vocab = [w[:-4] for w in json.loads(words) if w.endswith("</w>") and w[:-4].isalpha()]
    rng = np.random.default_rng(SEED)
    lines = [" ".join(rng.choice(vocab, size=rng.integers(4, 14))) for _ in range(4000)] + PROMPTS * 20
    open(corpus, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    prefix = os.path.join(work, "spiece")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=600, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", character_coverage=1.0, normalization_rule_name="nmt_nfkc",
        num_threads=1, minloglevel=2,
    )
    return prefix + ".model"


def build_components(work: str, guidance_embeds: bool = True):
    """Tokenizers, text encoders, transformer and VAE of a tiny FLUX.1 pipeline (random weights from torch's current seed)."""
    clip_tok = CLIPTokenizer(
        vocab_file=os.path.join(ROOT, "models", "tiny-flux", "tokenizer", "vocab.json"),
        merges_file=os.path.join(ROOT, "models", "tiny-flux", "tokenizer", "merges.txt"),
        model_max_length=77,
    )
    t5_tok = T5Tokenizer(vocab_file=t5_spiece(work), extra_ids=100, model_max_length=512, legacy=True)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32,
                                        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.eos_token_id)).eval()
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                                 is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                                         joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6)).eval()
    with torch.no_grad():
        for m in transformer.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(4.0)  # random init is nearly silent: make prompts, steps and positions matter
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(16, 32), layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64,
                        scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False).eval()
    with torch.no_grad():
        z = torch.randn(2, 4, 24, 32, generator=torch.Generator().manual_seed(SEED))
        gain = 0.45 / float(vae.decode(z).sample.std())
        vae.decoder.conv_out.weight.mul_(gain)
        vae.decoder.conv_out.bias.mul_(gain)
    return clip_tok, t5_tok, clip, t5, transformer, vae


def build_pipeline(work: str) -> FluxPipeline:
    torch.manual_seed(SEED)
    clip_tok, t5_tok, clip, t5, transformer, vae = build_components(work)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_references(pipe: FluxPipeline, out_dir: str) -> None:
    g = torch.Generator().manual_seed(SEED + 1)
    lh, lw = HEIGHT // 2, WIDTH // 2  # vae_scale_factor 2 (two VAE levels): latent = size / 2, then packed 2x2
    lat = torch.randn(len(PROMPTS), 4, lh, lw, generator=g)
    packed = lat.view(len(PROMPTS), 4, lh // 2, 2, lw // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(len(PROMPTS), (lh // 2) * (lw // 2), 16)
    clip_ids = pipe.tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True).input_ids
    t5_ids = pipe.tokenizer_2(PROMPTS, padding="max_length", max_length=MSL, truncation=True).input_ids
    with torch.no_grad():
        image = pipe(PROMPTS, height=HEIGHT, width=WIDTH, num_inference_steps=STEPS, guidance_scale=GUIDANCE, max_sequence_length=MSL,
                     latents=packed, output_type="np").images
    u8 = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    os.makedirs(out_dir, exist_ok=True)
    packed.numpy().astype("<f4").tofile(os.path.join(out_dir, "initial_latents.f32"))
    u8.tofile(os.path.join(out_dir, "image.u8"))
    json.dump({"prompts": PROMPTS, "width": WIDTH, "height": HEIGHT, "steps": STEPS, "guidance": GUIDANCE, "max_sequence_length": MSL,
               "clip_input_ids": clip_ids, "t5_input_ids": t5_ids,
               "initial_latents": {"file": "initial_latents.f32", "shape": list(packed.shape)},
               "image": {"file": "image.u8", "shape": list(u8.shape)},
               "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
                            "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}},
              open(os.path.join(out_dir, "reference.json"), "w"), indent=1)


def run(cmd: list[str]) -> None:
    log("$", " ".join(cmd))
    subprocess.run(cmd, check=True)


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    with tempfile.TemporaryDirectory() as work:
        pipe = build_pipeline(work)
        ckpt = os.path.join(work, "checkpoint")
        pipe.save_pretrained(ckpt)
        log("checkpoint files:", sorted(os.listdir(os.path.join(ckpt, "tokenizer"))), sorted(os.listdir(os.path.join(ckpt, "tokenizer_2"))))
        bin_dir = os.path.dirname(sys.executable)
        # 1. optimum-onnx, fp32, files as written
        optimum_dir = os.path.join(OUT, "optimum-fp32")
        run([os.path.join(bin_dir, "optimum-cli"), "export", "onnx", "--model", ckpt, "--task", "text-to-image", "--opset", "17", optimum_dir])
        write_references(pipe, os.path.join(optimum_dir, "_reference"))
        # 2. onnxruntime's FLUX optimizer, float16
        ort_dir = os.path.join(OUT, "ort-fp16")
        # --disable_layer_norm: onnxruntime 1.30's SimplifiedLayerNormalization fusion crashes on optimum's
        # RMSNorm export here ("'NodeProto' object is not subscriptable"); every other fusion still runs.
        run([sys.executable, "-m", "onnxruntime.transformers.models.stable_diffusion.optimize_pipeline", "-i", optimum_dir, "-o", ort_dir,
             "--float16", "--disable_layer_norm"])
        shutil.rmtree(os.path.join(ort_dir, "_reference"), ignore_errors=True)
        # 3. an fp16 transformer that overflows
        with torch.no_grad():
            pipe.transformer.proj_out.weight.mul_(1e6)
        over_ckpt = os.path.join(work, "overflow")
        pipe.save_pretrained(over_ckpt)
        over_dir = os.path.join(OUT, "fp16-overflow")
        run([os.path.join(bin_dir, "optimum-cli"), "export", "onnx", "--model", over_ckpt, "--task", "text-to-image", "--opset", "17", over_dir])
        from onnxruntime.transformers.float16 import convert_float_to_float16

        tr = os.path.join(over_dir, "transformer", "model.onnx")
        onnx.save(convert_float_to_float16(onnx.load(tr), keep_io_types=False), tr)
    sizes = {d: sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(OUT, d)) for f in fs) for d in os.listdir(OUT)}
    log("sizes", sizes)


if __name__ == "__main__":
    main()
