"""The paper's ablations (its Tables 9-10) on the embedded world, default profile, one seed each:
the full model; without the position loss; entity names instead of descriptions as queries; the
release's initialisation; and this demo's own choice, a ResNet-18 trunk (whole-image patch
features) instead of the local one. Prints the table the README shows.

    .venv/bin/python benchmarks/demo_ablations.py             # about 50 min on 2 cores
    .venv/bin/python benchmarks/demo_ablations.py --seed 1 --out runs/demo-ablations
    .venv/bin/python benchmarks/demo_ablations.py --full-from runs/demo-seeds   # reuse demo_seeds.py's run
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from medklip.demo import run_demo
from medklip.knowledge import KnowledgeBase

VARIANTS = {
    "full model": (),
    "without the position loss": ("optim.position_loss_weight=0",),
    "entity names as queries (no descriptions)": ("text.knowledge={names}", "text.description_variants=false"),
    "the release's initialisation": ("model.init=release",),
    "ResNet-18 trunk instead of the local one": ("model.backbone=resnet18",),
}


def names_file(folder: Path) -> Path:
    """Every entity described by its bare name (the paper's "w/o description" ablation)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "entity_names.yaml"
    names = {e.name: e.name.replace("_", " ") for e in KnowledgeBase.default().entities}
    path.write_text(yaml.safe_dump({"descriptions": names}))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo-ablations")
    p.add_argument("--only", nargs="+", help="run these variants only (names as in the table)")
    p.add_argument("--full-from", help="a demo_seeds.py folder: take the full model's row from its run of "
                                      "the same seed instead of training it again")
    args = p.parse_args()
    out = Path(args.out)
    names = names_file(out)
    rows = {}
    for label, overrides in VARIANTS.items():
        reuse = Path(args.full_from or "") / f"seed{args.seed}" / "summary.json"
        if label == "full model" and args.full_from and reuse.is_file():
            rows[label] = json.loads(reuse.read_text())
            continue
        if args.only and label not in args.only:
            continue
        start = time.perf_counter()
        sets = tuple(o.format(names=names) for o in overrides)
        result = run_demo(out / label.split(" (")[0].replace(" ", "-").replace("'", ""), progress=False,
                          overrides=(f"data.world.seed={args.seed}", f"run.seed={args.seed}", *sets))
        rows[label] = {**result.summary, "minutes": (time.perf_counter() - start) / 60}
        s = rows[label]
        print(f"{label}: seen AUC {s['seen_macro_auc']:.3f}, pointing {s['pointing_game']:.3f}, covid-19 "
              f"{s['covid-19_auc_by_description']:.3f} / {s['covid-19_auc_by_name']:.3f}", flush=True)
    lines = ["| variant | seen macro AUC | pointing game | Dice (best t) | covid-19 AUC (description) | "
             "covid-19 AUC (name) |", "|---|---|---|---|---|---|"]
    for label, s in rows.items():
        lines.append(f"| {label} | {s['seen_macro_auc']:.3f} | {s['pointing_game']:.3f} | {s['dice_best_macro']:.3f} "
                     f"| {s['covid-19_auc_by_description']:.3f} | {s['covid-19_auc_by_name']:.3f} |")
    print("\n".join(lines))
    (out / "ablations.json").write_text(json.dumps(rows, indent=1))
    (out / "ablations.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
