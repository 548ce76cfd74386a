#!/usr/bin/env python3
"""Ground truth for the judge's test: N scenes of the grammar rendered by the training set's own
renderer, as one sprite sheet (test/fixtures/eval/renders.png, row-major tiles) and their prompts and
attributes (renders.json). Deterministic. Run from the repository root:
    .venv-flux/bin/python tools/flux_train/make_judge_fixture.py
"""

import json
import os
import random
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402

COUNT, COLS, SEED = 400, 20, 4242


def main():
    out = os.path.join(scenes.ROOT, "test", "fixtures", "eval")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(SEED)
    tiles, rows = [], []
    for i in range(COUNT):
        scene = scenes.sample_scene(rng, i % 2 == 0)
        tiles.append(scenes.render(scene))
        rows.append({"prompt": scenes.caption(scene, rng), "colour": scene.colour, "shape": scene.shape, "position": scene.position, "size": scene.size, "background": scene.background})
    grid = np.concatenate([np.concatenate(tiles[r * COLS : (r + 1) * COLS], 1) for r in range(COUNT // COLS)], 0)
    Image.fromarray(grid).save(os.path.join(out, "renders.png"), optimize=True)
    with open(os.path.join(out, "renders.json"), "w", encoding="utf-8") as f:
        json.dump({"tileWidth": scenes.WIDTH, "tileHeight": scenes.HEIGHT, "columns": COLS, "scenes": rows}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
