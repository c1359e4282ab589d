"""`make demo`'s default profile for several seeds (the world and the training both reseeded):
prints each seed's headline numbers, their mean and minimum (the README's three-seed table).

    .venv/bin/python benchmarks/demo_seeds.py                 # seeds 0 1 2, about 30 min on 2 cores
    .venv/bin/python benchmarks/demo_seeds.py --seeds 0 1 2 3 --out runs/demo-seeds --set KEY=VALUE
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from medklip.demo import run_demo

METRICS = [("seen_macro_auc", "seen macro AUC"), ("pointing_game", "pointing game (release rule)"),
           ("covid-19_auc_by_description", "covid-19 AUC, description"),
           ("covid-19_auc_by_name", "covid-19 AUC, name"), ("dice_best_macro", "Dice (best t, macro)")]


def summarize(rows: dict[int, dict]) -> str:
    lines = ["| metric | " + " | ".join(f"seed {s}" for s in rows) + " | mean | min |",
             "|---|" + "---|" * (len(rows) + 2)]
    for key, label in METRICS:
        values = [rows[s][key] for s in rows]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {sum(values) / len(values):.3f} | {min(values):.3f} |")
    margins = [rows[s]["covid-19_auc_by_description"] - rows[s]["covid-19_auc_by_name"] for s in rows]
    lines.append("| covid-19 description - name | " + " | ".join(f"{m:+.3f}" for m in margins)
                 + f" | {sum(margins) / len(margins):+.3f} | {min(margins):+.3f} |")
    minutes = [rows[s]["minutes"] for s in rows]
    lines.append("| minutes (world + training + evaluation) | " + " | ".join(f"{m:.1f}" for m in minutes)
                 + f" | {sum(minutes) / len(minutes):.1f} | {min(minutes):.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/demo-seeds", help="seeds already finished there are read, not rerun")
    p.add_argument("--quick", action="store_true", help="the quick profile instead of the default")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    args = p.parse_args()
    rows: dict[int, dict] = {}
    for seed in args.seeds:
        done = Path(args.out) / f"seed{seed}" / "summary.json"
        if done.is_file():  # a finished seed of an interrupted run: its numbers, not a rerun
            saved = json.loads(done.read_text())
            rows[seed] = {**saved, "minutes": saved["seconds"]["total"] / 60}
            continue
        start = time.perf_counter()
        result = run_demo(Path(args.out) / f"seed{seed}", quick=args.quick, progress=False,
                          overrides=(f"data.world.seed={seed}", f"run.seed={seed}", *args.set))
        rows[seed] = {**result.summary, "minutes": (time.perf_counter() - start) / 60}
        s = rows[seed]
        print(f"seed {seed}: seen AUC {s['seen_macro_auc']:.3f}, pointing {s['pointing_game']:.3f}, covid-19 "
              f"{s['covid-19_auc_by_description']:.3f} (description) / {s['covid-19_auc_by_name']:.3f} (name), "
              f"{s['minutes']:.1f} min", flush=True)
    table = summarize(rows)
    print(table)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "seeds.json").write_text(json.dumps(rows, indent=1, default=lambda v: None
                                                          if isinstance(v, float) and math.isnan(v) else v))
    (Path(args.out) / "seeds.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
