"""Operating points, calibration and description ensembles measured on trained demo models.

For each demo run folder (``medklip demo -o RUN``, e.g. the cells of ``benchmarks/demo_matrix.py``)
the synthetic world is written again at version 5 (same images; validation ground truth added),
then, tuned on its validation split and scored on its test split (extended to ``--test-images``,
default 1,500, so that covid-19's AUC is measured to about +-0.02):

- F1 at each finding's validation threshold vs the paper's test-tuned F1 (seen findings, macro);
- ECE (15 equal-width bins) and Brier before / after calibration, temperature and Platt;
- covid-19 (unseen) AUC by its first description, by the ensemble of its four descriptions (the
  mean of one query per description's probabilities: medklip's default; the mean of their
  embeddings) and by each description alone.

    .venv/bin/python benchmarks/calibration_ensembles.py runs/matrix-default/seed{0,1,2}-native-t1 \\
        --out runs/calibration-ensembles

Results are appended to ``OUT/results.jsonl`` as each run finishes; the table is printed at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from medklip.data.benchmarks import load_benchmark
from medklip.data.synthetic import WorldConfig, generate_world
from medklip.evaluation.metrics import roc_auc
from medklip.knowledge import read_description_variants, resolve_descriptions
from medklip.zeroshot.benchmark import evaluate_dataset
from medklip.zeroshot.calibrate import calibrate_model
from medklip.zeroshot.predict import Predictor

COVID = "covid-19"


def world_v5(run: Path, out: Path, test_images: int) -> Path:
    """The run's world again (same images), with validation ground truth and at least
    ``test_images`` test images (a superset of the run's: each image depends on its index only)."""
    meta = json.loads((run / "world" / "world.json").read_text())
    cfg = WorldConfig(**{f.name: meta[f.name] for f in fields(WorldConfig) if f.name in meta})
    cfg = WorldConfig(**{**{f.name: getattr(cfg, f.name) for f in fields(WorldConfig)},
                         "test": max(cfg.test, test_images)})
    return generate_world(out / "world", cfg, workers=1)


def covid_aucs(model: Path, world: Path, variants: list[str]) -> dict:
    """covid-19's test AUC by its first description, by the ensemble of all of them (mean of the
    probabilities of one query per description, medklip's default; mean of the embeddings), and by
    each description alone."""
    bench = load_benchmark("synthetic", world)
    test = [s for s in bench.samples if bench.official_split and bench.official_split[s.id] == "test"]
    y = np.array([s.labels[COVID] for s in test])

    def auc(describe: dict, ensemble: str = "probability") -> float:
        predictor = Predictor(model, device="cpu", ensemble=ensemble)
        preds = predictor.predict([s.image for s in test], [], describe, heatmaps=False, batch_size=32)
        return roc_auc(y, np.array([p.probabilities[COVID] for p in preds]))

    return {"covid_single": auc({COVID: variants[0]}), "covid_probability_ensemble": auc({COVID: variants}),
            "covid_embedding_ensemble": auc({COVID: variants}, "embedding"),
            "covid_each": [auc({COVID: v}) for v in variants], "covid_positives": int(y.sum()),
            "test_images": len(y)}


def seen_summary(m: dict) -> dict[str, float]:
    seen = m["macro_seen"]
    return {"f1_validation_threshold": seen["operating_f1"], "f1_test_tuned": seen["f1"],
            "accuracy_validation_threshold": seen["operating_accuracy"], "accuracy_test_tuned": seen["accuracy"],
            "operating_classes": seen["operating_classes"], "ece": m["calibration"]["seen"]["ece"],
            "brier": m["calibration"]["seen"]["brier"], "seen_auc": seen["auc"]}


def measure(run: Path, out: Path, test_images: int, covid: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    world = world_v5(run, out, test_images)
    model = run / "pretrain" / "best"
    common = dict(n_boot=0, n_overlays=0, by_name=False)
    raw = seen_summary(evaluate_dataset("synthetic", world, model, out / "raw", **common))
    row: dict = {"run": str(run), "raw": raw}
    for method in ("temperature", "platt"):
        calibrate_model(model, "synthetic", world, out / f"model-{method}", method=method)
        row[method] = seen_summary(evaluate_dataset("synthetic", world, out / f"model-{method}", out / method,
                                                    **common))
    if covid:
        variants = read_description_variants(resolve_descriptions("synthetic-world"))[COVID]
        row.update(covid_aucs(model, world, variants))
    return row


def table(rows: list[dict]) -> str:
    head = ("| run | seen AUC | F1 val. t | F1 test-tuned | ECE raw | ECE temp. | ECE Platt | Brier raw | "
            "Brier temp. | Brier Platt | covid single | covid ens. (mean prob.) | covid ens. (mean emb.) | covid each |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {Path(r['run']).name} | {r['raw']['seen_auc']:.3f} | {r['raw']['f1_validation_threshold']:.3f} | "
                     f"{r['raw']['f1_test_tuned']:.3f} | {r['raw']['ece']:.3f} | {r['temperature']['ece']:.3f} | "
                     f"{r['platt']['ece']:.3f} | {r['raw']['brier']:.3f} | {r['temperature']['brier']:.3f} | "
                     f"{r['platt']['brier']:.3f} | {r['covid_single']:.3f} | {r['covid_probability_ensemble']:.3f} | "
                     f"{r['covid_embedding_ensemble']:.3f} | {' / '.join(f'{v:.3f}' for v in r['covid_each'])} |")
    if rows:
        def mean(get) -> float:
            return float(np.mean([get(r) for r in rows]))
        lines.append(f"| **mean** | {mean(lambda r: r['raw']['seen_auc']):.3f} | "
                     f"{mean(lambda r: r['raw']['f1_validation_threshold']):.3f} | "
                     f"{mean(lambda r: r['raw']['f1_test_tuned']):.3f} | {mean(lambda r: r['raw']['ece']):.3f} | "
                     f"{mean(lambda r: r['temperature']['ece']):.3f} | {mean(lambda r: r['platt']['ece']):.3f} | "
                     f"{mean(lambda r: r['raw']['brier']):.3f} | {mean(lambda r: r['temperature']['brier']):.3f} | "
                     f"{mean(lambda r: r['platt']['brier']):.3f} | {mean(lambda r: r['covid_single']):.3f} | "
                     f"{mean(lambda r: r['covid_probability_ensemble']):.3f} | "
                     f"{mean(lambda r: r['covid_embedding_ensemble']):.3f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="demo run folders (RUN/pretrain/best, RUN/world)")
    p.add_argument("--out", default="runs/calibration-ensembles")
    p.add_argument("--covid-only", choices=["knowledge-base"],
                   help="only covid-19's AUCs, with the packaged knowledge base's descriptions (the paper's and "
                        "its variants: what the demo queries); results in OUT/covid-knowledge-base.jsonl")
    p.add_argument("--no-covid", action="store_true", help="operating points and calibration only")
    p.add_argument("--test-images", type=int, default=1500,
                   help="score on at least this many test images (the run's, then more of the same world)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.covid_only:
        from medklip.knowledge import KnowledgeBase

        variants = KnowledgeBase.default().texts(COVID)
        lines = []
        for run in map(Path, args.runs):
            world = world_v5(run, out / run.name, args.test_images)
            row = {"run": str(run), **covid_aucs(run / "pretrain" / "best", world, variants)}
            lines.append(row)
            with (out / "covid-knowledge-base.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
        return 0
    results = out / "results.jsonl"
    done = {json.loads(line)["run"]: json.loads(line) for line in results.read_text().splitlines()} \
        if results.is_file() else {}
    rows = []
    for run in map(Path, args.runs):
        if str(run) not in done:
            done[str(run)] = measure(run, out / run.name, args.test_images, not args.no_covid)
            with results.open("a") as f:
                f.write(json.dumps(done[str(run)]) + "\n")
            print(f"{run}: done", file=sys.stderr, flush=True)
        rows.append(done[str(run)])
    print(table(rows) if all("covid_single" in r for r in rows) else json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
