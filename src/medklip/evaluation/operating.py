"""Operating points chosen on one split and applied to another (pure functions).

The release (``Sample_zero-shot_Classification_CXR14/test.py``) and the paper pick the F1-maximising
threshold on the test predictions themselves, so their F1 / accuracy are optimistic and the threshold
cannot be reused. Here each finding's threshold (and the grounding binarisation threshold) is
chosen on a validation split and the test split is scored at it; the test-tuned values stay beside
it as the paper's protocol."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from medklip.evaluation.grounding import best_threshold_segmentation, segmentation_at
from medklip.evaluation.metrics import best_f1, f1_accuracy_at


@dataclass(frozen=True)
class OperatingPoints:
    """Thresholds per prompt label, and where they come from."""

    source: str
    """What they were chosen on, in words (e.g. ``validation split (100 images)``)."""
    images: int
    thresholds: dict[str, float] = field(default_factory=dict)
    """Classification: the F1-maximising probability threshold on the source."""
    grounding: dict[str, float] = field(default_factory=dict)
    """Grounding: the threshold of the min-max normalised heatmap maximising mean Dice on the source."""
    missing: dict[str, str] = field(default_factory=dict)
    """Prompt label -> why it has no threshold (e.g. no positive image in the source)."""

    def to_dict(self) -> dict:
        return {"available": True, "source": self.source, "images": self.images, "thresholds": self.thresholds,
                "grounding_thresholds": self.grounding, "missing": self.missing}


def fit_operating_points(source: str, labels: Mapping[str, np.ndarray], probs: Mapping[str, np.ndarray],
                         grounding: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]] | None = None,
                         ) -> OperatingPoints:
    """Thresholds from ``labels`` / ``probs`` (0/1 and probabilities per prompt label) and, for
    grounding, from ``(heatmaps, masks)`` of the positive images per prompt label."""
    thresholds, missing = {}, {}
    images = max((len(v) for v in labels.values()), default=0)
    for label, y in labels.items():
        y = np.asarray(y)
        if len(np.unique(y)) < 2:
            missing[label] = f"the {source} has {'no positive' if not y.any() else 'only positive'} images"
            continue
        thresholds[label] = best_f1(y, probs[label]).threshold
    ground = {label: best_threshold_segmentation(list(h), list(m)).threshold
              for label, (h, m) in (grounding or {}).items() if len(h)}
    return OperatingPoints(source, images, thresholds, ground, missing)


def classification_at(y: np.ndarray, p: np.ndarray, threshold: float | None) -> dict:
    """F1 and accuracy at ``threshold`` (NaN without one)."""
    if threshold is None or len(np.unique(y)) < 2:
        return {"operating_f1": float("nan"), "operating_accuracy": float("nan"),
                "operating_threshold": float("nan") if threshold is None else threshold}
    f1, accuracy = f1_accuracy_at(y, p, threshold)
    return {"operating_f1": f1, "operating_accuracy": accuracy, "operating_threshold": threshold}


def grounding_at(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float | None) -> dict:
    """Dice and IoU at ``threshold`` (NaN without one)."""
    if threshold is None:
        return {"operating_dice": float("nan"), "operating_iou": float("nan"), "operating_threshold": float("nan")}
    seg = segmentation_at(heatmaps, masks, threshold)
    return {"operating_dice": seg.dice, "operating_iou": seg.iou, "operating_threshold": threshold}


def unavailable(reason: str) -> dict:
    """The ``operating_points`` entry of metrics.json when none could be chosen."""
    return {"available": False, "reason": reason}
