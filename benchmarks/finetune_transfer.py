#!/usr/bin/env python3
"""Does MedKLIP pre-training transfer? Fine-tune from scratch and from a pre-trained MedKLIP image
encoder with 1% and 10% of the labels of a fresh synthetic world (a different seed from the
pre-training world) and print the paper's Table 5 / 6 layout, mean and spread over seeds.

    make demo                                        # pre-trains runs/demo/pretrain/best
    python benchmarks/finetune_transfer.py           # classification, seeds 0 1 2
    python benchmarks/finetune_transfer.py --tasks classify segment --model runs/demo/pretrain/best
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

from medklip.config_utils import load_config
from medklip.finetune import FinetuneConfig, finetune
from medklip.finetune.config import builtin_finetune_config
from medklip.models.serialization import read_model_config


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="runs/demo/pretrain/best", help="pre-trained medklip model folder")
    p.add_argument("--tasks", nargs="+", default=["classify"], choices=["classify", "segment", "grade"])
    p.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--world", default="runs/finetune-world", help="the synthetic fine-tuning world (written if missing)")
    p.add_argument("--output", default="runs/finetune-transfer")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not Path(args.model, "config.json").is_file():
        print(f"{args.model} is not a medklip model folder; run `make demo` first or pass --model", file=sys.stderr)
        return 2
    # both arms on the pre-trained model's trunk (the demo's: local), so the difference is the weights
    backbone = read_model_config(args.model)["model"]["backbone"]
    rows = []
    for task in args.tasks:
        for fraction in args.fractions:
            scores = {}
            for init in ("scratch", args.model):
                values = []
                for seed in args.seeds:
                    name = f"{task}-{fraction:g}-{'scratch' if init == 'scratch' else 'medklip'}-s{seed}"
                    cfg = load_config(FinetuneConfig, builtin_finetune_config("synthetic-small"), [
                        f"task={task}", f"init={init}", f"data.fraction={fraction}", f"data.root={args.world}",
                        f"run.seed={seed}", f"run.output={Path(args.output) / name}", f"model.backbone={backbone}",
                        *args.set])
                    start = time.perf_counter()
                    result = finetune(cfg, progress=False)
                    value = result.test["dice"] if task == "segment" else result.test["macro"]["auc"]
                    values.append(value)
                    print(f"{name}: {'Dice' if task == 'segment' else 'macro AUC'} {value:.4f} "
                          f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
                scores[init] = values
            rows.append((task, fraction, scores["scratch"], scores[args.model]))
    fmt = lambda v: f"{statistics.mean(v):.4f} ± {statistics.pstdev(v):.4f}"  # noqa: E731
    print(f"\nsynthetic world, seeds {args.seeds}: test macro AUC (classify / grade) or Dice (segment)\n")
    print("| task | labels | scratch | MedKLIP-initialised | difference |")
    print("|---|---|---|---|---|")
    for task, fraction, scratch, medklip in rows:
        diff = statistics.mean(medklip) - statistics.mean(scratch)
        print(f"| {task} | {fraction * 100:g}% | {fmt(scratch)} | {fmt(medklip)} | {diff:+.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
