"""What each opt-in inference path changes on a trained model: probabilities and AUCs of the same
test split scored exactly (PyTorch, fp32, one process) and by the opt-in path, and each path's
images/s, in one process.

    .venv/bin/python benchmarks/precision.py --model runs/demo/pretrain/best --world runs/demo/world \
        [--paths bf16 onnxruntime processes onnxruntime-processes]

Paths: ``bf16`` (autocast), ``onnxruntime`` (the exported graph), ``processes`` (N model processes,
PyTorch), ``onnxruntime-processes`` (N model processes, ONNX Runtime), ``fast-onnxruntime-processes``
(the same with the opt-in fast decoding); N is ``--processes`` (default: the cores). The default
profile's models are small (96 px local trunk): their speed says little about the paper's ResNet-50
at 224 px, which ``benchmarks/speed.py`` times on full-size images.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
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


def path_options(processes: int) -> dict[str, dict]:
    """Each opt-in path's ``Predictor`` options (the exact path: none)."""
    return {"bf16": {"precision": "bf16"}, "onnxruntime": {"backend": "onnxruntime"},
            "processes": {"processes": processes},
            "onnxruntime-processes": {"backend": "onnxruntime", "processes": processes},
            "fast-onnxruntime-processes": {"backend": "onnxruntime", "processes": processes, "fast": True}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--world", required=True, help="the synthetic world (or use --dataset / --root)")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--split", default="test")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--paths", nargs="+", default=["bf16"], choices=list(path_options(2)))
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native_bf16_cpu()}")
    options = {"exact": {}, **{k: v for k, v in path_options(args.processes).items() if k in args.paths}}
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in options.items():
            start = time.perf_counter()
            m = evaluate_dataset(args.dataset, args.world, args.model, Path(tmp) / name, split=args.split,
                                 n_boot=0, n_overlays=0, calibration_split="none", **opts)
            seconds = time.perf_counter() - start
            out[name] = {"metrics": m, "probs": probabilities(Path(tmp) / name), "images_per_s": m["images"] / seconds}
    _, a = out["exact"]["probs"]
    fa = out["exact"]["metrics"]
    summary: dict = {"images": int(a.shape[0]), "exact_images_per_s": out["exact"]["images_per_s"]}
    for name in options:
        if name == "exact":
            continue
        b, fb = out[name]["probs"][1], out[name]["metrics"]
        auc_diff = {k: fb["classification"][k]["auc"] - v["auc"] for k, v in fa["classification"].items()
                    if np.isfinite(v["auc"])}
        summary[name] = {"max_probability_change": float(np.abs(a - b).max()),
                         "mean_probability_change": float(np.abs(a - b).mean()),
                         "macro_auc_change": fb["macro"]["auc"] - fa["macro"]["auc"],
                         "max_class_auc_change": max(abs(v) for v in auc_diff.values()),
                         "images_per_s": out[name]["images_per_s"]}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
