"""Trained models' query projection restricted to the span of their training queries, scored again.

For every finished cell of a ``demo_matrix.py`` output folder: the part of the query projection's
weights outside the span of the model's training descriptions (its norm against the whole), and
the seen macro AUC / covid-19 AUC by description and by name as trained and with ``W <- W P``
(``P`` the projector onto that span; what ``model.query_init: span`` starts from). No retraining.
With ``--ranks``, also with ``W <- W P_k``, ``P_k`` the projector onto the top ``k`` singular
directions of the training descriptions: whether an unseen description is read through noise in
the weakly trained directions (the singular values relative to the largest are printed too).

    .venv/bin/python benchmarks/span_projection.py runs/matrix-q2
    .venv/bin/python benchmarks/span_projection.py runs/matrix-default-d1 --ranks 5 10 20
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
    p.add_argument("--ranks", type=int, nargs="*", default=[], help="also score W P_k for these k")
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
            if args.ranks:
                _, singular, vh = torch.linalg.svd(model.entity_embeddings.double(), full_matrices=False)
                row["singular_values"] = [round(float(v / singular[0]), 3) for v in singular]
                for k in args.ranks:
                    basis = vh[:k]
                    model.query_projection.weight.copy_(((weight.double() @ basis.T) @ basis).float())
                    row[f"top{k}"] = score(model, cell / "world", Path(tmp) / f"top{k}")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
