"""The scene grammar of the bundled demo model (services/eval/grammar.json): sample scenes, caption
them and render them. Deterministic for a given seed. Used by train.py; the TypeScript judge in
services/eval reads the same grammar file, so captions, renders and scores cannot drift apart."""

from __future__ import annotations

import json
import math
import os
import random
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GRAMMAR_PATH = os.path.join(ROOT, "services", "eval", "grammar.json")
GRAMMAR = json.load(open(GRAMMAR_PATH, encoding="utf-8"))

COLOURS = list(GRAMMAR["colours"].keys())
SHAPES = list(GRAMMAR["shapes"])
POSITIONS = list(GRAMMAR["positions"].keys())
SIZES = list(GRAMMAR["sizes"].keys())
WIDTH = GRAMMAR["image"]["width"]
HEIGHT = GRAMMAR["image"]["height"]
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    position: str
    size: str
    background: str
    dx: int = 0
    dy: int = 0

    def triple(self) -> tuple[int, int, int]:
        return COLOURS.index(self.colour), SHAPES.index(self.shape), POSITIONS.index(self.position)


def held_out(colour: str, shape: str, position: str) -> bool:
    c, s, p = COLOURS.index(colour), SHAPES.index(shape), POSITIONS.index(position)
    return (c + 2 * s + 3 * p) % GRAMMAR["heldOut"]["modulus"] == 0


def sample_scene(rng: random.Random, want_held_out: bool) -> Scene:
    while True:
        colour, shape, position = rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(POSITIONS)
        if held_out(colour, shape, position) != want_held_out:
            continue
        background = rng.choice([c for c in COLOURS if c != colour])
        size = rng.choice(SIZES)
        j = GRAMMAR["jitter"]
        return Scene(colour, shape, position, size, background, rng.randint(-j, j), rng.randint(-j, j))


def caption(scene: Scene, rng: random.Random) -> str:
    template = rng.choice(GRAMMAR["templates"])
    size_word = rng.choice(GRAMMAR["sizes"][scene.size]["words"])
    position_phrase = rng.choice(GRAMMAR["positions"][scene.position]["phrases"])
    text = template.format(size=size_word, colour=scene.colour, shape=scene.shape, position=position_phrase, background=scene.background)
    text = re.sub(r"\s+", " ", text).strip().replace(" ,", ",")
    # English article before a vowel sound ("an orange star")
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def _polygon(cx: float, cy: float, radius: float, points: int, inner: float | None, rotation: float) -> list[tuple[float, float]]:
    out = []
    n = points * (2 if inner else 1)
    for i in range(n):
        r = radius if (inner is None or i % 2 == 0) else inner
        a = rotation + 2 * math.pi * i / n
        out.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return out


def render(scene: Scene) -> np.ndarray:
    """uint8 [H, W, 3]: a flat background with one anti-aliased shape."""
    s = SUPERSAMPLE
    bg = tuple(GRAMMAR["colours"][scene.background])
    fg = tuple(GRAMMAR["colours"][scene.colour])
    img = Image.new("RGB", (WIDTH * s, HEIGHT * s), bg)
    d = ImageDraw.Draw(img)
    col, row = GRAMMAR["positions"][scene.position]["cell"]
    cx = (GRAMMAR["cellCentres"][col] + scene.dx) * s
    cy = (GRAMMAR["cellCentres"][row] + scene.dy) * s
    r = GRAMMAR["sizes"][scene.size]["radius"] * s
    up = -math.pi / 2
    geo = GRAMMAR["geometry"]
    if scene.shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif scene.shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        h = r * geo["ringHole"]
        d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=bg)
    elif scene.shape == "square":
        h = r * geo["squareHalfSide"]
        d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fg)
    elif scene.shape == "triangle":
        d.polygon(_polygon(cx, cy + r * geo["triangleDrop"], r * geo["triangleRadius"], 3, None, up), fill=fg)
    elif scene.shape == "star":
        d.polygon(_polygon(cx, cy, r * geo["starOuter"], 5, r * geo["starInner"], up), fill=fg)
    else:
        raise ValueError(scene.shape)
    return np.asarray(img.resize((WIDTH, HEIGHT), Image.Resampling.BOX), dtype=np.uint8)


def evaluation_prompts(count: int, seed: int) -> list[tuple[Scene, str]]:
    """Prompts whose (colour, shape, position) triple never appears in training."""
    rng = random.Random(seed)
    return [(scene, caption(scene, rng)) for scene in (sample_scene(rng, True) for _ in range(count))]
