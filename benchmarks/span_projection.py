"""Trained models' query projection restricted to the span of their training queries, scored again.

For every finished cell of a ``demo_matrix.py`` output folder: the part of the query projection's
weights outside the span of the model's training descriptions (its norm against the whole), and
the seen macro AUC / covid-19 AUC by description and by name as trained and with ``W <- W P``
(``P`` the projector onto that span; what ``model.query_init: span`` starts from). No retraining.

    .venv/bin/python benchmarks/span_projection.py runs/matrix-q2
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from medklip.demo import demo_summary
from medklip.models.medklip import MedKLIP, restrict_to_query_span
from medklip.zeroshot.benchmark import evaluate_dataset


def score(model: MedKLIP, world: Path, scratch: Path) -> list[float]:
    model.save_pretrained(scratch / "model")
    s = demo_summary(evaluate_dataset("synthetic", world, scratch / "model", scratch / "eval", split="test",
                                      n_boot=0, n_overlays=0, progress=False))
    return [round(s[k], 3) for k in ("seen_macro_auc", "covid-19_auc_by_description", "covid-19_auc_by_name")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="a demo_matrix.py --out folder")
    args = p.parse_args()
    for cell in sorted(c for c in args.out.iterdir() if (c / "pretrain" / "best" / "config.json").is_file()):
        model = MedKLIP.from_pretrained(cell / "pretrain" / "best")
        weight = model.query_projection.weight.detach().clone()
        row: dict = {"cell": cell.name}
        with tempfile.TemporaryDirectory() as tmp:
            row["trained"] = score(model, cell / "world", Path(tmp) / "trained")
            restrict_to_query_span(model.query_projection, model.entity_embeddings)
            outside = (weight - model.query_projection.weight).norm() / weight.norm()
            row["outside_span_share"] = round(float(outside), 3)
            row["span"] = score(model, cell / "world", Path(tmp) / "span")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
