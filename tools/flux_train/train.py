#!/usr/bin/env python3
"""Train the bundled demo model: a small FLUX.1-schnell-architecture text-to-image model (diffusers'
FluxTransformer2DModel, AutoencoderKL, transformers' CLIPTextModel and T5EncoderModel) on the scene
grammar of services/eval/grammar.json, on the CPU, then export it to ONNX in optimum's layout.

Phases (each resumable: state is checkpointed to --work every few minutes and on Ctrl-C; rerunning
the same command continues where it stopped):
  1. vae          AutoencoderKL (3 levels: 64x64 RGB -> 16x16xC latents, C = --latent-channels), L1 + MSE
                  (weighted towards the shape: --vae-fg-weight) + a small KL term
  2. latents      render the training scenes once and encode them (the VAE's posterior mean)
  3. transformer  FLUX's rectified-flow objective: x_t = (1-t) x0 + t n, predict n - x0, t logit-normal and
                  shifted (--t-shift, also the exported scheduler's) in the stages that say so, loss weighted
                  towards the shape (--fg-weight, balanced by shape area in the stages that say so), in
                  --stages with their own learning-rate cycles; the text encoders are trained with it (from
                  seeded random init)
  4. export       ONNX (tools/flux_tiny's export path), configs, tokenizers, t2i.json, a sample grid and
                  the loss curve

Run from the repository root (see tools/flux_train/README.md):
    .venv-flux/bin/python tools/flux_train/train.py            # all phases, resumes
    .venv-flux/bin/python tools/flux_train/train.py --pilot    # a few minutes, to see that it learns
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sys
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scenes  # noqa: E402

ROOT = scenes.ROOT
torch.set_num_threads(int(os.environ.get("T2I_TRAIN_THREADS", "2")))

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, FluxTransformer2DModel  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel  # noqa: E402

transformers.logging.set_verbosity_error()
diffusers.logging.set_verbosity_error()
# bf16 autocast: RMSNorm gets bf16 input and fp32 weights, which only means the unfused kernel
warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")

SEED = 20261204
TOKENIZER_SOURCE = os.path.join(ROOT, "models", "tiny-flux")  # the CLIP BPE / T5 unigram tokenizers
MAX_SEQUENCE_LENGTH = 32
CLIP_LENGTH = 77
LATENT_CHANNELS = 16  # FLUX.1's; --latent-channels (set_latent_channels) changes it for a run

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=1.0,  # set from the encoded training set (unit variance), like FLUX's 0.3611 / 0.1159
    shift_factor=0.0,
    use_quant_conv=False,
    use_post_quant_conv=False,
    force_upcast=True,
)
CLIP_CONFIG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32)
T5_CONFIG = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=0, num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0, feed_forward_proj="gated-gelu")
TRANSFORMER_CONFIG = dict(
    patch_size=1,
    in_channels=4 * LATENT_CHANNELS,
    out_channels=None,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=32,
    num_attention_heads=4,
    joint_attention_dim=T5_CONFIG["d_model"],
    pooled_projection_dim=CLIP_CONFIG["hidden_size"],
    guidance_embeds=False,  # schnell-like: no guidance input, static shift
    axes_dims_rope=(8, 12, 12),
)
# Caption dropout: this share of training steps' prompts are replaced by "" so the model also learns the
# unconditional velocity, which true classifier-free guidance (diffusers FluxPipeline's true_cfg_scale with
# an empty negative prompt) needs at sampling time. TRUE_CFG_SCALE is the default written to t2i.json.
UNCOND_PROB = 0.1
FG_MARGIN_PX = 4
TRUE_CFG_SCALE = 4.0
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
DEFAULT_STEPS = 16  # chosen on examples/shapes-validation.jsonl with true_cfg_scale 4 (tools/flux_train/README.md)


def set_time_shift(shift: float) -> None:
    """The static shift of this run's timesteps, in training (t' = s·t / (1 + (s − 1)·t), as SD3 / FLUX shift
    their schedules for larger latents) and in the exported scheduler_config.json (sampling)."""
    SCHEDULER_CONFIG["shift"] = float(shift)


def shift_t(t, shift: float | None = None):
    s = SCHEDULER_CONFIG["shift"] if shift is None else shift
    return s * t / (1 + (s - 1) * t)


def set_latent_channels(n: int) -> None:
    """The VAE's latent channels and the transformer's input (2x2 patches of them) for this run."""
    global LATENT_CHANNELS
    LATENT_CHANNELS = n
    VAE_CONFIG["latent_channels"] = n
    TRANSFORMER_CONFIG["in_channels"] = 4 * n


def log(*a):
    tqdm.write(" ".join(str(x) for x in a))


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def checkpoint_channels(state: dict) -> int:
    """The latent channels a vae.pt / transformer.pt was trained with (those from before --latent-channels had 4)."""
    return state.get("latent_channels", 4)


def check_channels(state: dict, path: str) -> None:
    have = checkpoint_channels(state)
    if have != LATENT_CHANNELS:
        sys.exit(f"{path} has {have} latent channels, this run asks for {LATENT_CHANNELS}: "
                 f"pass --latent-channels {have} to continue it, or use another --work folder")


class Checkpoints:
    def __init__(self, work: str):
        self.work = work
        os.makedirs(work, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.work, name)

    def load(self, name: str):
        p = self.path(name)
        return torch.load(p, weights_only=False) if os.path.exists(p) else None

    def save(self, name: str, obj) -> None:
        tmp = self.path(name + ".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, self.path(name))


STOP = {"requested": False}


def _on_signal(signum, frame):
    STOP["requested"] = True
    log(f"signal {signum}: saving a checkpoint and stopping")


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def load_tokenizers():
    clip = Tokenizer.from_file(os.path.join(TOKENIZER_SOURCE, "tokenizer", "tokenizer.json"))
    t5 = Tokenizer.from_file(os.path.join(TOKENIZER_SOURCE, "tokenizer_2", "tokenizer.json"))
    clip_cfg = json.load(open(os.path.join(TOKENIZER_SOURCE, "text_encoder", "config.json")))
    return clip, t5, clip_cfg


def tokenize(clip: Tokenizer, t5: Tokenizer, clip_eos: int, prompts: list[str]):
    """FluxPipeline's ids: CLIP padded to 77 with EOS (truncation keeps EOS last); T5 to the max length
    (content + </s>, padded with 0)."""
    c = np.full((len(prompts), CLIP_LENGTH), clip_eos, dtype=np.int64)
    t = np.zeros((len(prompts), MAX_SEQUENCE_LENGTH), dtype=np.int64)
    for i, enc in enumerate(clip.encode_batch(prompts)):
        ids = enc.ids
        if len(ids) > CLIP_LENGTH:
            ids = ids[: CLIP_LENGTH - 1] + [ids[-1]]
        c[i, : len(ids)] = ids
    for i, enc in enumerate(t5.encode_batch(prompts)):
        ids = enc.ids
        if len(ids) > MAX_SEQUENCE_LENGTH:
            ids = ids[: MAX_SEQUENCE_LENGTH - 1] + [ids[-1]]
        t[i, : len(ids)] = ids
    return torch.from_numpy(c), torch.from_numpy(t)


def build_text_encoders(clip_cfg: dict, t5_vocab: int):
    torch.manual_seed(SEED + 1)
    c = CLIPTextConfig(vocab_size=clip_cfg["vocab_size"], bos_token_id=clip_cfg["bos_token_id"], eos_token_id=clip_cfg["eos_token_id"], pad_token_id=clip_cfg["pad_token_id"], layer_norm_eps=1e-5, **CLIP_CONFIG)
    c._attn_implementation = "eager"
    torch.manual_seed(SEED + 2)
    t = T5Config(vocab_size=t5_vocab, layer_norm_epsilon=1e-6, is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False, **T5_CONFIG)
    t._attn_implementation = "eager"
    return CLIPTextModel(c), T5EncoderModel(t)


def render_batch(rng: random.Random, n: int, held_out: bool = False):
    batch = [scenes.sample_scene(rng, held_out) for _ in range(n)]
    imgs = np.stack([scenes.render(s) for s in batch])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return batch, x


def pack(lat):
    b, c, h, w = lat.shape
    return lat.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(x, h, w):
    b, _, d = x.shape
    return x.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def ids_grid(h2, w2):
    ids = torch.zeros(h2, w2, 3)
    ids[..., 1] += torch.arange(h2)[:, None]
    ids[..., 2] += torch.arange(w2)[None, :]
    return ids.reshape(-1, 3)


# ------------------------------------------------------------------------------------------------
# phase 1: VAE
# ------------------------------------------------------------------------------------------------
def train_vae(ck: Checkpoints, steps: int, batch: int, history: dict, fg_weight: float = 0.0) -> AutoencoderKL:
    torch.manual_seed(SEED + 3)
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    state = ck.load("vae.pt")
    start = 0
    if state is not None:
        check_channels(state, ck.path("vae.pt"))
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
        history["vae"] = state["history"]
    if start >= steps:
        return vae.eval()
    rng = random.Random(SEED + 100 + start)
    vae.train()
    last_save = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="vae", dynamic_ncols=True)
    for step in bar:
        lr = 2e-3 * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        scenes_, x = render_batch(rng, batch)
        post = vae.encode(x).latent_dist
        z = post.sample()
        y = vae.decode(z).sample
        err = (y - x).abs() + (y - x) ** 2
        if fg_weight > 0:
            # As the transformer's loss: pixels near the shape weigh 1 + fg_weight (small shapes are a few
            # dozen of 4,096 pixels; unweighted, their corners are the cheapest thing to blur).
            w = 1 + fg_weight * foreground_masks(scenes_, scenes.WIDTH)[:, None]
            rec = (w * err).sum() / (w.sum() * err.shape[1])
        else:
            rec = err.mean()
        kl = post.kl().mean() / (x.shape[1] * x.shape[2] * x.shape[3])
        loss = rec + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        history.setdefault("vae", []).append([step, float(rec.detach())])
        bar.set_postfix(rec=f"{float(rec):.4f}", kl=f"{float(kl):.3f}")
        if time.time() - last_save > 120 or STOP["requested"] or step + 1 == steps:
            ck.save("vae.pt", {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step + 1, "history": history["vae"], "latent_channels": LATENT_CHANNELS})
            last_save = time.time()
            if STOP["requested"]:
                sys.exit(130)
    return vae.eval()


# ------------------------------------------------------------------------------------------------
# phase 2: latents of the training set
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_training_set(ck: Checkpoints, vae: AutoencoderKL, count: int):
    cached = ck.load("latents.pt")
    if cached is not None and cached["count"] == count and cached["latents"].shape[1] == LATENT_CHANNELS:
        return cached
    rng = random.Random(SEED + 200)
    all_scenes, lats = [], []
    for start in tqdm(range(0, count, 256), desc="latents", dynamic_ncols=True):
        batch, x = render_batch(rng, min(256, count - start))
        all_scenes += batch
        lats.append(vae.encode(x).latent_dist.mean)
    lat = torch.cat(lats)
    shift = float(lat.mean())
    scale = float(1.0 / lat.std())
    out = {"count": count, "scenes": all_scenes, "latents": lat.half(), "shift": shift, "scale": scale}
    ck.save("latents.pt", out)
    return out


# ------------------------------------------------------------------------------------------------
# phase 3: transformer (+ text encoders)
# ------------------------------------------------------------------------------------------------
class TextToImage(torch.nn.Module):
    def __init__(self, clip_cfg, t5_vocab):
        super().__init__()
        self.text_encoder, self.text_encoder_2 = build_text_encoders(clip_cfg, t5_vocab)
        torch.manual_seed(SEED + 4)
        self.transformer = FluxTransformer2DModel(**TRANSFORMER_CONFIG)

    def encode(self, clip_ids, t5_ids):
        pooled = self.text_encoder(input_ids=clip_ids).pooler_output
        hidden = self.text_encoder_2(input_ids=t5_ids).last_hidden_state
        return pooled, hidden

    def velocity(self, x, t, pooled, hidden, img_ids, txt_ids):
        return self.transformer(hidden_states=x, encoder_hidden_states=hidden, pooled_projections=pooled, timestep=t, img_ids=img_ids, txt_ids=txt_ids, return_dict=False)[0]


def sigmas(steps: int) -> list[float]:
    # FlowMatchEulerDiscreteScheduler with a static shift and no dynamic shifting: linspace(1, 1/N, N) shifted, then 0
    return [float(shift_t(s)) for s in np.linspace(1.0, 1.0 / steps, steps, dtype=np.float32)] + [0.0]


@torch.no_grad()
def sample(model: TextToImage, vae: AutoencoderKL, lat_stats, prompts: list[str], toks, seed: int, steps: int = DEFAULT_STEPS, cfg: float = TRUE_CFG_SCALE):
    clip, t5, clip_eos = toks
    c_ids, t_ids = tokenize(clip, t5, clip_eos, prompts)
    pooled, hidden = model.encode(c_ids, t_ids)
    if cfg > 1:
        nc_ids, nt_ids = tokenize(clip, t5, clip_eos, [""] * len(prompts))
        n_pooled, n_hidden = model.encode(nc_ids, nt_ids)
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(len(prompts), LATENT_CHANNELS, 16, 16, generator=g)
    x = pack(lat)
    img_ids, txt_ids = ids_grid(8, 8), torch.zeros(MAX_SEQUENCE_LENGTH, 3)
    s = sigmas(steps)
    for i in range(steps):
        t = torch.full((len(prompts),), s[i])
        v = model.velocity(x, t, pooled, hidden, img_ids, txt_ids)
        if cfg > 1:  # FluxPipeline: neg + true_cfg_scale * (cond - neg)
            neg = model.velocity(x, t, n_pooled, n_hidden, img_ids, txt_ids)
            v = neg + cfg * (v - neg)
        x = x + (s[i + 1] - s[i]) * v
    z = unpack(x, 16, 16) / lat_stats["scale"] + lat_stats["shift"]
    img = vae.decode(z).sample
    return ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def foreground_masks(all_scenes, grid: int = 16) -> torch.Tensor:
    """[N, grid, grid]: 1 on the cells (16: latent cells; 64: pixels) within a few pixels of each scene's
    shape (its disc plus a margin)."""
    cells = (torch.arange(grid) + 0.5) * (scenes.WIDTH / grid)
    out = torch.zeros(len(all_scenes), grid, grid)
    for i, sc in enumerate(all_scenes):
        col, row = scenes.GRAMMAR["positions"][sc.position]["cell"]
        cx = scenes.GRAMMAR["cellCentres"][col] + sc.dx
        cy = scenes.GRAMMAR["cellCentres"][row] + sc.dy
        r = scenes.GRAMMAR["sizes"][sc.size]["radius"] + FG_MARGIN_PX
        out[i] = (((cells[None, :] - cx) ** 2 + (cells[:, None] - cy) ** 2) <= r * r).float()
    return out


class Stage(NamedTuple):
    """A stretch of transformer training: its own learning-rate warm-up and cosine decay, a fresh start of
    AdamW's moments, shifted timesteps or not, balanced foreground weighting or not."""

    steps: int
    shift: bool
    balance: bool


def parse_stages(spec: str) -> list[Stage]:
    """"8000,3000:shift,3000:shift+balance" -> three stages (see --stages)."""
    out = []
    for k, item in enumerate(spec.split(",")):
        count, _, flags = item.strip().partition(":")
        opts = set(filter(None, flags.split("+")))
        unknown = opts - {"shift", "balance"}
        if not count.isdigit() or int(count) <= 0 or unknown:
            raise SystemExit(f"--stages: stage {k + 1} ({item!r}) must be STEPS[:shift][+balance], e.g. 3000:shift+balance" + (f"; unknown {sorted(unknown)}" if unknown else ""))
        out.append(Stage(int(count), "shift" in opts, "balance" in opts))
    return out


def stage_at(stages: list[Stage], step: int) -> tuple[int, int]:
    """(index of the stage that global step `step` belongs to, the global step that stage starts at)"""
    begin = 0
    for i, st in enumerate(stages):
        if step < begin + st.steps:
            return i, begin
        begin += st.steps
    raise IndexError(f"step {step} is past the last stage (total {begin})")


def clip_trim(c_ids: torch.Tensor, eos: int) -> torch.Tensor:
    """CLIP's ids cut after the column of the latest first EOS of any row. Exact: CLIP's attention is causal and its pooled output
    is the first EOS position's, so the padding after it changes nothing the transformer sees; it only costs
    time (77 positions for captions of at most ~23 tokens)."""
    first = (c_ids == eos).int().argmax(dim=1)
    return c_ids[:, : int(first.max()) + 1]


def train_transformer(ck: Checkpoints, data, stages: list[Stage], batch: int, history: dict, toks, clip_cfg, t5_vocab, vae, pilot: bool, fg_weight: float = 0.0, init_from: str | None = None, bf16: bool = True):
    model = TextToImage(clip_cfg, t5_vocab)
    params = [
        {"params": model.transformer.parameters(), "lr": 5e-4},
        {"params": list(model.text_encoder.parameters()) + list(model.text_encoder_2.parameters()), "lr": 4e-4},
    ]
    base = [g["lr"] for g in params]
    opt = torch.optim.AdamW(params, weight_decay=0.01)
    state = ck.load("transformer.pt")
    start = 0
    # Wall and CPU time of the steps done so far, carried in the checkpoint so that a run resumed after a kill
    # reports the time of the whole training, not of its last piece.
    elapsed = {"wall_s": 0.0, "cpu_s": 0.0}
    if state is not None:
        check_channels(state, ck.path("transformer.pt"))
        elapsed = state.get("elapsed", elapsed)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
        history["transformer"] = state["history"]
    elif init_from:
        # Fine-tuning: the weights of another run, a fresh optimizer and schedule.
        init = torch.load(init_from, weights_only=False)
        check_channels(init, init_from)
        model.load_state_dict(init["model"])
        log(f"transformer: initialised from {init_from}")
    steps = sum(st.steps for st in stages)
    if start >= steps:
        return model.eval(), elapsed
    clip, t5, clip_eos = toks
    lat_all = data["latents"].float()
    lat_all = (lat_all - data["shift"]) * data["scale"]
    n = lat_all.shape[0]
    # Foreground weighting: the shape covers a few percent of the image, so an unweighted loss is mostly
    # about the flat background; cells near the shape weigh 1 + fg_weight.
    masks = foreground_masks(data["scenes"]) if fg_weight > 0 else None
    balanced = None
    if masks is not None:
        # Balanced: each image's foreground weighs the same in total, whatever its shape's size: a small shape's
        # few cells weigh more (x1.8 at the grammar's sizes), a large one's less, relative to the mean area.
        area = masks.sum(dim=(1, 2)).clamp(min=1)
        balanced = masks * (area.mean() / area)[:, None, None]
    rng = random.Random(SEED + 300 + start)
    gen = torch.Generator().manual_seed(SEED + 301 + start)
    img_ids, txt_ids = ids_grid(8, 8), torch.zeros(MAX_SEQUENCE_LENGTH, 3)
    model.train()
    last_save = t0 = time.time()
    c0 = time.process_time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="transformer", dynamic_ncols=True)
    for step in bar:
        k, begin = stage_at(stages, step)
        stage = stages[k]
        if step == begin and step > 0:
            opt.state.clear()  # a fresh start of AdamW's moments, as a fine-tuning run (--init-from) gets
        # each stage: 200 steps of warm-up, then cosine decay to 5% of the base rate
        frac = 0.5 * (1 + math.cos(math.pi * (step - begin) / stage.steps)) * 0.95 + 0.05
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * min(1.0, (step - begin + 1) / 200) * frac
        idx = [rng.randrange(n) for _ in range(batch)]
        prompts = [scenes.caption(data["scenes"][i], rng) for i in idx]
        prompts = ["" if rng.random() < UNCOND_PROB else p for p in prompts]
        c_ids, t_ids = tokenize(clip, t5, clip_eos, prompts)
        c_ids = clip_trim(c_ids, clip_eos)
        x0 = pack(lat_all[idx])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.sigmoid(torch.randn(batch, generator=gen))  # logit-normal(0, 1), as in SD3 / FLUX training
        if stage.shift:
            t = shift_t(t)  # shifted towards noise, as the exported scheduler samples
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
        # bf16 autocast: the matrix products in bfloat16 (AVX-512 BF16 where the CPU has it), weights, loss and
        # optimizer in float32
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pooled, hidden = model.encode(c_ids, t_ids)
            v = model.velocity(xt, t, pooled, hidden, img_ids, txt_ids)
        err = (v.float() - (noise - x0)) ** 2
        if masks is not None:
            m = balanced if stage.balance else masks
            w = 1 + fg_weight * pack(m[idx][:, None].expand(-1, LATENT_CHANNELS, -1, -1).contiguous())
            loss = (w * err).sum() / w.sum()
        else:
            loss = err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.setdefault("transformer", []).append([step, float(loss.detach())])
        recent = [h[1] for h in history["transformer"][-50:]]
        bar.set_postfix(stage=f"{k + 1}/{len(stages)}", loss=f"{sum(recent) / len(recent):.4f}")
        if (step + 1) % (200 if pilot else 1000) == 0:
            model.eval()
            write_grid(os.path.join(ck.work, f"samples-{step + 1:06d}.png"), model, vae, data, toks, 8)
            model.train()
        if time.time() - last_save > 180 or STOP["requested"] or step + 1 == steps:
            done = {"wall_s": elapsed["wall_s"] + time.time() - t0, "cpu_s": elapsed["cpu_s"] + time.process_time() - c0}
            ck.save("transformer.pt", {"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1, "history": history["transformer"], "latent_channels": LATENT_CHANNELS, "elapsed": done})
            last_save = time.time()
            if STOP["requested"]:
                sys.exit(130)
    return model.eval(), done


# ------------------------------------------------------------------------------------------------
# pictures: sample grid and loss curve (PIL only)
# ------------------------------------------------------------------------------------------------
def write_grid(path, model, vae, data, toks, count, seed=7):
    from PIL import Image, ImageDraw

    pairs = scenes.evaluation_prompts(count, SEED + 400)
    prompts = [p for _, p in pairs]
    imgs = sample(model, vae, data, prompts, toks, seed)
    cols = 4
    rows = math.ceil(count / cols)
    cell_w, cell_h = 192, 236
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, (img, prompt) in enumerate(zip(imgs, prompts)):
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        sheet.paste(Image.fromarray(img).resize((128, 128), Image.Resampling.NEAREST), (x + 32, y + 4))
        words, lines, line = prompt.split(), [], ""
        for w in words:
            if len(line) + len(w) + 1 > 30:
                lines.append(line)
                line = w
            else:
                line = (line + " " + w).strip()
        lines.append(line)
        for k, text in enumerate(lines[:6]):
            d.text((x + 6, y + 136 + 15 * k), text, fill=(0, 0, 0))
    sheet.save(path)


@torch.no_grad()
def write_reconstructions(path, vae):
    from PIL import Image

    _, x = render_batch(random.Random(SEED + 500), 8)
    y = vae.decode(vae.encode(x).latent_dist.mean).sample
    to_u8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    rows = [np.concatenate(list(to_u8(x)), 1), np.concatenate(list(to_u8(y)), 1)]
    Image.fromarray(np.concatenate(rows, 0)).resize((8 * 128, 256), Image.Resampling.NEAREST).save(path)


def write_loss_curve(path, history):
    from PIL import Image, ImageDraw

    W, H, pad = 900, 360, 40
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    panels = [("vae reconstruction (L1+MSE)", history.get("vae", [])), ("transformer flow-matching MSE", history.get("transformer", []))]
    pw = (W - pad * 3) // 2
    for k, (title, pts) in enumerate(panels):
        x0 = pad + k * (pw + pad)
        d.rectangle([x0, pad, x0 + pw, H - pad], outline=(0, 0, 0))
        d.text((x0, 10), title, fill=(0, 0, 0))
        if len(pts) < 2:
            continue
        ys = np.array([p[1] for p in pts])
        win = max(1, len(ys) // 200)
        ys = np.convolve(ys, np.ones(win) / win, mode="valid")
        lo, hi = float(np.log10(ys.min())), float(np.log10(ys.max()))
        hi = max(hi, lo + 1e-6)
        xs = np.linspace(x0, x0 + pw, len(ys))
        yy = H - pad - (np.log10(ys) - lo) / (hi - lo) * (H - 2 * pad)
        d.line(list(zip(xs.tolist(), yy.tolist())), fill=(200, 40, 40), width=2)
        d.text((x0 + 4, pad + 4), f"{10 ** hi:.4f}", fill=(80, 80, 80))
        d.text((x0 + 4, H - pad - 14), f"{10 ** lo:.4f}", fill=(80, 80, 80))
        d.text((x0 + pw - 90, H - pad + 6), f"{len(pts)} steps (log y)", fill=(80, 80, 80))
    img.save(path)


# ------------------------------------------------------------------------------------------------
# phase 4: export
# ------------------------------------------------------------------------------------------------
class SchnellTransformer(torch.nn.Module):
    def __init__(self, tr):
        super().__init__()
        self.tr = tr

    def forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids):
        return self.tr(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, pooled_projections=pooled_projections, timestep=timestep, img_ids=img_ids, txt_ids=txt_ids, return_dict=False)[0]


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def export(model: TextToImage, vae: AutoencoderKL, data, out_dir: str, name: str, report: dict):
    sys.path.insert(0, os.path.join(ROOT, "tools", "flux_tiny"))
    import build as flux_tiny  # the export path of the random tiny models (patches for RoPE / RMSNorm)

    torch.set_grad_enabled(False)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    for sub in ["tokenizer", "tokenizer_2"]:
        shutil.copytree(os.path.join(TOKENIZER_SOURCE, sub), os.path.join(out_dir, sub))
    vae.register_to_config(scaling_factor=data["scale"], shift_factor=data["shift"])
    g = torch.Generator().manual_seed(SEED + 10)
    te, te2, tr = model.text_encoder.eval(), model.text_encoder_2.eval(), model.transformer.eval()
    ids = torch.randint(0, te.config.vocab_size - 2, (2, 77), generator=g)
    flux_tiny._export(flux_tiny.ClipWrapper(te), (ids,), os.path.join(out_dir, "text_encoder", "model.onnx"), ["input_ids"], ["last_hidden_state", "pooler_output"],
                      {"input_ids": {0: "batch_size", 1: "sequence_length"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"}, "pooler_output": {0: "batch_size"}})
    ids2 = torch.randint(0, te2.config.vocab_size, (2, 32), generator=g)
    flux_tiny._export(flux_tiny.T5Wrapper(te2), (ids2,), os.path.join(out_dir, "text_encoder_2", "model.onnx"), ["input_ids"], ["last_hidden_state"],
                      {"input_ids": {0: "batch_size", 1: "sequence_length"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"}})
    names = ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids"]
    inp = (torch.randn(2, 80, 4 * LATENT_CHANNELS, generator=g), torch.randn(2, 24, T5_CONFIG["d_model"], generator=g), torch.randn(2, 32, generator=g), torch.rand(2, generator=g),
           ids_grid(8, 10).long(), torch.zeros(24, 3, dtype=torch.int64))
    axes = {k: v for k, v in flux_tiny.TR_DYNAMIC_AXES.items() if k != "guidance"}
    with flux_tiny.export_patches(tr):
        flux_tiny._export(SchnellTransformer(tr), inp, os.path.join(out_dir, "transformer", "model.onnx"), names, ["out_hidden_states"], axes)
    z = torch.randn(2, LATENT_CHANNELS, 16, 20, generator=g)
    flux_tiny._export(flux_tiny.VaeDecoderWrapper(vae), (z,), os.path.join(out_dir, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"],
                      {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"}, "sample": {0: "batch_size", 2: "height", 3: "width"}})
    for sub, m in [("transformer", tr), ("vae_decoder", vae)]:
        cfg = {"_class_name": type(m).__name__, "_diffusers_version": diffusers.__version__} | {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(m.config).items() if not k.startswith("_")}
        write_json(os.path.join(out_dir, sub, "config.json"), cfg)
    for sub, m in [("text_encoder", te), ("text_encoder_2", te2)]:
        d = m.config.to_dict()
        d.pop("_attn_implementation", None)
        d["architectures"] = [type(m).__name__]
        write_json(os.path.join(out_dir, sub, "config.json"), d)
    write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": diffusers.__version__, **SCHEDULER_CONFIG})
    write_json(os.path.join(out_dir, "model_index.json"), json.load(open(os.path.join(TOKENIZER_SOURCE, "model_index.json"))))
    write_json(os.path.join(out_dir, "t2i.json"), {"name": name, "width": 64, "height": 64, "steps": DEFAULT_STEPS, "guidance": 0, "true_cfg_scale": TRUE_CFG_SCALE, "max_sequence_length": MAX_SEQUENCE_LENGTH})
    # the exported graphs against PyTorch, once
    import onnxruntime as ort

    s = ort.InferenceSession(os.path.join(out_dir, "transformer", "model.onnx"), providers=["CPUExecutionProvider"])
    (r,) = s.run(None, {k: v.numpy() for k, v in zip(names, inp)})
    o = tr(hidden_states=inp[0], encoder_hidden_states=inp[1], pooled_projections=inp[2], timestep=inp[3], img_ids=inp[4].float(), txt_ids=inp[5].float(), return_dict=False)[0]
    report["export_transformer_max_abs_diff"] = float(np.abs(r - o.numpy()).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.join(ROOT, ".cache", "flux-train"), help="checkpoints, samples, latents (git-ignored)")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "tiny-flux-shapes"))
    ap.add_argument("--name", default="tiny-flux-shapes")
    ap.add_argument("--vae-steps", type=int, default=2000)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--scenes", type=int, default=16384, help="training images (rendered once, encoded once)")
    ap.add_argument("--stages", default="8000,3000:shift,3000:shift+balance", help="the transformer's training, stage by stage: STEPS[:shift][+balance], comma-separated. Each stage has its own learning-rate warm-up and cosine decay and a fresh start of AdamW's moments; 'shift' trains on timesteps shifted by --t-shift, 'balance' scales --fg-weight by each image's inverse shape area (small shapes weigh as much as large ones)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--fg-weight", type=float, default=10.0, help="extra loss weight on the latent cells near the shape (0: plain mean)")
    ap.add_argument("--init-from", default=None, help="start the transformer from this transformer.pt's weights (fine-tuning)")
    ap.add_argument("--latent-channels", type=int, default=LATENT_CHANNELS, help="VAE latent channels (FLUX.1: 16; the transformer takes 2x2 patches of them)")
    ap.add_argument("--vae-fg-weight", type=float, default=8.0, help="extra VAE reconstruction weight on the pixels near the shape")
    ap.add_argument("--t-shift", type=float, default=3.0, help="static timestep shift, in training and in the exported scheduler (1: none)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="transformer training under bfloat16 autocast (weights and optimizer stay float32)")
    ap.add_argument("--until", choices=["vae", "latents", "transformer", "export"], default="export", help="stop after this phase")
    ap.add_argument("--pilot", action="store_true", help="a few minutes: 200 VAE steps, 2,048 scenes, 400 transformer steps in three stages, in --work/pilot")
    args = ap.parse_args()
    set_latent_channels(args.latent_channels)
    set_time_shift(args.t_shift)
    if args.pilot:
        args.work = os.path.join(args.work, "pilot")
        args.vae_steps, args.scenes, args.stages = 200, 2048, "200,100:shift,100:shift+balance"
        args.out = os.path.join(args.work, "model")
    stages = parse_stages(args.stages)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    ck = Checkpoints(args.work)
    history: dict = {}
    report = {"args": vars(args), "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}, "threads": torch.get_num_threads()}
    timings = ck.load("timings.pt") or {}
    clip, t5, clip_cfg = load_tokenizers()
    toks = (clip, t5, clip_cfg["eos_token_id"])
    t5_vocab = t5.get_vocab_size(with_added_tokens=True)

    def timed(phase, fn):
        t0, c0 = time.time(), time.process_time()
        out = fn()
        timings[phase] = {"wall_s": timings.get(phase, {}).get("wall_s", 0) + time.time() - t0, "cpu_s": timings.get(phase, {}).get("cpu_s", 0) + time.process_time() - c0}
        ck.save("timings.pt", timings)
        return out

    vae = timed("vae", lambda: train_vae(ck, args.vae_steps, args.vae_batch, history, args.vae_fg_weight))
    for p in vae.parameters():
        p.requires_grad_(False)
    write_reconstructions(os.path.join(args.work, "vae-reconstructions.png"), vae)
    if args.until == "vae":
        return
    data = timed("latents", lambda: encode_training_set(ck, vae, args.scenes))
    log(f"latents: shift {data['shift']:.4f} scale {data['scale']:.4f}")
    if args.until == "latents":
        return
    model, elapsed = train_transformer(ck, data, stages, args.batch, history, toks, clip_cfg, t5_vocab, vae, args.pilot, args.fg_weight, args.init_from, args.bf16)
    timings["transformer"] = elapsed
    ck.save("timings.pt", timings)
    write_loss_curve(os.path.join(args.work, "loss.png"), history)
    if args.until == "transformer":
        return
    timed("export", lambda: export(model, vae, data, args.out, args.name, report))
    write_grid(os.path.join(args.work, "grid.png"), model, vae, data, toks, 24)
    report["timings"] = timings
    report["final_loss"] = {k: float(np.mean([h[1] for h in v[-100:]])) for k, v in history.items()}
    report["params"] = {"text_encoder": sum(p.numel() for p in model.text_encoder.parameters()), "text_encoder_2": sum(p.numel() for p in model.text_encoder_2.parameters()),
                        "transformer": sum(p.numel() for p in model.transformer.parameters()), "vae": sum(p.numel() for p in vae.parameters())}
    write_json(os.path.join(args.work, "report.json"), report)
    log(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
