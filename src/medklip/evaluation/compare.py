"""Two evaluation runs on the same images, compared: per-class and macro AUC differences with
paired-bootstrap confidence intervals and p-values.

Paired: every resample draws the same images for both runs, so the interval is that of the
difference on this test set (the images both models saw), not of two independent estimates; it is
narrower than the two runs' own intervals suggest whenever the models agree on which images are hard.
"""
from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medklip.errors import MedKLIPError
from medklip.evaluation.metrics import bootstrap_aucs, bootstrap_counts, roc_auc

NAME_SUFFIX = " (name)"


class RunMismatchError(MedKLIPError):
    """Two runs that were not scored on the same images with the same labels."""


@dataclass
class RunPredictions:
    """What ``medklip evaluate`` wrote into one run folder, read back."""

    folder: Path
    dataset: str
    ids: list[str]
    labels: dict[str, np.ndarray]
    """Dataset class -> label per image (``-1``: uncertain, left out as the evaluator does)."""
    probs: dict[str, np.ndarray]
    """Prompt (``Effusion``, ``covid-19 (name)``) -> probability per image."""
    prompt_class: dict[str, str]


def read_run(folder: str | Path) -> RunPredictions:
    """Read ``metrics.json`` and ``predictions.csv`` of an evaluate run folder."""
    folder = Path(folder)
    for name in ("metrics.json", "predictions.csv"):
        if not (folder / name).is_file():
            raise MedKLIPError(f"{folder}: no {name}; give the output folder of a `medklip evaluate` run")
    metrics = json.loads((folder / "metrics.json").read_text())
    with (folder / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise MedKLIPError(f"{folder / 'predictions.csv'} has no rows")
    classes = [c.removeprefix("label:") for c in rows[0] if c.startswith("label:")]
    prompts = [c.removeprefix("prob:") for c in rows[0] if c.startswith("prob:")]
    recorded = metrics.get("prompt_classes", {})
    prompt_class = {p: recorded.get(p, p.removesuffix(NAME_SUFFIX)) for p in prompts}
    missing = sorted({c for c in prompt_class.values() if c not in classes})
    if missing:
        raise MedKLIPError(f"{folder / 'predictions.csv'}: no label column for {', '.join(missing)}")

    def number(value: str, column: str, row: int) -> float:
        try:
            return float(value)
        except ValueError:
            raise MedKLIPError(f"{folder / 'predictions.csv'} row {row}: {column} is {value!r}, not a number") from None

    labels = {c: np.array([number(r[f"label:{c}"] or "0", f"label:{c}", i) for i, r in enumerate(rows, 2)])
              for c in classes}
    probs = {p: np.array([number(r[f"prob:{p}"], f"prob:{p}", i) for i, r in enumerate(rows, 2)]) for p in prompts}
    return RunPredictions(folder, str(metrics.get("dataset", "")), [r["id"] for r in rows], labels, probs,
                          prompt_class)


def align(a: RunPredictions, b: RunPredictions) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The common images in ``a``'s order and each run's row of them; refuses runs on other images
    or with other labels, naming the first difference."""
    if a.dataset != b.dataset:
        raise RunMismatchError(f"{a.folder} scored {a.dataset!r} and {b.folder} scored {b.dataset!r}")
    only_a, only_b = sorted(set(a.ids) - set(b.ids)), sorted(set(b.ids) - set(a.ids))
    if only_a or only_b:
        which = f"{len(only_a)} images only in {a.folder} (first: {only_a[0]})" if only_a else ""
        which += "; " if only_a and only_b else ""
        which += f"{len(only_b)} images only in {b.folder} (first: {only_b[0]})" if only_b else ""
        raise RunMismatchError(f"the runs were not scored on the same images: {which}")
    if len(set(a.ids)) != len(a.ids):
        raise RunMismatchError(f"{a.folder}: an image id appears twice in predictions.csv")
    row_b = {i: k for k, i in enumerate(b.ids)}
    ia, ib = np.arange(len(a.ids)), np.array([row_b[i] for i in a.ids])
    for cls in sorted(set(a.labels) & set(b.labels)):
        differ = np.flatnonzero(a.labels[cls][ia] != b.labels[cls][ib])
        if len(differ):
            raise RunMismatchError(f"the label of {cls} differs for {len(differ)} images (first: {a.ids[differ[0]]}); "
                                   "the runs did not read the same label file")
    return list(a.ids), ia, ib


def _p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'no difference': twice the smaller share of resampled
    differences on either side of 0 (at most 1)."""
    d = deltas[np.isfinite(deltas)]
    if not len(d):
        return float("nan")
    return float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))


def compare_runs(a: RunPredictions, b: RunPredictions, n_boot: int = 2000, seed: int = 0,
                 alpha: float = 0.05) -> dict:
    """Per prompt both runs scored: AUC of each, their difference (a - b) with a paired-bootstrap
    ``1 - alpha`` percentile interval and p-value; the same for the macro AUC over the description
    prompts (each resample's mean over classes)."""
    ids, ia, ib = align(a, b)
    prompts = [p for p in a.probs if p in b.probs]
    if not prompts:
        raise RunMismatchError(f"{a.folder} and {b.folder} share no prompt")
    counts = bootstrap_counts(len(ids), n_boot, seed)
    rows, macro_deltas, macro_a, macro_b = {}, [], [], []
    for prompt in prompts:
        values = a.labels[a.prompt_class[prompt]][ia]
        known = values >= 0
        y, pa, pb = (values[known] > 0).astype(int), a.probs[prompt][ia][known], b.probs[prompt][ib][known]
        w = counts[:, known]
        boot_a, boot_b = bootstrap_aucs(y, pa, w), bootstrap_aucs(y, pb, w)
        deltas = boot_a - boot_b
        auc_a, auc_b = roc_auc(y, pa), roc_auc(y, pb)
        finite = deltas[np.isfinite(deltas)]
        ci = [float(np.quantile(finite, alpha / 2)), float(np.quantile(finite, 1 - alpha / 2))] if len(finite) \
            else [float("nan"), float("nan")]
        rows[prompt] = {"auc_a": auc_a, "auc_b": auc_b, "delta": auc_a - auc_b, "delta_ci": ci,
                        "p_value": _p_value(deltas), "n": int(len(y)), "positives": int(y.sum())}
        if not prompt.endswith(NAME_SUFFIX) and np.isfinite(auc_a) and np.isfinite(auc_b):
            macro_deltas.append(deltas)
            macro_a.append(auc_a)
            macro_b.append(auc_b)
    out = {"a": str(a.folder), "b": str(b.folder), "dataset": a.dataset, "images": len(ids), "n_boot": n_boot,
           "seed": seed, "alpha": alpha, "classes": rows}
    if macro_deltas:
        with warnings.catch_warnings():  # a resample where every class has one label only: NaN, dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            stacked = np.nanmean(np.vstack(macro_deltas), axis=0)
        finite = stacked[np.isfinite(stacked)]
        out["macro"] = {"auc_a": float(np.mean(macro_a)), "auc_b": float(np.mean(macro_b)),
                        "delta": float(np.mean(macro_a) - np.mean(macro_b)),
                        "delta_ci": [float(np.quantile(finite, alpha / 2)), float(np.quantile(finite, 1 - alpha / 2))],
                        "p_value": _p_value(stacked), "classes": len(macro_deltas)}
    return out


def comparison_table(result: dict, name_a: str = "A", name_b: str = "B") -> str:
    """The paper's layout: one row per class, AUC of each model, the difference with its interval
    and p-value; the macro row last."""
    level = round(100 * (1 - result["alpha"]))
    head = (f"| class | AUC {name_a} | AUC {name_b} | {name_a} - {name_b} [{level}% CI] | p | positives / n |\n"
            "|---|---|---|---|---|---|")
    lines = [head]

    def row(label: str, r: dict, count: str) -> str:
        lo, hi = r["delta_ci"]
        p = r["p_value"]
        p_text = f"< {1 / result['n_boot']:.4f}" if p == 0 else f"{p:.4f}"
        return (f"| {label} | {r['auc_a']:.4f} | {r['auc_b']:.4f} | {r['delta']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                f"{p_text} | {count} |")

    for name, r in result["classes"].items():
        lines.append(row(name, r, f"{r['positives']} / {r['n']}"))
    if "macro" in result:
        lines.append(row("**macro**", result["macro"], f"{result['macro']['classes']} classes"))
    return "\n".join(lines)
