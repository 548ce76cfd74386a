#!/usr/bin/env python3
"""Build a TINY FLUX.1-dev-architecture model with the real diffusers / transformers classes
(random, seeded weights), export it to ONNX in optimum's layout, make an fp16-I/O variant, and write
reference outputs (computed with diffusers' FluxPipeline in PyTorch) for the Node parity tests.

Nothing is downloaded from a model hub: the CLIP BPE merges come from the vocabulary file bundled
in open_clip_torch, the T5 side is a SentencePiece unigram trained here on generated text.

Run from the repository root (see tools/flux_tiny/README.md):
    .venv-flux/bin/python tools/flux_tiny/build.py
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

torch.set_grad_enabled(False)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import diffusers  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
)
from diffusers.pipelines.flux.pipeline_flux import calculate_shift  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from tokenizers import processors as tk_processors  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

transformers.logging.set_verbosity_error()
diffusers.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()

SEED = 20240917
OPSET = 17

# ----------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------
CLIP_NUM_MERGES = 3000  # first N merges of CLIP's BPE -> vocab 256*2 + N + 2 = 3514
CLIP_HIDDEN = 32
T5_VOCAB_PIECES = 1000  # SentencePiece unigram pieces (incl. <pad>, </s>, <unk>); + 100 <extra_id_*>
T5_EXTRA_IDS = 100
T5_D_MODEL = 32
LATENT_CHANNELS = 4
MAX_SEQUENCE_LENGTH = 64  # T5 length used by default for this model (t2i.json)

TRANSFORMER_CONFIG = dict(
    patch_size=1,
    in_channels=4 * LATENT_CHANNELS,
    out_channels=None,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=T5_D_MODEL,
    pooled_projection_dim=CLIP_HIDDEN,
    guidance_embeds=True,
    axes_dims_rope=(4, 6, 6),
)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(16, 32),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=4,  # 4-8 channels per group like FLUX's VAE (32 groups of 128-512); 1 channel per group erases shift_factor
    sample_size=64,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
    force_upcast=True,
)

# FLUX.1-dev scheduler/scheduler_config.json
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)

T2I_DEFAULTS = {
    "name": "tiny-flux-dev-random",
    "width": 64,
    "height": 64,
    "steps": 4,
    "guidance": 3.5,
    "max_sequence_length": MAX_SEQUENCE_LENGTH,
}

# Weight gains that make the random transformer "loud" (see README: bug sensitivity).
TRANSFORMER_LINEAR_GAIN = math.sqrt(3.0)
TRANSFORMER_QK_NORM_WEIGHT = 3.0
TRANSFORMER_ADD_V_GAIN = 4.0  # text value projection of the double-stream blocks (after the x sqrt(3))
T5_QK_GAIN = 4.0  # T5 self-attention q and k weights: sharper attention spreads a changed token
VAE_CONV_IN_MEAN = 4.0  # per-output-channel mean added to decoder.conv_in (in units of its std)
# The VAE decoder's conv_out gain is set by calibration (keeps the decoded image mostly in [-1, 1]).

LONG_PROMPT = (
    "A breathtaking ultra detailed matte painting of an ancient floating city built on the backs of "
    "giant sleeping whales drifting above a misty turquoise ocean at golden hour, with waterfalls "
    "pouring from marble terraces, lanterns glowing in narrow winding streets, flocks of white birds "
    "circling copper domes, tiny fishermen casting nets from rope bridges, soft volumetric light, "
    "dramatic clouds, intricate architecture, vivid colors, cinematic composition, sharp focus, "
    "highly detailed, trending on artstation, octane render, 8k resolution, masterpiece"
)
UNICODE_PROMPT = "A café, naïve — 東京 at night!"
SHORT_PROMPT = "a photo of a cat sitting on a red chair"

TOKENIZER_CASES = [
    "",
    " ",
    "   \t\n  ",
    "a",
    "A photo of a cat",
    "a photo of a cat",
    "  leading and trailing spaces   ",
    "multiple    spaces\tand\ttabs\nand newlines",
    "Hello, World! It's a dog's life; isn't it? We're they'll I'd you've I'm",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "UPPER lower MiXeD CaSe",
    UNICODE_PROMPT,
    "Ünïcödé àçcénts: crème brûlée, jalapeño, smörgåsbord, façade",
    "emoji 🐱🚀✨ and 👩‍👩‍👧 family",
    "fullwidth punctuation：，。！ and ﬁ ligature, ½ fraction, ² superscript",
    "<|startoftext|> special tokens <|endoftext|> inside text",
    "t5 sentinels <extra_id_0> and <extra_id_99> and </s> <pad> <unk>",
    "hyphen-ated words, under_scores, slashes/and\\backslashes, #hashtags @mentions",
    "Ελληνικά, русский текст, العربية, हिन्दी, 한국어",
    "a " * 100,
    LONG_PROMPT,
    LONG_PROMPT + " " + LONG_PROMPT,
]


def log(*a):
    print(*a, flush=True)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# 1. Tokenizers
# ----------------------------------------------------------------------------------------------
def _clip_bpe_lines():
    import open_clip

    p = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    return gzip.open(p).read().decode("utf-8").split("\n")


def _bytes_to_unicode():
    # identical to openai/CLIP simple_tokenizer.bytes_to_unicode
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_clip_tokenizer(out_dir: str) -> dict:
    lines = _clip_bpe_lines()
    # line 0 is the "#version" header; openai/CLIP uses merges[1:49152-256-2+1]
    merges = [tuple(line.split()) for line in lines[1 : 1 + CLIP_NUM_MERGES]]
    byte_chars = list(_bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab_list) == len(set(vocab_list))
    vocab = {t: i for i, t in enumerate(vocab_list)}

    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert (bos, eos) == (len(vocab_list) - 2, len(vocab_list) - 1)
    os.makedirs(out_dir, exist_ok=True)
    tok.save_pretrained(out_dir)

    # Post-process the saved tokenizer.json: TemplateProcessing (BOS $A EOS), and merges in the
    # classic "a b" string form used by the openai/clip-vit-large-patch14 tokenizer.json.
    tj_path = os.path.join(out_dir, "tokenizer.json")
    tj = json.load(open(tj_path, encoding="utf-8"))
    tj["post_processor"] = json.loads(
        tk_processors.TemplateProcessing(
            single="<|startoftext|> $A <|endoftext|>",
            pair="<|startoftext|> $A <|endoftext|> $B:1 <|endoftext|>:1",
            special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)],
        ).__getstate__()
    )
    tj["model"]["merges"] = [" ".join(m) for m in tj["model"]["merges"]]
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=2)

    # The classic files too (vocab.json / merges.txt / special_tokens_map.json).
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    cfg_path = os.path.join(out_dir, "tokenizer_config.json")
    cfg = json.load(open(cfg_path, encoding="utf-8"))
    cfg.update(
        {
            "model_max_length": 77,
            "do_lower_case": True,
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": {
                str(bos): {"content": "<|startoftext|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
                str(eos): {"content": "<|endoftext|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
            },
        }
    )
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
    return {"vocab_size": len(vocab_list), "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos, "unk_token_id": eos}


def _t5_corpus() -> list[str]:
    """Deterministic English-ish text: words taken (frequency ordered) from CLIP's BPE merges."""
    rng = random.Random(SEED)
    words = []
    for line in _clip_bpe_lines()[1:20001]:
        w = "".join(line.split())
        if w.endswith("</w>") and re.fullmatch(r"[a-z]{2,}", w[:-4]):
            words.append(w[:-4])
    extra = (
        "a an the of in on at with by and or to from photo painting portrait landscape city night "
        "café naïve crème brûlée façade jalapeño déjà vu résumé über Zürich São Paulo Ålesund"
    ).split()
    punct = [".", ",", "!", "?", "", "", " 2024", " 3.5", ";", ":", " -", " (8k)", " 100%"]
    lines = []
    for _ in range(8000):
        n = rng.randint(4, 18)
        ws = []
        for _ in range(n):
            r = rng.random()
            if r < 0.2:
                ws.append(rng.choice(extra))
            elif r < 0.6:
                ws.append(rng.choice(words))
            else:
                ws.append(words[min(int(rng.paretovariate(0.7)), len(words)) - 1])
        s = " ".join(ws)
        if rng.random() < 0.3:
            s = s[:1].upper() + s[1:]
        s += rng.choice(punct)
        lines.append(s)
    return lines


def build_t5_tokenizer(out_dir: str, work_dir: str) -> dict:
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    corpus = os.path.join(work_dir, "t5_corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(_t5_corpus()) + "\n")
    prefix = os.path.join(work_dir, "t5spm")
    spm.SentencePieceTrainer.train(
        input=corpus,
        model_prefix=prefix,
        vocab_size=T5_VOCAB_PIECES,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        num_threads=1,
        seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(open(prefix + ".model", "rb").read())
    pieces = [(p.piece, p.score) for p in proto.pieces]
    assert pieces[0][0] == "<pad>" and pieces[1][0] == "</s>" and pieces[2][0] == "<unk>"
    # Like T5Converter: SentencePiece pieces, then <extra_id_99> ... <extra_id_0>.
    vocab = pieces + [(f"<extra_id_{i}>", 0.0) for i in range(T5_EXTRA_IDS - 1, -1, -1)]
    tok = T5Tokenizer(
        vocab=vocab,
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap,
        extra_ids=T5_EXTRA_IDS,
        model_max_length=512,
    )
    os.makedirs(out_dir, exist_ok=True)
    tok.save_pretrained(out_dir)
    # (spiece.model is not shipped: tokenizer.json is the source of truth and keeps the repo small)
    special = {
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "additional_special_tokens": [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)],
    }
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    cfg_path = os.path.join(out_dir, "tokenizer_config.json")
    cfg = json.load(open(cfg_path, encoding="utf-8"))
    cfg.update({"model_max_length": 512, "extra_ids": T5_EXTRA_IDS, "legacy": True, "clean_up_tokenization_spaces": False})
    cfg["additional_special_tokens"] = special["additional_special_tokens"]
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
    return {"vocab_size": len(vocab), "pad_token_id": 0, "eos_token_id": 1, "unk_token_id": 2}


# ----------------------------------------------------------------------------------------------
# 2. Models
# ----------------------------------------------------------------------------------------------
def build_models(clip_info: dict, t5_info: dict):
    seed_all(SEED + 1)
    clip_cfg = CLIPTextConfig(
        vocab_size=clip_info["vocab_size"],
        hidden_size=CLIP_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=CLIP_HIDDEN,
        bos_token_id=clip_info["bos_token_id"],
        eos_token_id=clip_info["eos_token_id"],
        pad_token_id=clip_info["pad_token_id"],
    )
    clip_cfg._attn_implementation = "eager"
    text_encoder = CLIPTextModel(clip_cfg).eval()

    seed_all(SEED + 2)
    t5_cfg = T5Config(
        vocab_size=t5_info["vocab_size"],
        d_model=T5_D_MODEL,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=0,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    t5_cfg._attn_implementation = "eager"
    text_encoder_2 = T5EncoderModel(t5_cfg).eval()

    seed_all(SEED + 3)
    transformer = FluxTransformer2DModel(**TRANSFORMER_CONFIG).eval()
    for name, mod in transformer.named_modules():
        if isinstance(mod, torch.nn.Linear):
            mod.weight.mul_(TRANSFORMER_LINEAR_GAIN)
        elif isinstance(mod, torch.nn.RMSNorm) and mod.weight is not None:
            mod.weight.fill_(TRANSFORMER_QK_NORM_WEIGHT)
    for blk in transformer.transformer_blocks:
        blk.attn.add_v_proj.weight.mul_(TRANSFORMER_ADD_V_GAIN)
    for blk in text_encoder_2.encoder.block:
        blk.layer[0].SelfAttention.q.weight.mul_(T5_QK_GAIN)
        blk.layer[0].SelfAttention.k.weight.mul_(T5_QK_GAIN)

    seed_all(SEED + 4)
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    w = vae.decoder.conv_in.weight
    sign = torch.sign(torch.randn(w.shape[0], 1, 1, 1, generator=torch.Generator().manual_seed(SEED + 6)))
    w.add_(VAE_CONV_IN_MEAN * w.std() * sign)

    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    return text_encoder, text_encoder_2, transformer, vae, scheduler


def calibrate_vae(pipe) -> dict:
    """Scale the VAE decoder's conv_out so decoded images of real (tiny-pipeline) latents spread
    inside [-1, 1] instead of being ~constant or clamped."""
    vae = pipe.vae
    zs = []
    for i, (prompt, w, h) in enumerate([(SHORT_PROMPT, 64, 64), (LONG_PROMPT, 80, 48)]):
        _, x = generate(pipe, prompt, w, h, 4, 3.5, MAX_SEQUENCE_LENGTH, packed_latents(1, w, h, SEED + 50 + i), decode=False)
        zs.append(unpack(x, h // 2, w // 2) / vae.config.scaling_factor + vae.config.shift_factor)
    outs = [vae.decode(z).sample for z in zs]
    std0 = float(torch.cat([o.flatten() for o in outs]).std())
    mean0 = float(torch.cat([o.flatten() for o in outs]).mean())
    gain = 0.45 / std0
    vae.decoder.conv_out.weight.mul_(gain)
    vae.decoder.conv_out.bias.mul_(gain)
    outs = torch.cat([vae.decode(z).sample.flatten() for z in zs])
    return {
        "conv_out_gain": gain,
        "image_std_before": std0,
        "image_mean_before": mean0,
        "image_std_after": float(outs.std()),
        "image_mean_after": float(outs.mean()),
        "frac_outside_unit": float(((outs < -1) | (outs > 1)).float().mean()),
    }


def load_tokenizers(model_dir: str):
    from transformers import T5TokenizerFast

    tok = CLIPTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"))
    tok2 = T5TokenizerFast.from_pretrained(os.path.join(model_dir, "tokenizer_2"))
    return tok, tok2


def make_pipeline(model_dir, text_encoder, text_encoder_2, transformer, vae, scheduler) -> FluxPipeline:
    tok, tok2 = load_tokenizers(model_dir)
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tok2,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------
# Reference-style generation with injectable bugs (mirrors FluxPipeline; checked against it)
# ----------------------------------------------------------------------------------------------
def clip_ids(pipe, prompts):
    return pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer_max_length, truncation=True, return_tensors="pt").input_ids


def t5_ids(pipe, prompts, msl):
    return pipe.tokenizer_2(prompts, padding="max_length", max_length=msl, truncation=True, return_tensors="pt").input_ids


def pack(lat):
    b, c, h, w = lat.shape
    return lat.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(x, lh, lw):
    b, n, ch = x.shape
    return x.view(b, lh // 2, lw // 2, ch // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, ch // 4, lh, lw)


def schedule(n, image_seq_len, cfg=SCHEDULER_CONFIG, mu=None):
    sch = FlowMatchEulerDiscreteScheduler(**cfg)
    if mu is None:
        mu = calculate_shift(image_seq_len, cfg["base_image_seq_len"], cfg["max_image_seq_len"], cfg["base_shift"], cfg["max_shift"])
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    return sch.sigmas.clone(), sch.timesteps.clone(), mu


def generate(pipe, prompt, width, height, steps, guidance, msl, latents, bug=None, decode=True):
    """Same math as FluxPipeline.__call__ (verified equal), with optional deliberate bugs."""
    te, te2, tr, vae = pipe.text_encoder, pipe.text_encoder_2, pipe.transformer, pipe.vae
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    B = len(prompts)
    cids = clip_ids(pipe, prompts)
    tids = t5_ids(pipe, prompts, msl)
    eos_c = te.config.eos_token_id
    if bug == "clip_wrong_token":
        cids = cids.clone()
        cids[:, 2] = (cids[:, 2] + 7) % (eos_c - 1)
    if bug == "clip_missing_eos":  # truncation that drops EOS (BOS + 76 content tokens): long prompts only
        full = pipe.tokenizer(prompts, truncation=False).input_ids
        cids = cids.clone()
        for b in range(B):
            if len(full[b]) > 77:
                cids[b] = torch.tensor(full[b][:77])
    if bug == "t5_wrong_token":
        tids = tids.clone()
        tids[:, 1] = (tids[:, 1] + 5) % 900 + 3
    if bug == "t5_missing_eos":
        tids = tids.clone()
        tids[tids == 1] = 0
    if bug == "t5_pad_with_eos":
        tids = tids.clone()
        first = (tids == 1).int().argmax(-1)
        for b in range(B):
            tids[b, first[b] + 1 :] = 1
    pooled = te(cids).pooler_output
    if bug == "clip_argmax_pool":  # legacy argmax pooling (eos_token_id == 2 path)
        h = te(cids).last_hidden_state
        pooled = h[torch.arange(B), cids.argmax(-1)]
    if bug == "clip_last_hidden_mean":
        pooled = te(cids).last_hidden_state.mean(1)
    emb = te2(tids).last_hidden_state
    txt_ids = torch.zeros(emb.shape[1], 3)
    if bug == "txt_ids_arange":
        txt_ids[:, 1] = torch.arange(emb.shape[1])

    vsf = 2 ** (len(vae.config.block_out_channels) - 1)
    lh, lw = 2 * (height // (vsf * 2)), 2 * (width // (vsf * 2))
    x = latents.clone()
    img_ids = torch.zeros(lh // 2, lw // 2, 3)
    img_ids[..., 1] += torch.arange(lh // 2)[:, None]
    img_ids[..., 2] += torch.arange(lw // 2)[None, :]
    img_ids = img_ids.reshape(-1, 3)
    if bug == "img_ids_swapped":
        img_ids = img_ids[:, [0, 2, 1]]
    if bug == "img_ids_zero":
        img_ids = torch.zeros_like(img_ids)

    seq = x.shape[1]
    if bug == "schedule_no_shift":
        sigmas, _, _ = schedule(steps, seq, mu=0.0)
    elif bug == "schedule_mu_4096":
        sigmas, _, _ = schedule(steps, 4096)
    else:
        sigmas, _, _ = schedule(steps, seq)
    timesteps = sigmas[:-1] * 1000.0
    g = torch.full([B], guidance, dtype=torch.float32)
    if bug == "guidance_x1000":
        g = g * 1000
    if bug == "guidance_one":
        g = torch.full([B], 1.0)
    if bug == "guidance_zero":
        g = torch.zeros(B)
    if bug == "pack_order":  # channel-major vs patch-major mix-up
        x = x.view(B, seq, LATENT_CHANNELS, 4).transpose(2, 3).reshape(B, seq, 4 * LATENT_CHANNELS)
    for i in range(steps):
        t = timesteps[i].expand(B).to(torch.float32) / 1000
        if bug == "timestep_x1000":
            t = t * 1000
        v = tr(hidden_states=x, timestep=t, guidance=g, pooled_projections=pooled, encoder_hidden_states=emb,
               txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        if bug == "euler_sign":
            x = x - (sigmas[i + 1] - sigmas[i]) * v
        elif bug == "one_step_less" and i == steps - 1:
            pass
        else:
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    if bug == "pack_order":
        x = x.view(B, seq, 4, LATENT_CHANNELS).transpose(2, 3).reshape(B, seq, 4 * LATENT_CHANNELS)
    if not decode:
        return None, x
    z = unpack(x, lh, lw)
    sf, sh = vae.config.scaling_factor, vae.config.shift_factor
    if bug == "vae_no_shift":
        z = z / sf
    elif bug == "vae_no_scale":
        z = z + sh
    elif bug == "vae_multiply_scale":
        z = z * sf + sh
    else:
        z = z / sf + sh
    img = vae.decode(z).sample
    img = (img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
    return (img * 255).round().astype(np.uint8), x


BUGS = [
    "clip_wrong_token",
    "clip_missing_eos",
    "clip_argmax_pool",
    "clip_last_hidden_mean",
    "t5_wrong_token",
    "t5_missing_eos",
    "t5_pad_with_eos",
    "txt_ids_arange",
    "img_ids_swapped",
    "img_ids_zero",
    "schedule_no_shift",
    "schedule_mu_4096",
    "timestep_x1000",
    "guidance_x1000",
    "guidance_one",
    "guidance_zero",
    "pack_order",
    "euler_sign",
    "one_step_less",
    "vae_no_shift",
    "vae_no_scale",
    "vae_multiply_scale",
]


def bug_sensitivity(pipe, latents_fn):
    rows = []
    for (prompt, w, h) in [(SHORT_PROMPT, 64, 64), (UNICODE_PROMPT, 80, 48), (LONG_PROMPT, 64, 64)]:
        lat = latents_fn(1, w, h, 999)
        base, _ = generate(pipe, prompt, w, h, 4, 3.5, MAX_SEQUENCE_LENGTH, lat)
        for bug in BUGS:
            img, _ = generate(pipe, prompt, w, h, 4, 3.5, MAX_SEQUENCE_LENGTH, lat, bug=bug)
            d = np.abs(img.astype(np.int32) - base.astype(np.int32))
            rows.append({"prompt": prompt, "width": w, "height": h, "bug": bug, "max_abs_u8": int(d.max()), "mean_abs_u8": round(float(d.mean()), 2)})
    return rows


# ----------------------------------------------------------------------------------------------
# 3. ONNX export (patched only for export)
# ----------------------------------------------------------------------------------------------
class ExportRMSNorm(torch.nn.Module):
    """torch.nn.RMSNorm with basic ops (aten::rms_norm is rejected by the TorchScript exporter)."""

    def __init__(self, src: torch.nn.RMSNorm):
        super().__init__()
        self.eps = src.eps if src.eps is not None else torch.finfo(torch.float32).eps
        self.weight = src.weight

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight
        return y.to(x.dtype)


def export_apply_rotary_emb(x, freqs_cis, use_real=True, use_real_unbind_dim=-1, sequence_dim=2):
    """diffusers.models.embeddings.apply_rotary_emb (use_real, unbind -1) with strided slicing
    instead of reshape(*x.shape[:-1], -1, 2), which bakes the traced sequence length."""
    cos, sin = freqs_cis
    if sequence_dim == 2:
        cos, sin = cos[None, None, :, :], sin[None, None, :, :]
    else:
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    x_real = x[..., 0::2]
    x_imag = x[..., 1::2]
    x_rotated = torch.stack([-x_imag, x_real], dim=-1).flatten(3)
    return (x.float() * cos + x_rotated.float() * sin).to(x.dtype)


@contextlib.contextmanager
def export_patches(transformer):
    import diffusers.models.transformers.transformer_flux as tf

    saved_rope = tf.apply_rotary_emb
    tf.apply_rotary_emb = export_apply_rotary_emb
    replaced = []
    for _, mod in transformer.named_modules():
        for cname, child in list(mod.named_children()):
            if isinstance(child, torch.nn.RMSNorm):
                setattr(mod, cname, ExportRMSNorm(child))
                replaced.append((mod, cname, child))
    try:
        yield
    finally:
        tf.apply_rotary_emb = saved_rope
        for mod, cname, child in replaced:
            setattr(mod, cname, child)


class TransformerWrapper(torch.nn.Module):
    def __init__(self, tr):
        super().__init__()
        self.tr = tr

    def forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids, guidance):
        return self.tr(
            hidden_states=hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            pooled_projections=pooled_projections,
            timestep=timestep,
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=guidance,
            return_dict=False,
        )[0]


class ClipWrapper(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        o = self.m(input_ids=input_ids)
        return o.last_hidden_state, o.pooler_output


class T5Wrapper(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m(input_ids=input_ids).last_hidden_state


class VaeDecoderWrapper(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


def _export(module, args, path, input_names, output_names, dynamic_axes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with warnings_quiet():
        torch.onnx.export(
            module,
            args,
            path,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    m = onnx.load(path)
    onnx.checker.check_model(m)
    # keep graphs self-contained, strip doc strings (file size, no local paths)
    for n in m.graph.node:
        n.doc_string = ""
    m.producer_name = "t2i-stream tools/flux_tiny"
    onnx.save(m, path)


@contextlib.contextmanager
def warnings_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def ids_grid(lh2, lw2):
    ids = torch.zeros(lh2, lw2, 3)
    ids[..., 1] += torch.arange(lh2)[:, None]
    ids[..., 2] += torch.arange(lw2)[None, :]
    return ids.reshape(-1, 3)


IDS_DTYPE = torch.int64  # img_ids / txt_ids: 2-D int64 (FluxPosEmbed does ids.float())


def transformer_inputs(B, lh2, lw2, T, g, dtype=torch.float32):
    S = lh2 * lw2
    return dict(
        hidden_states=torch.randn(B, S, TRANSFORMER_CONFIG["in_channels"], generator=g).to(dtype),
        encoder_hidden_states=torch.randn(B, T, T5_D_MODEL, generator=g).to(dtype),
        pooled_projections=torch.randn(B, CLIP_HIDDEN, generator=g).to(dtype),
        timestep=torch.rand(B, generator=g).to(dtype),
        img_ids=ids_grid(lh2, lw2).to(IDS_DTYPE),
        txt_ids=torch.zeros(T, 3, dtype=IDS_DTYPE),
        guidance=(torch.rand(B, generator=g) * 5 + 1).to(dtype),
    )


TR_INPUTS = ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids", "guidance"]


def export_all(model_dir, text_encoder, text_encoder_2, transformer, vae):
    g = torch.Generator().manual_seed(SEED + 10)
    # text encoders
    ids = torch.randint(0, text_encoder.config.vocab_size - 2, (2, 77), generator=g)
    ids[:, 0] = text_encoder.config.bos_token_id
    ids[:, 20:] = text_encoder.config.eos_token_id
    _export(ClipWrapper(text_encoder), (ids,), os.path.join(model_dir, "text_encoder", "model.onnx"),
            ["input_ids"], ["last_hidden_state", "pooler_output"],
            {"input_ids": {0: "batch_size", 1: "sequence_length"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"}, "pooler_output": {0: "batch_size"}})
    ids2 = torch.randint(0, text_encoder_2.config.vocab_size, (2, 32), generator=g)
    _export(T5Wrapper(text_encoder_2), (ids2,), os.path.join(model_dir, "text_encoder_2", "model.onnx"),
            ["input_ids"], ["last_hidden_state"],
            {"input_ids": {0: "batch_size", 1: "sequence_length"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"}})
    # transformer
    inp = transformer_inputs(2, 8, 10, 24, g)
    with export_patches(transformer):
        _export(TransformerWrapper(transformer), tuple(inp[k] for k in TR_INPUTS), os.path.join(model_dir, "transformer", "model.onnx"),
                TR_INPUTS, ["out_hidden_states"], TR_DYNAMIC_AXES)
    # vae decoder (no scaling inside)
    z = torch.randn(2, LATENT_CHANNELS, 16, 20, generator=g)
    _export(VaeDecoderWrapper(vae), (z,), os.path.join(model_dir, "vae_decoder", "model.onnx"),
            ["latent_sample"], ["sample"],
            {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"}, "sample": {0: "batch_size", 2: "height", 3: "width"}})


def ort_session(path):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def verify_exports(model_dir, text_encoder, text_encoder_2, transformer, vae):
    g = torch.Generator().manual_seed(SEED + 20)
    res = {}
    s = ort_session(os.path.join(model_dir, "text_encoder", "model.onnx"))
    worst = 0.0
    for B, L in [(1, 77), (3, 77), (3, 16)]:
        ids = torch.randint(0, text_encoder.config.vocab_size - 2, (B, L), generator=g)
        ids[:, 0] = text_encoder.config.bos_token_id
        for b in range(B):
            ids[b, 3 + 4 * b :] = text_encoder.config.eos_token_id
        o = text_encoder(ids)
        h, p = s.run(None, {"input_ids": ids.numpy()})
        worst = max(worst, float(np.abs(h - o.last_hidden_state.numpy()).max()), float(np.abs(p - o.pooler_output.numpy()).max()))
    res["text_encoder"] = worst
    s = ort_session(os.path.join(model_dir, "text_encoder_2", "model.onnx"))
    worst = 0.0
    for B, L in [(1, 64), (3, 64), (3, 17), (1, 512)]:
        ids = torch.randint(0, text_encoder_2.config.vocab_size, (B, L), generator=g)
        o = text_encoder_2(ids).last_hidden_state
        (h,) = s.run(None, {"input_ids": ids.numpy()})
        worst = max(worst, float(np.abs(h - o.numpy()).max()))
    res["text_encoder_2"] = worst
    s = ort_session(os.path.join(model_dir, "transformer", "model.onnx"))
    worst = 0.0
    for B, lh2, lw2, T in [(1, 16, 16, 64), (3, 16, 16, 64), (1, 12, 20, 32), (3, 12, 20, 77), (2, 32, 32, 512)]:
        inp = transformer_inputs(B, lh2, lw2, T, g)
        o = transformer(**{k: (v.float() if k.endswith("_ids") else v) for k, v in inp.items()}, return_dict=False)[0]
        (r,) = s.run(None, {k: v.numpy() for k, v in inp.items()})
        worst = max(worst, float(np.abs(r - o.numpy()).max()))
    res["transformer"] = worst
    s = ort_session(os.path.join(model_dir, "vae_decoder", "model.onnx"))
    worst = 0.0
    for B, lh, lw in [(1, 32, 32), (3, 32, 32), (1, 24, 40), (3, 24, 40)]:
        z = torch.randn(B, LATENT_CHANNELS, lh, lw, generator=g) * 2
        o = vae.decode(z).sample
        (r,) = s.run(None, {"latent_sample": z.numpy()})
        worst = max(worst, float(np.abs(r - o.numpy()).max()))
    res["vae_decoder"] = worst
    return res


def describe_onnx(path):
    m = onnx.load(path)
    tname = {v: k for k, v in onnx.TensorProto.DataType.items()}

    def dims(t):
        return [d.dim_param if d.dim_param else d.dim_value for d in t.type.tensor_type.shape.dim]

    init_names = {i.name for i in m.graph.initializer}
    return {
        "inputs": [{"name": i.name, "dtype": tname[i.type.tensor_type.elem_type].lower(), "shape": dims(i)} for i in m.graph.input if i.name not in init_names],
        "outputs": [{"name": o.name, "dtype": tname[o.type.tensor_type.elem_type].lower(), "shape": dims(o)} for o in m.graph.output],
        "bytes": os.path.getsize(path),
        "opset": m.opset_import[0].version,
    }


# ----------------------------------------------------------------------------------------------
# 4. fp16 variant
# ----------------------------------------------------------------------------------------------
TR_DYNAMIC_AXES = {
    "hidden_states": {0: "batch_size", 1: "packed_height_width"},
    "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
    "pooled_projections": {0: "batch_size"},
    "timestep": {0: "batch_size"},
    "img_ids": {0: "packed_height_width"},
    "txt_ids": {0: "sequence_length"},
    "guidance": {0: "batch_size"},
    "out_hidden_states": {0: "batch_size", 1: "packed_height_width"},
}


def make_fp16(model_dir, fp16_dir, transformer):
    """Copy the fp32 model dir and replace transformer/model.onnx by an export of the half-precision
    PyTorch transformer (float16 I/O; keeps diffusers' own fp32 islands: sinusoidal timestep
    embedding, RoPE, q/k RMSNorm). ids stay 2-D int64."""
    if os.path.exists(fp16_dir):
        shutil.rmtree(fp16_dir)
    shutil.copytree(model_dir, fp16_dir)
    dst = os.path.join(fp16_dir, "transformer", "model.onnx")
    tr16 = copy.deepcopy(transformer).half().eval()
    g = torch.Generator().manual_seed(SEED + 11)
    inp = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in transformer_inputs(2, 8, 10, 24, g).items()}
    with export_patches(tr16):
        _export(TransformerWrapper(tr16), tuple(inp[k] for k in TR_INPUTS), dst, TR_INPUTS, ["out_hidden_states"], TR_DYNAMIC_AXES)
    cfg_path = os.path.join(fp16_dir, "transformer", "config.json")
    cfg = json.load(open(cfg_path))
    cfg["torch_dtype"] = "float16"
    write_json(cfg_path, cfg)
    t2i = json.load(open(os.path.join(fp16_dir, "t2i.json")))
    t2i["name"] = "tiny-flux-dev-random-fp16"
    write_json(os.path.join(fp16_dir, "t2i.json"), t2i)

    s32 = ort_session(os.path.join(model_dir, "transformer", "model.onnx"))
    s16 = ort_session(dst)
    g = torch.Generator().manual_seed(SEED + 30)
    res = {"vs_fp32_onnx_max_abs": 0.0, "vs_fp32_onnx_max_abs_over_max_abs": 0.0, "vs_torch_half_max_abs": 0.0}
    for B, lh2, lw2, T in [(1, 16, 16, 64), (3, 12, 20, 32)]:
        inp = transformer_inputs(B, lh2, lw2, T, g)
        feed32 = {k: v.numpy() for k, v in inp.items()}
        feed16 = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in feed32.items()}
        (a,) = s32.run(None, feed32)
        (b,) = s16.run(None, feed16)
        assert b.dtype == np.float16
        th = tr16(**{k: (torch.from_numpy(v).float() if k.endswith("_ids") else torch.from_numpy(v)) for k, v in feed16.items()}, return_dict=False)[0]
        d = float(np.abs(a - b.astype(np.float32)).max())
        res["vs_fp32_onnx_max_abs"] = max(res["vs_fp32_onnx_max_abs"], d)
        res["vs_fp32_onnx_max_abs_over_max_abs"] = max(res["vs_fp32_onnx_max_abs_over_max_abs"], d / float(np.abs(a).max()))
        res["vs_torch_half_max_abs"] = max(res["vs_torch_half_max_abs"], float(np.abs(b.astype(np.float32) - th.float().numpy()).max()))
    return res


def ort_generate(model_dir, case, fp16=False):
    """The engine's algorithm with onnxruntime (python), fed the reference token ids and initial
    latents: text encoders -> transformer loop (Euler in float32) -> unpack/scale/shift -> VAE."""
    sess = {k: ort_session(os.path.join(model_dir, k, "model.onnx")) for k in ["text_encoder", "text_encoder_2", "transformer", "vae_decoder"]}
    B = case["batch_size"]
    cids = np.array(case["clip_input_ids"], dtype=np.int64)
    tids = np.array(case["t5_input_ids"], dtype=np.int64)
    _, pooled = sess["text_encoder"].run(None, {"input_ids": cids})
    (emb,) = sess["text_encoder_2"].run(None, {"input_ids": tids})
    lh, lw = case["latent_height"], case["latent_width"]
    x = np.fromfile(os.path.join(case["_ref_dir"], case["files"]["initial_latents"]["file"]), dtype="<f4").reshape(case["files"]["initial_latents"]["shape"])
    img_ids = ids_grid(lh // 2, lw // 2).numpy().astype(np.int64)
    txt_ids = np.zeros((tids.shape[1], 3), np.int64)
    sig = np.array(case["sigmas"], dtype=np.float32)
    ft = np.float16 if fp16 else np.float32
    first = None
    for i in range(case["num_inference_steps"]):
        t = np.full([B], case["transformer_timestep_inputs"][i], dtype=np.float32)
        (v,) = sess["transformer"].run(None, {
            "hidden_states": x.astype(ft), "encoder_hidden_states": emb.astype(ft), "pooled_projections": pooled.astype(ft),
            "timestep": t.astype(ft), "img_ids": img_ids, "txt_ids": txt_ids, "guidance": np.full([B], case["guidance_scale"], ft)})
        v = v.astype(np.float32)
        if first is None:
            first = v
        x = (x + (sig[i + 1] - sig[i]) * v).astype(np.float32)
    z = unpack(torch.from_numpy(x), lh, lw).numpy() / np.float32(case["vae_scaling_factor"]) + np.float32(case["vae_shift_factor"])
    (img,) = sess["vae_decoder"].run(None, {"latent_sample": z.astype(np.float32)})
    img = np.clip(img / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    return (img * 255).round().astype(np.uint8), x, first


# ----------------------------------------------------------------------------------------------
# 5. References
# ----------------------------------------------------------------------------------------------
def write_bin(ref_dir, name, arr, dtype):
    a = np.ascontiguousarray(np.asarray(arr), dtype=dtype)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    with open(os.path.join(ref_dir, name), "wb") as f:
        f.write(a.tobytes())
    suffix = {np.float32: "f32", np.uint8: "u8", np.int64: "i64"}[dtype]
    assert name.endswith("." + suffix)
    return {"file": name, "dtype": {"f32": "float32", "u8": "uint8", "i64": "int64"}[suffix], "shape": list(a.shape)}


def packed_latents(B, width, height, seed):
    lh, lw = height // 2, width // 2  # vae_scale_factor 2
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((B, LATENT_CHANNELS, lh, lw)).astype(np.float32)
    return pack(torch.from_numpy(lat))


REF_CASES = [
    # prompts (batch), width, height, steps, guidance, max_sequence_length
    dict(prompts=[SHORT_PROMPT], width=64, height=64, steps=4, guidance=3.5, msl=MAX_SEQUENCE_LENGTH),
    dict(prompts=[SHORT_PROMPT], width=80, height=48, steps=3, guidance=5.0, msl=MAX_SEQUENCE_LENGTH),
    dict(prompts=[LONG_PROMPT], width=64, height=64, steps=3, guidance=5.0, msl=MAX_SEQUENCE_LENGTH),
    dict(prompts=[LONG_PROMPT], width=80, height=48, steps=4, guidance=3.5, msl=MAX_SEQUENCE_LENGTH),
    dict(prompts=[UNICODE_PROMPT], width=64, height=64, steps=4, guidance=5.0, msl=MAX_SEQUENCE_LENGTH),
    dict(prompts=[UNICODE_PROMPT], width=80, height=48, steps=3, guidance=3.5, msl=32),
    dict(prompts=[SHORT_PROMPT, UNICODE_PROMPT], width=48, height=80, steps=4, guidance=3.5, msl=MAX_SEQUENCE_LENGTH),
]


def write_references(pipe, ref_dir, bug_rows):
    if os.path.exists(ref_dir):
        shutil.rmtree(ref_dir)
    os.makedirs(ref_dir)
    cases = []
    max_self_diff = 0
    for ci, c in enumerate(REF_CASES):
        B = len(c["prompts"])
        lat = packed_latents(B, c["width"], c["height"], SEED + 100 + ci)
        cap = {"calls": []}

        def hook(mod, args, kwargs, out):
            cap["calls"].append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()} | {"out": out[0].detach().clone()})

        h = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
        try:
            common = dict(prompt=c["prompts"], width=c["width"], height=c["height"], num_inference_steps=c["steps"],
                          guidance_scale=c["guidance"], max_sequence_length=c["msl"])
            out_np = pipe(**common, latents=lat.clone(), output_type="np").images
            sigmas = pipe.scheduler.sigmas.clone()
            timesteps = pipe.scheduler.timesteps.clone()
            calls = cap["calls"]
            cap["calls"] = []
            out_lat = pipe(**common, latents=lat.clone(), output_type="latent").images
        finally:
            h.remove()
        assert len(calls) == c["steps"]
        img_u8 = (out_np * 255).round().astype(np.uint8)
        # the bug-injectable reimplementation must match the real pipeline exactly
        mine, mine_lat = generate(pipe, c["prompts"], c["width"], c["height"], c["steps"], c["guidance"], c["msl"], lat)
        self_diff = int(np.abs(mine.astype(np.int32) - img_u8.astype(np.int32)).max())
        max_self_diff = max(max_self_diff, self_diff)
        assert float((mine_lat - out_lat).abs().max()) < 1e-5, "reimplementation differs from FluxPipeline"

        cids = clip_ids(pipe, c["prompts"])
        tids = t5_ids(pipe, c["prompts"], c["msl"])
        emb, pooled, _ = pipe.encode_prompt(prompt=c["prompts"], prompt_2=None, max_sequence_length=c["msl"])
        assert torch.equal(calls[0]["pooled_projections"], pooled) and torch.equal(calls[0]["encoder_hidden_states"], emb)
        vsf = pipe.vae_scale_factor
        lh, lw = 2 * (c["height"] // (vsf * 2)), 2 * (c["width"] // (vsf * 2))
        z = unpack(out_lat, lh, lw) / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        decoded = pipe.vae.decode(z).sample
        p = f"case{ci}."
        files = {
            "clip_input_ids": write_bin(ref_dir, p + "clip_input_ids.i64", cids.numpy(), np.int64),
            "t5_input_ids": write_bin(ref_dir, p + "t5_input_ids.i64", tids.numpy(), np.int64),
            "pooled_prompt_embeds": write_bin(ref_dir, p + "pooled_prompt_embeds.f32", pooled.numpy(), np.float32),
            "prompt_embeds": write_bin(ref_dir, p + "t5_embeds.f32", emb.numpy(), np.float32),
            "img_ids": write_bin(ref_dir, p + "img_ids.f32", calls[0]["img_ids"].numpy(), np.float32),
            "initial_latents": write_bin(ref_dir, p + "initial_latents.f32", lat.numpy(), np.float32),
            "noise_pred_step0": write_bin(ref_dir, p + "noise_pred_step0.f32", calls[0]["out"].numpy(), np.float32),
            "latents_after_step0": None,
            "final_latents": write_bin(ref_dir, p + "final_latents.f32", out_lat.numpy(), np.float32),
            "vae_input": write_bin(ref_dir, p + "vae_input.f32", z.numpy(), np.float32),
            "vae_output": write_bin(ref_dir, p + "vae_output.f32", decoded.numpy(), np.float32),
            "image": write_bin(ref_dir, p + "image.u8", img_u8, np.uint8),
        }
        x1 = lat + (sigmas[1] - sigmas[0]) * calls[0]["out"]
        files["latents_after_step0"] = write_bin(ref_dir, p + "latents_after_step0.f32", x1.numpy(), np.float32)
        cases.append({
            "name": f"case{ci}",
            "prompts": c["prompts"],
            "batch_size": B,
            "width": c["width"],
            "height": c["height"],
            "num_inference_steps": c["steps"],
            "guidance_scale": c["guidance"],
            "max_sequence_length": c["msl"],
            "vae_scaling_factor": pipe.vae.config.scaling_factor,
            "vae_shift_factor": pipe.vae.config.shift_factor,
            "latent_height": lh,
            "latent_width": lw,
            "image_seq_len": int(lat.shape[1]),
            "mu": calculate_shift(int(lat.shape[1]), 256, 4096, 0.5, 1.15),
            "sigmas": [float(v) for v in sigmas],
            "scheduler_timesteps": [float(v) for v in timesteps],
            "transformer_timestep_inputs": [float(cl["timestep"][0]) for cl in calls],
            "transformer_guidance_input": float(calls[0]["guidance"][0]),
            "clip_input_ids": cids.tolist(),
            "t5_input_ids": tids.tolist(),
            "files": files,
        })
    return cases, max_self_diff


def tokenizer_cases(pipe, model_dir):
    raw_clip = Tokenizer.from_file(os.path.join(model_dir, "tokenizer", "tokenizer.json"))
    raw_t5 = Tokenizer.from_file(os.path.join(model_dir, "tokenizer_2", "tokenizer.json"))
    out = []
    for text in TOKENIZER_CASES:
        c77 = clip_ids(pipe, [text])[0].tolist()
        t64 = t5_ids(pipe, [text], MAX_SEQUENCE_LENGTH)[0].tolist()
        t512 = t5_ids(pipe, [text], 512)[0].tolist()
        rc = raw_clip.encode(text).ids
        rt = raw_t5.encode(text).ids
        # pipeline ids == raw tokenizer.json ids + pipeline truncation/padding rule
        eos_c = pipe.tokenizer.eos_token_id
        exp_c = (rc[:76] + [eos_c]) if len(rc) > 77 else rc
        exp_c = exp_c + [eos_c] * (77 - len(exp_c))
        assert exp_c == c77, (text, exp_c, c77)
        exp_t = (rt[:MAX_SEQUENCE_LENGTH - 1] + [1]) if len(rt) > MAX_SEQUENCE_LENGTH else rt
        exp_t = exp_t + [0] * (MAX_SEQUENCE_LENGTH - len(exp_t))
        assert exp_t == t64, (text, exp_t, t64)
        out.append({
            "text": text,
            "clip_input_ids": c77,
            "t5_input_ids": t64,
            "t5_input_ids_512": t512,
            "clip_ids_unpadded": rc,
            "t5_ids_unpadded": rt,
            "clip_tokens_unpadded": raw_clip.encode(text).tokens,
            "t5_tokens_unpadded": raw_t5.encode(text).tokens,
        })
    return out


def schedule_refs():
    out = []
    for seq, n in [(4096, 4), (64, 4), (256, 28), (256, 4), (240, 3), (1024, 20), (4096, 50)]:
        sig, ts, mu = schedule(n, seq)
        out.append({"image_seq_len": seq, "num_inference_steps": n, "mu": mu, "sigmas": [float(v) for v in sig], "timesteps": [float(v) for v in ts]})
    return out


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("--skip-sensitivity", action="store_true")
    args = ap.parse_args()
    root = args.root
    model_dir = os.path.join(root, "models", "tiny-flux")
    fp16_dir = os.path.join(root, "models", "tiny-flux-fp16")
    ref_dir = os.path.join(root, "test", "fixtures", "flux-reference")
    report = {
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "sentencepiece": spm.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
        }
    }
    t0 = time.time()
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    os.makedirs(model_dir)

    log("[1/6] tokenizers")
    with tempfile.TemporaryDirectory() as work:
        clip_info = build_clip_tokenizer(os.path.join(model_dir, "tokenizer"))
        t5_info = build_t5_tokenizer(os.path.join(model_dir, "tokenizer_2"), work)
    report["clip_tokenizer"] = clip_info
    report["t5_tokenizer"] = t5_info
    log("  clip", clip_info, "t5", t5_info)

    log("[2/6] models")
    text_encoder, text_encoder_2, transformer, vae, scheduler = build_models(clip_info, t5_info)
    pipe = make_pipeline(model_dir, text_encoder, text_encoder_2, transformer, vae, scheduler)
    report["vae_calibration"] = calibrate_vae(pipe)
    log("  vae calibration", report["vae_calibration"])
    report["param_counts"] = {n: sum(p.numel() for p in m.parameters()) for n, m in
                              [("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2), ("transformer", transformer), ("vae", vae)]}

    # configs (optimum layout)
    write_json(os.path.join(model_dir, "model_index.json"), {
        "_class_name": "FluxPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    sch_cfg = dict(scheduler.config)
    sch_cfg = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": diffusers.__version__} | {k: v for k, v in sch_cfg.items() if not k.startswith("_")}
    write_json(os.path.join(model_dir, "scheduler", "scheduler_config.json"), sch_cfg)
    for sub, m in [("transformer", transformer), ("vae_decoder", vae)]:
        cfg = {"_class_name": type(m).__name__, "_diffusers_version": diffusers.__version__} | {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(m.config).items() if not k.startswith("_")}
        write_json(os.path.join(model_dir, sub, "config.json"), cfg)
    for sub, m in [("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)]:
        d = m.config.to_dict()
        d.pop("_attn_implementation", None)
        d["architectures"] = [type(m).__name__]
        write_json(os.path.join(model_dir, sub, "config.json"), d)
    write_json(os.path.join(model_dir, "t2i.json"), T2I_DEFAULTS)

    log("[3/6] bug sensitivity")
    if not args.skip_sensitivity:
        rows = bug_sensitivity(pipe, packed_latents)
        report["bug_sensitivity"] = rows
        for r in rows:
            log(f"  {r['width']}x{r['height']} {r['bug']:<22} max {r['max_abs_u8']:>3}  mean {r['mean_abs_u8']}")

    log("[4/6] onnx export + verification")
    export_all(model_dir, text_encoder, text_encoder_2, transformer, vae)
    report["export_max_abs_diff"] = verify_exports(model_dir, text_encoder, text_encoder_2, transformer, vae)
    log("  diffs", report["export_max_abs_diff"])
    report["onnx"] = {sub: describe_onnx(os.path.join(model_dir, sub, "model.onnx")) for sub in ["text_encoder", "text_encoder_2", "transformer", "vae_decoder"]}

    log("[5/6] fp16 variant")
    report["fp16"] = make_fp16(model_dir, fp16_dir, transformer)
    report["onnx_fp16_transformer"] = describe_onnx(os.path.join(fp16_dir, "transformer", "model.onnx"))
    log("  fp16", report["fp16"])

    log("[6/6] references")
    cases, self_diff = write_references(pipe, ref_dir, report.get("bug_sensitivity"))
    report["reimplementation_vs_pipeline_max_u8"] = self_diff
    ort_rows = []
    for c in cases:
        c["_ref_dir"] = ref_dir

        def rd(key, dt):
            f = c["files"][key]
            return np.fromfile(os.path.join(ref_dir, f["file"]), dtype=dt).reshape(f["shape"])

        img, x, first = ort_generate(model_dir, c)
        row = {
            "case": c["name"],
            "fp32_image_max_abs_u8": int(np.abs(img.astype(np.int32) - rd("image", np.uint8).astype(np.int32)).max()),
            "fp32_final_latents_max_abs": float(np.abs(x - rd("final_latents", "<f4")).max()),
            "fp32_noise_pred_step0_max_abs": float(np.abs(first - rd("noise_pred_step0", "<f4")).max()),
        }
        img16, x16, _ = ort_generate(fp16_dir, c, fp16=True)
        p = c["name"] + ".fp16."
        c["files"]["fp16_final_latents"] = write_bin(ref_dir, p + "final_latents.f32", x16, np.float32)
        c["files"]["fp16_image"] = write_bin(ref_dir, p + "image.u8", img16, np.uint8)
        row["fp16_vs_fp32_reference_image_max_abs_u8"] = int(np.abs(img16.astype(np.int32) - rd("image", np.uint8).astype(np.int32)).max())
        row["fp16_vs_fp32_reference_image_mean_abs_u8"] = round(float(np.abs(img16.astype(np.int32) - rd("image", np.uint8).astype(np.int32)).mean()), 2)
        c["fp16_vs_fp32_reference_image_max_abs_u8"] = row["fp16_vs_fp32_reference_image_max_abs_u8"]
        del c["_ref_dir"]
        ort_rows.append(row)
        log("  ort", row)
    report["ort_pipeline_vs_reference"] = ort_rows
    write_json(os.path.join(ref_dir, "cases.json"), {
        "description": "Reference outputs of diffusers FluxPipeline (PyTorch, CPU, fp32) for models/tiny-flux; "
                       "see tools/flux_tiny/README.md. Binary files are raw little-endian arrays, C order.",
        "model_dir": "models/tiny-flux",
        "generator": "tools/flux_tiny/build.py",
        "versions": report["versions"],
        "clip": {"bos_token_id": clip_info["bos_token_id"], "eos_token_id": clip_info["eos_token_id"], "pad_token_id": clip_info["pad_token_id"], "max_length": 77},
        "t5": {"pad_token_id": 0, "eos_token_id": 1, "unk_token_id": 2},
        "vae": {"scaling_factor": VAE_CONFIG["scaling_factor"], "shift_factor": VAE_CONFIG["shift_factor"], "vae_scale_factor": 2},
        "latent_packing": "packed[b, i*(W/2)+j, c*4+p*2+q] = lat[b, c, 2i+p, 2j+q]; initial latents = numpy default_rng(seed).standard_normal([B,C,H,W]) packed",
        "cases": cases,
        "tokenizer_cases": tokenizer_cases(pipe, model_dir),
        "schedules": schedule_refs(),
    })
    # timing with onnxruntime (python) at the defaults
    report["ort_timing_64x64_4steps_s"] = ort_timing(model_dir)
    report["sizes_bytes"] = {d: dir_size(os.path.join(root, d)) for d in ["models/tiny-flux", "models/tiny-flux-fp16", "test/fixtures/flux-reference"]}
    report["build_seconds"] = round(time.time() - t0, 1)
    write_json(os.path.join(root, "tools", "flux_tiny", "build_report.json"), report)
    log(json.dumps({k: report[k] for k in ["export_max_abs_diff", "fp16", "ort_timing_64x64_4steps_s", "sizes_bytes", "reimplementation_vs_pipeline_max_u8"]}, indent=1))


def dir_size(d):
    return sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(d) for f in fs)


def ort_timing(model_dir):
    """One 64x64, 4-step generation with ORT python (text encoders + 4 transformer runs + decode)."""
    sess = {k: ort_session(os.path.join(model_dir, k, "model.onnx")) for k in ["text_encoder", "text_encoder_2", "transformer", "vae_decoder"]}
    cids = np.full((1, 77), 3513, dtype=np.int64)
    tids = np.zeros((1, MAX_SEQUENCE_LENGTH), dtype=np.int64)
    x = np.random.default_rng(0).standard_normal((1, 256, 16)).astype(np.float32)
    ids = ids_grid(16, 16).numpy().astype(np.int64)
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        _, pooled = sess["text_encoder"].run(None, {"input_ids": cids})
        (emb,) = sess["text_encoder_2"].run(None, {"input_ids": tids})
        h = x
        for s in [1.0, 0.8, 0.6, 0.3]:
            (v,) = sess["transformer"].run(None, {"hidden_states": h, "encoder_hidden_states": emb, "pooled_projections": pooled,
                                                  "timestep": np.array([s], np.float32), "img_ids": ids,
                                                  "txt_ids": np.zeros((MAX_SEQUENCE_LENGTH, 3), np.int64), "guidance": np.array([3.5], np.float32)})
            h = h - 0.2 * v
        sess["vae_decoder"].run(None, {"latent_sample": np.zeros((1, 4, 32, 32), np.float32)})
        best = min(best, time.perf_counter() - t)
    return round(best, 4)


if __name__ == "__main__":
    main()
