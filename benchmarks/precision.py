"""What the opt-in bf16 autocast path changes on a trained model: probabilities and AUCs of the
same test split scored in fp32 (exact) and in bf16, and each path's images/s, in one process.

    .venv/bin/python benchmarks/precision.py --model runs/demo/pretrain/best --world runs/demo/world

The default profile's models are small (96 px local trunk): their speed says little about the
paper's ResNet-50 at 224 px, which ``benchmarks/speed.py --bf16`` times on full-size images.
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medklip.zeroshot.backends import native_bf16_cpu
from medklip.zeroshot.benchmark import evaluate_dataset


def probabilities(run: Path) -> tuple[list[str], np.ndarray]:
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    cols = [k for k in rows[0] if k.startswith("prob:")]
    return cols, np.array([[float(r[c]) for c in cols] for r in rows])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--world", required=True, help="the synthetic world (or use --dataset / --root)")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--split", default="test")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native_bf16_cpu()}")
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            m = evaluate_dataset(args.dataset, args.world, args.model, Path(tmp) / precision, split=args.split,
                                 n_boot=0, n_overlays=0, calibration_split="none", precision=precision)
            seconds = time.perf_counter() - start
            out[precision] = {"metrics": m, "probs": probabilities(Path(tmp) / precision),
                              "images_per_s": m["images"] / seconds}
    cols, a = out["fp32"]["probs"]
    _, b = out["bf16"]["probs"]
    fa, fb = out["fp32"]["metrics"], out["bf16"]["metrics"]
    auc_diff = {k: fb["classification"][k]["auc"] - v["auc"] for k, v in fa["classification"].items()
                if np.isfinite(v["auc"])}
    summary = {"images": int(a.shape[0]), "max_probability_change": float(np.abs(a - b).max()),
               "mean_probability_change": float(np.abs(a - b).mean()),
               "macro_auc_change": fb["macro"]["auc"] - fa["macro"]["auc"],
               "max_class_auc_change": max(abs(v) for v in auc_diff.values()),
               "fp32_images_per_s": out["fp32"]["images_per_s"], "bf16_images_per_s": out["bf16"]["images_per_s"]}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
