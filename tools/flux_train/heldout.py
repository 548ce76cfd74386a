#!/usr/bin/env python3
"""examples/shapes-heldout.jsonl: 300 prompts of the scene grammar whose (colour, shape, position)
triple never appears in training (services/eval/grammar.json, heldOut), one row each with a seed.
The evaluation set of the bundled demo model. Also examples/shapes-validation.jsonl: 200 prompts of
combinations seen in training (other seeds and phrasings), on which the sampling defaults (steps,
true_cfg_scale) are chosen, so the held-out set is measured, never tuned on. Deterministic. Run from
the repository root:
    .venv-flux/bin/python tools/flux_train/heldout.py
"""

import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402

COUNT, SEED = 300, 20261205
VALIDATION_COUNT, VALIDATION_SEED = 200, 20261206


def main():
    path = os.path.join(scenes.ROOT, "examples", "shapes-heldout.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for i, (scene, prompt) in enumerate(scenes.evaluation_prompts(COUNT, SEED)):
            assert scenes.held_out(scene.colour, scene.shape, scene.position)
            f.write(json.dumps({"id": f"heldout-{i + 1:03d}", "prompt": prompt, "seed": 1000 + i}) + "\n")
    rng = random.Random(VALIDATION_SEED)
    with open(os.path.join(scenes.ROOT, "examples", "shapes-validation.jsonl"), "w", encoding="utf-8") as f:
        for i in range(VALIDATION_COUNT):
            scene = scenes.sample_scene(rng, False)
            f.write(json.dumps({"id": f"validation-{i + 1:03d}", "prompt": scenes.caption(scene, rng), "seed": 5000 + i}) + "\n")


if __name__ == "__main__":
    main()
