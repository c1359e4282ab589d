"""Scoring a zero-shot run (pure functions of its arrays): the paper's classification metrics
per prompt with bootstrap CIs, macro averages (all / seen / unseen), the release's grounding metrics
per prompt and pooled, and severity grades."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medklip.data.benchmarks import Benchmark, Sample
from medklip.evaluation.calibration import ECE_BINS, calibration_scores, reliability
from medklip.evaluation.grounding import (
    PHRASE_THRESHOLDS,
    RELEASE_THRESHOLD,
    DetectionCounts,
    best_threshold_segmentation,
    contrast_to_noise,
    detection_counts,
    fixed_threshold_scores,
    mean_iou_over_thresholds,
    normalize_heatmap,
    pointing_game,
    random_patch_hit_rate,
    upsample_blocks,
)
from medklip.evaluation.metrics import (
    best_f1,
    bootstrap_binary_cis,
    bootstrap_ci,
    bootstrap_counts,
    macro,
    roc_curve,
)
from medklip.evaluation.operating import OperatingPoints, classification_at, grounding_at

DESCRIPTION, NAME = "description", "name"


@dataclass
class Prompt:
    """One query per dataset class: the entity's knowledge-base description (or the user's),
    or, for an entity the model was not trained on, the bare name as the paper's "direct" prompt."""

    cls: str
    kind: str  # description | name
    key: str  # the name the Predictor knows the query by
    seen: bool = True  # the model was trained on this entity

    @property
    def label(self) -> str:
        return self.cls if self.kind == DESCRIPTION else f"{self.cls} (name)"


@dataclass
class GroundingCase:
    """One positive image of one prompt: the patch-grid heatmap and the mask at the model's input size."""

    heatmap: np.ndarray
    mask: np.ndarray


@dataclass
class EvaluationRun:
    """What a run produced; ``metrics`` is what metrics.json holds."""

    samples: list[Sample]
    prompts: list[Prompt]
    probs: np.ndarray  # [N, P]
    grounding: dict[int, list[GroundingCase]] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    overlays: list = field(default_factory=list)  # paths of the overlay pictures written
    calibrated: list[bool] = field(default_factory=list)  # per prompt: probability calibrated
    raw_probs: np.ndarray | None = None  # [N, P] before calibration (only when some prompt is calibrated)
    calibration_source: str | None = None
    reliability: dict = field(default_factory=dict)  # label -> {"raw": Reliability, "calibrated": ...}

    def is_calibrated(self, j: int) -> bool:
        """Whether prompt ``j``'s probabilities are calibrated (runs that record none: no)."""
        return j < len(self.calibrated) and bool(self.calibrated[j])

    def binary(self, j: int, probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Prompt ``j``'s 0/1 labels and its column of ``probs`` (default: :attr:`probs`), the
        images whose label is uncertain (-1 under the ``ignore`` policy) left out."""
        values = np.array([s.labels.get(self.prompts[j].cls, 0) for s in self.samples])
        known = values >= 0
        return (values[known] > 0).astype(int), (self.probs if probs is None else probs)[known, j]


def _ci(metric, *arrays, n_boot: int, seed: int) -> list[float]:
    return list(bootstrap_ci(metric, *arrays, n_boot=n_boot, seed=seed)) if n_boot else [float("nan")] * 2


def classification(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int,
                   counts: np.ndarray | None = None) -> dict:
    """AUC, F1 at the F1-maximising threshold and ACC there, with bootstrap 95% CIs (``counts``:
    the resampling of :func:`bootstrap_counts` for ``len(y)`` rows, shared by the classes)."""
    if len(np.unique(y)) < 2:
        return {"auc": float("nan"), "f1": float("nan"), "accuracy": float("nan"), "threshold": float("nan"),
                "positives": int(y.sum()), "n": int(len(y)), "note": "one label value only: not defined"}
    s = best_f1(y, p)
    out: dict[str, Any] = {"auc": s.auc, "f1": s.f1, "accuracy": s.accuracy, "threshold": s.threshold,
           "positives": int(y.sum()), "n": int(len(y))}
    if n_boot:
        cis = bootstrap_binary_cis(y, p, counts if counts is not None else bootstrap_counts(len(y), n_boot, seed))
        out.update({f"{k}_ci": list(v) for k, v in cis.items()})
    else:
        out.update({f"{k}_ci": [float("nan")] * 2 for k in ("auc", "f1", "accuracy")})
    return out


def _macro_rows(rows: Iterable[Mapping[str, Any]]) -> dict:
    """Macro averages of AUC, F1 and ACC over classification rows (and of F1 / ACC at the
    operating points, over the classes that have one: ``operating_classes``)."""
    rows = list(rows)
    out = {m: macro(v[m] for v in rows) for m in ("auc", "f1", "accuracy")}
    if any("operating_f1" in v for v in rows):
        out.update({m: macro(v.get(m, float("nan")) for v in rows) for m in ("operating_f1", "operating_accuracy")})
        out["operating_classes"] = sum(1 for v in rows if np.isfinite(v.get("operating_f1", float("nan"))))
    return out


def pointing_hits(cases: Sequence[GroundingCase]) -> np.ndarray:
    """The release's pointing game per case (block upsampling, every max pixel)."""
    return np.array([pointing_game(upsample_blocks(c.heatmap, c.mask.shape), c.mask) for c in cases], float)


def chance_level(cases: Sequence[GroundingCase]) -> float:
    """The pointing game of a heatmap peaking on a random patch, averaged over the cases."""
    return float(np.mean([random_patch_hit_rate(c.heatmap.shape, c.mask) for c in cases]))


def phrase_scores(cases: Sequence[GroundingCase], n_boot: int, seed: int) -> dict:
    """MS-CXR's phrase-grounding metrics: mIoU (averaged over the thresholds
    :data:`PHRASE_THRESHOLDS` of the normalised map) and the contrast-to-noise ratio, per case
    averaged, with bootstrap CIs."""
    mious = np.array([mean_iou_over_thresholds(c.heatmap, c.mask) for c in cases])
    cnrs = np.array([contrast_to_noise(c.heatmap, c.mask) for c in cases])
    cnrs = cnrs[np.isfinite(cnrs)]
    return {"miou": float(mious.mean()), "miou_ci": _ci(np.mean, mious, n_boot=n_boot, seed=seed),
            "miou_thresholds": list(PHRASE_THRESHOLDS),
            "cnr": float(cnrs.mean()) if len(cnrs) else float("nan"),
            "cnr_ci": _ci(np.mean, cnrs, n_boot=n_boot, seed=seed) if len(cnrs) else [float("nan")] * 2}


def grounding(cases: Sequence[GroundingCase], n_boot: int, seed: int) -> dict:
    """The release's metrics (pointing game; IoU / Dice of the raw map at > 0.008) and the paper's
    (IoU / Dice at the best threshold in 0.01 steps; detection recall / precision of the regions
    at that threshold, matched at IoU 0.1)."""
    hits = pointing_hits(cases)
    fixed = np.array([fixed_threshold_scores(upsample_blocks(c.heatmap, c.mask.shape), c.mask) for c in cases])
    seg = best_threshold_segmentation([c.heatmap for c in cases], [c.mask for c in cases])
    counts = DetectionCounts(0, 0, 0, 0)
    for c in cases:
        pred = upsample_blocks(normalize_heatmap(c.heatmap), c.mask.shape) >= seg.threshold
        counts = counts + detection_counts(pred, c.mask)
    return {"pointing_game": float(hits.mean()), "pointing_game_ci": _ci(np.mean, hits, n_boot=n_boot, seed=seed),
            "pointing_game_chance": chance_level(cases),
            "iou_release": float(fixed[:, 0].mean()), "dice_release": float(fixed[:, 1].mean()),
            "release_threshold": RELEASE_THRESHOLD,
            "iou_best": seg.iou, "dice_best": seg.dice, "best_threshold": seg.threshold,
            "recall": counts.recall, "precision": counts.precision, "images": len(cases)}


def _calibration_row(run: EvaluationRun, j: int, known: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict:
    """ECE / Brier of prompt ``j``'s probabilities (and of the raw ones where they were calibrated)."""
    row: dict[str, Any] = {**calibration_scores(y, p), "calibrated": run.is_calibrated(j)}
    if run.raw_probs is not None:  # some prompt is calibrated: every row gets its before (equal when not this one)
        raw = calibration_scores(y, run.raw_probs[known, j])
        row.update({"ece_raw": raw["ece"], "brier_raw": raw["brier"]})
    return row


def _calibration_summary(run: EvaluationRun, rows: Mapping[str, Mapping[str, Any]]) -> dict:
    """Which probabilities are calibrated (on what), mean ECE / Brier over the seen described
    classes (before and after), and their pooled reliability bins for the diagram."""
    seen = [j for j, p in enumerate(run.prompts) if p.kind == DESCRIPTION and p.seen and "ece" in rows.get(p.label, {})]
    out: dict[str, Any] = {
        "binning": f"{ECE_BINS} equal-width bins of the probability; ECE: image-weighted mean |positive rate - "
                   "mean probability| per finding",
        "source": run.calibration_source,
        "calibrated": [p.label for j, p in enumerate(run.prompts) if run.is_calibrated(j)],
        "uncalibrated": [p.label for j, p in enumerate(run.prompts) if not run.is_calibrated(j)]}
    if seen:
        labels = [rows[run.prompts[j].label] for j in seen]
        out["seen"] = {k: macro(r[k] for r in labels) for k in ("ece", "brier")}
        if all("ece_raw" in r for r in labels):
            out["seen"].update({k: macro(r[k] for r in labels) for k in ("ece_raw", "brier_raw")})
        y = np.concatenate([run.binary(j)[0] for j in seen])
        pooled = {"calibrated" if run.raw_probs is not None else "raw": np.concatenate(
            [run.binary(j)[1] for j in seen])}
        if run.raw_probs is not None:
            pooled["raw"] = np.concatenate([run.binary(j, run.raw_probs)[1] for j in seen])
        run.reliability = {k: reliability(y, v) for k, v in pooled.items()}
    return out


def score(bench: Benchmark, run: EvaluationRun, n_boot: int, seed: int,
          operating: OperatingPoints | None = None) -> dict:
    """The metrics dictionary (metrics.json) of one run; fills ``run.curves`` for the ROC plot.
    With ``operating``, each class and grounded prompt is also scored at the thresholds chosen
    there (``operating_*``; the test-tuned ``f1`` / ``accuracy`` / ``dice_best`` stay)."""
    metrics: dict = {"dataset": bench.name, "task": bench.task, "images": len(run.samples),
                     "failed_images": len(run.failures), "classification": {}, "grounding": {}}
    resamples: dict[int, np.ndarray] = {}  # one resampling per test-set size, shared by the classes
    for j, prompt in enumerate(run.prompts):
        values = np.array([s.labels.get(prompt.cls, 0) for s in run.samples])
        p = run.probs[:, j]
        if bench.task == "grade":
            metrics.setdefault("grading", {})[prompt.label] = {
                "mean_probability_per_grade": {str(g): float(p[values == g].mean()) if (values == g).any()
                                               else float("nan") for g in bench.grades},
                "images_per_grade": {str(g): int((values == g).sum()) for g in bench.grades}}
        known = values >= 0  # -1: uncertain under the `ignore` policy, not counted for this class
        y, p = (values[known] > 0).astype(int), p[known]
        if bench.task not in ("ground", "phrase-ground") and len(run.samples):
            if n_boot and len(y) not in resamples:
                resamples[len(y)] = bootstrap_counts(len(y), n_boot, seed)
            metrics["classification"][prompt.label] = classification(y, p, n_boot, seed, resamples.get(len(y)))
            if operating is not None:
                metrics["classification"][prompt.label].update(
                    classification_at(y, p, operating.thresholds.get(prompt.label)))
            if len(np.unique(y)) == 2:
                metrics["classification"][prompt.label].update(_calibration_row(run, j, known, y, p))
                fpr, tpr, _ = roc_curve(y, p)
                run.curves[prompt.label] = (fpr, tpr, metrics["classification"][prompt.label]["auc"])
        if run.grounding.get(j):
            metrics["grounding"][prompt.label] = grounding(run.grounding[j], n_boot, seed)
            if operating is not None:
                cases = run.grounding[j]
                metrics["grounding"][prompt.label].update(grounding_at(
                    [c.heatmap for c in cases], [c.mask for c in cases], operating.grounding.get(prompt.label)))
            if bench.task == "phrase-ground":
                metrics["grounding"][prompt.label].update(phrase_scores(run.grounding[j], n_boot, seed))
    by_label = {p.label: p for p in run.prompts}
    described = {k: v for k, v in metrics["classification"].items() if by_label[k].kind == DESCRIPTION}
    if described:
        metrics["macro"] = _macro_rows(described.values())
        for group, wanted in (("seen", True), ("unseen", False)):
            part = [v for k, v in described.items() if by_label[k].seen is wanted]
            if part and len(part) < len(described):
                metrics[f"macro_{group}"] = _macro_rows(part)
    named = [v for k, v in metrics["classification"].items() if by_label[k].kind == NAME]
    if named:
        metrics["macro_unseen_name"] = _macro_rows(named)
    for group, members in bench.groups.items():
        part = [v for k, v in described.items() if by_label[k].cls in members]
        if part:
            metrics[f"macro_{group}"] = _macro_rows(part)
            metrics[f"macro_{group}"]["classes"] = len(part)
    metrics["unseen_classes"] = sorted({p.cls for p in run.prompts if not p.seen})
    if operating is not None:
        metrics["operating_points"] = operating.to_dict()
    if metrics["classification"]:
        metrics["calibration"] = _calibration_summary(run, metrics["classification"])
    pooled = [c for j, cases in run.grounding.items() if run.prompts[j].kind == DESCRIPTION for c in cases]
    if pooled:
        hits = pointing_hits(pooled)
        metrics["grounding_overall"] = {
            "pointing_game": float(hits.mean()), "pointing_game_ci": _ci(np.mean, hits, n_boot=n_boot, seed=seed),
            "pointing_game_chance": chance_level(pooled),
            "pointing_game_macro": macro(v["pointing_game"] for k, v in metrics["grounding"].items()
                                         if by_label[k].kind == DESCRIPTION),
            "dice_best_macro": macro(v["dice_best"] for k, v in metrics["grounding"].items()
                                     if by_label[k].kind == DESCRIPTION),
            "instances": len(pooled)}
        if operating is not None:
            metrics["grounding_overall"]["operating_dice_macro"] = macro(
                v["operating_dice"] for k, v in metrics["grounding"].items() if by_label[k].kind == DESCRIPTION)
        if bench.task == "phrase-ground":
            metrics["grounding_overall"].update(phrase_scores(pooled, n_boot, seed))
    return metrics
