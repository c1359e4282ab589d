"""Scoring a zero-shot run (pure functions of its arrays): the paper's classification metrics
per prompt with bootstrap CIs, macro averages (all / seen / unseen), the release's grounding metrics
per prompt and pooled, and severity grades."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medklip.data.benchmarks import Benchmark, Sample
from medklip.evaluation.grounding import (
    RELEASE_THRESHOLD,
    DetectionCounts,
    best_threshold_segmentation,
    detection_counts,
    fixed_threshold_scores,
    normalize_heatmap,
    pointing_game,
    random_patch_hit_rate,
    upsample_blocks,
)
from medklip.evaluation.metrics import best_f1, bootstrap_ci, macro, roc_auc, roc_curve

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


def _ci(metric, *arrays, n_boot: int, seed: int) -> list[float]:
    return list(bootstrap_ci(metric, *arrays, n_boot=n_boot, seed=seed)) if n_boot else [float("nan")] * 2


def _f1_of(y, s) -> float:
    return best_f1(y, s).f1


def _acc_of(y, s) -> float:
    return best_f1(y, s).accuracy


def classification(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict:
    """AUC, F1 at the F1-maximising threshold and ACC there, with bootstrap 95% CIs."""
    if len(np.unique(y)) < 2:
        return {"auc": float("nan"), "f1": float("nan"), "accuracy": float("nan"), "threshold": float("nan"),
                "positives": int(y.sum()), "n": int(len(y)), "note": "one label value only: not defined"}
    s = best_f1(y, p)
    return {"auc": s.auc, "f1": s.f1, "accuracy": s.accuracy, "threshold": s.threshold,
            "positives": int(y.sum()), "n": int(len(y)),
            "auc_ci": _ci(roc_auc, y, p, n_boot=n_boot, seed=seed),
            "f1_ci": _ci(_f1_of, y, p, n_boot=n_boot, seed=seed),
            "accuracy_ci": _ci(_acc_of, y, p, n_boot=n_boot, seed=seed)}


def pointing_hits(cases: Sequence[GroundingCase]) -> np.ndarray:
    """The release's pointing game per case (block upsampling, every max pixel)."""
    return np.array([pointing_game(upsample_blocks(c.heatmap, c.mask.shape), c.mask) for c in cases], float)


def chance_level(cases: Sequence[GroundingCase]) -> float:
    """The pointing game of a heatmap peaking on a random patch, averaged over the cases."""
    return float(np.mean([random_patch_hit_rate(c.heatmap.shape, c.mask) for c in cases]))


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


def score(bench: Benchmark, run: EvaluationRun, n_boot: int, seed: int) -> dict:
    """The metrics dictionary (metrics.json) of one run; fills ``run.curves`` for the ROC plot."""
    metrics: dict = {"dataset": bench.name, "task": bench.task, "images": len(run.samples),
                     "failed_images": len(run.failures), "classification": {}, "grounding": {}}
    for j, prompt in enumerate(run.prompts):
        values = np.array([s.labels.get(prompt.cls, 0) for s in run.samples])
        p = run.probs[:, j]
        if bench.task == "grade":
            metrics.setdefault("grading", {})[prompt.label] = {
                "mean_probability_per_grade": {str(g): float(p[values == g].mean()) if (values == g).any()
                                               else float("nan") for g in bench.grades},
                "images_per_grade": {str(g): int((values == g).sum()) for g in bench.grades}}
        y = (values > 0).astype(int)
        if bench.task != "ground" and len(run.samples):
            metrics["classification"][prompt.label] = classification(y, p, n_boot, seed)
            if len(np.unique(y)) == 2:
                fpr, tpr, _ = roc_curve(y, p)
                run.curves[prompt.label] = (fpr, tpr, metrics["classification"][prompt.label]["auc"])
        if run.grounding.get(j):
            metrics["grounding"][prompt.label] = grounding(run.grounding[j], n_boot, seed)
    by_label = {p.label: p for p in run.prompts}
    described = {k: v for k, v in metrics["classification"].items() if by_label[k].kind == DESCRIPTION}
    if described:
        metrics["macro"] = {m: macro(v[m] for v in described.values()) for m in ("auc", "f1", "accuracy")}
        for group, wanted in (("seen", True), ("unseen", False)):
            part = [v for k, v in described.items() if by_label[k].seen is wanted]
            if part and len(part) < len(described):
                metrics[f"macro_{group}"] = {m: macro(v[m] for v in part) for m in ("auc", "f1", "accuracy")}
    metrics["unseen_classes"] = sorted({p.cls for p in run.prompts if not p.seen})
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
    return metrics
