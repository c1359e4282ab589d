#!/usr/bin/env python3
"""covid-19 drawn another way, scored by models already trained: the synthetic world's covid-19
appears only in the test split, so its rendering can change without retraining. Re-renders the
test split of each given run (its world's seed and sizes; the training split is not written),
scores the run's trained model on it and prints covid-19 by description and by name and the seen
queries that best separate the covid-19 images.

    .venv/bin/python benchmarks/covid_rerender.py opacity runs/covid-rerender \\
        runs/matrix-quick-b8/seed0-native-t2 runs/matrix-quick-b8/seed4-native-t1

Variants: ``current`` (as the world draws it), ``opacity`` (the opacity's contrast 0.24 and zone
centres), ``consolidation`` (ground glass with dense cores and air bronchograms), ``dense``
(contrast 0.30), ``effusion`` (ground glass with small bilateral effusions).
"""
from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

import medklip.data.synthetic.findings as findings
import medklip.data.synthetic.world as world
from medklip.data.synthetic.anatomy import smooth_noise, soft

VARIANTS = ("current", "opacity", "consolidation", "dense", "effusion")


def _blobs(canvas, layers, density, rng, contrast: float, texture: bool, lateral=(0.25, 0.31),
           rows=(0.52, 0.62), radius=(0.06, 0.085), bronchograms: bool = False) -> np.ndarray:
    """One or two blobs in each lower lung (the geometry of ``findings.draw_covid``, with the
    variant's contrast, texture and extent), added to ``density``."""
    region = np.zeros_like(density)
    for sign in (-1, 1):
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = 0.5 + sign * rng.uniform(*lateral), rng.uniform(*rows)
            blob = findings._blob(canvas, cx, cy, rng.uniform(*radius), rng.uniform(radius[0] - 0.01, radius[1] - 0.015),
                                  rng, 0.5 if texture else 0.15)
            region = np.maximum(region, blob)
    region *= np.clip(layers["lung_right"] + layers["lung_left"], 0, 1)
    density += contrast * region * ((0.7 + 0.3 * smooth_noise(rng, canvas.size, 8)) if texture else 1.0)
    if bronchograms:
        for _ in range(3):
            angle = rng.uniform(0, np.pi)
            cx, cy = 0.5 + rng.choice([-1, 1]) * rng.uniform(*lateral), rng.uniform(*rows)
            distance = np.abs((canvas.x - cx) * np.sin(angle) - (canvas.y - cy) * np.cos(angle))
            density -= 0.12 * region * soft(distance - 0.004, 0.004)
    return region


def drawer(variant: str) -> Callable:
    if variant == "current":
        return findings.draw_covid

    def draw(canvas, layers, density, rng):
        if variant == "opacity":
            region = _blobs(canvas, layers, density, rng, 0.24, True, lateral=(0.17, 0.23))
        elif variant == "consolidation":
            region = np.maximum(_blobs(canvas, layers, density, rng, 0.22, True),
                                _blobs(canvas, layers, density, rng, 0.14, False, radius=(0.04, 0.06), bronchograms=True))
        elif variant == "dense":
            region = _blobs(canvas, layers, density, rng, 0.30, True)
        else:  # effusion
            region = _blobs(canvas, layers, density, rng, 0.22, True)
            for side in ("right", "left"):
                top = canvas.patient.dome_right if side == "right" else canvas.patient.dome_left
                lateral = np.clip((canvas.x - 0.5) * (1 if side == "left" else -1) / 0.4, 0, 1)
                fluid = soft(canvas.lung_field(side), 0.08) * soft(top - 0.025 - 0.06 * lateral ** 2 - canvas.y, 0.012)
                density += 0.36 * fluid
                region = np.maximum(region, fluid)
        return findings.Finding("covid-19", side="both", positions=["left_lower_lung", "right_lower_lung"],
                                mask=region > 0.35)
    return draw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("out")
    p.add_argument("runs", nargs="+", help="demo run folders (each with world/ and pretrain/best)")
    args = p.parse_args()
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from medklip.demo import demo_summary
    from medklip.zeroshot.benchmark import evaluate_dataset

    findings.draw_covid = drawer(args.variant)  # make_study looks it up on the module
    out, worlds, margins = Path(args.out), {}, []
    for run in map(Path, args.runs):
        meta = json.loads((run / "world" / "world.json").read_text())
        meta.pop("version")
        key = json.dumps(meta, sort_keys=True)
        if key not in worlds:
            folder = out / f"world-{args.variant}-{len(worlds)}"
            shutil.rmtree(folder, ignore_errors=True)
            worlds[key] = world.generate_world(folder, world.WorldConfig(**{**meta, "train": 0}))
        scored = out / f"eval-{args.variant}-{run.name}"
        summary = demo_summary(evaluate_dataset("synthetic", worlds[key], run / "pretrain" / "best", scored,
                                                split="test", n_boot=10, n_overlays=0))
        table = pd.read_csv(scored / "predictions.csv")
        y = table["label:covid-19"].to_numpy()
        seen = {c[5:]: roc_auc_score(y, table[c]) for c in table.columns if c.startswith("prob:") and "covid" not in c}
        row = {"run": run.name, "variant": args.variant, "by_description": summary["covid-19_auc_by_description"],
               "by_name": summary["covid-19_auc_by_name"], "seen_macro_auc": summary["seen_macro_auc"],
               "best_seen_queries": sorted(seen.items(), key=lambda t: -t[1])[:3]}
        margins.append(row["by_description"] - row["by_name"])
        print(json.dumps(row), flush=True)
    print(f"{args.variant}: description - name, mean {np.mean(margins):+.3f}, min {np.min(margins):+.3f}")


if __name__ == "__main__":
    main()
