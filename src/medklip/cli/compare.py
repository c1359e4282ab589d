"""``medklip compare``: two evaluate runs on the same images, paired."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_compare(args: argparse.Namespace) -> int:
    from medklip.evaluation.compare import compare_runs, comparison_table, read_run
    from medklip.evaluation.plots import save_forest_plot
    from medklip.io_utils import atomic_write_text

    a, b = read_run(args.run_a), read_run(args.run_b)
    name_a, name_b = args.names or (Path(args.run_a).name, Path(args.run_b).name)
    result = compare_runs(a, b, n_boot=args.bootstrap, seed=args.seed, alpha=1 - args.level / 100)
    out = Path(args.output or Path(args.run_a).parent / f"compare-{Path(args.run_a).name}-{Path(args.run_b).name}")
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(result, name_a, name_b)
    atomic_write_text(out / "compare.json", json.dumps({**result, "names": [name_a, name_b]}, indent=1))
    atomic_write_text(out / "compare.md", f"# {name_a} vs {name_b} on {result['dataset']} ({result['images']} images, "
                                          f"paired bootstrap, {args.bootstrap} resamples, seed {args.seed})\n\n{table}\n")
    save_forest_plot(result, out / "forest.png", name_a, name_b)
    print(table)
    print(f"\nwritten: {out / 'compare.json'}, {out / 'compare.md'}, {out / 'forest.png'}")
    return 0


def add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two evaluate runs on the same images (paired bootstrap)",
                       description="Per-class and macro AUC differences between two `medklip evaluate` runs on the "
                                   "same images and labels, with paired-bootstrap intervals and p-values, a table "
                                   "and a forest plot. Runs on other images or labels are refused.")
    p.add_argument("run_a", help="output folder of the first evaluate run")
    p.add_argument("run_b", help="output folder of the second evaluate run")
    p.add_argument("-o", "--output", help="folder for compare.json / compare.md / forest.png")
    p.add_argument("--names", nargs=2, metavar=("A", "B"), help="names of the two runs in the table")
    p.add_argument("--bootstrap", type=int, default=2000, help="paired resamples (default: 2000)")
    p.add_argument("--level", type=float, default=95, help="interval level in percent (default: 95)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_compare)
