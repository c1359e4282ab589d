"""Evaluation metrics as pure functions of numpy arrays (tested against scikit-learn).

Classification as the release: ROC AUC; the threshold that maximises F1 on the
precision-recall curve, the F1 there and the accuracy at that threshold; macro averages.
Grounding as the paper: pointing game, and Dice / IoU with the binarisation threshold
searched in 0.01 steps (the best value is reported).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    return y, s


def _average_ranks(s: np.ndarray) -> np.ndarray:
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # mean of ranks a+1 .. b
    return ranks


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve (ties count one half); NaN when only one class is present."""
    y, s = _check(y_true, y_score)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), thresholds decreasing."""
    y, s = _check(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~y).sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def precision_recall_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) as scikit-learn >= 1.3: every distinct score is a threshold
    (increasing); a final (precision 1, recall 0) point."""
    y, s = _check(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct].astype(np.float64)
    fps = (distinct + 1) - tps
    precision = np.divide(tps, tps + fps, out=np.ones_like(tps), where=(tps + fps) > 0)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    sl = slice(None, None, -1)
    return np.r_[precision[sl], 1.0], np.r_[recall[sl], 0.0], s[distinct][sl]


@dataclass
class BinaryScores:
    auc: float
    f1: float
    accuracy: float
    threshold: float


def best_f1(y_true, y_score) -> BinaryScores:
    """AUC; the F1-maximising threshold on the PR curve; F1 and accuracy (score >= threshold) there."""
    y, s = _check(y_true, y_score)
    precision, recall, thresholds = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    i = int(np.argmax(f1))
    threshold = float(thresholds[i])
    accuracy = float(np.mean((s >= threshold) == y))
    return BinaryScores(roc_auc(y, s), float(f1[i]), accuracy, threshold)


def macro(values) -> float:
    """Mean over classes, ignoring NaN (a class with one label value)."""
    arr = np.asarray(list(values), dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


# ------------------------------------------------------------------------- grounding
def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the heatmap's maximum falls inside the mask (same shape)."""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ")
    return bool(np.asarray(mask, bool).ravel()[int(np.argmax(heatmap))])


def pointing_game_region(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """The paper's wording of the pointing game: the *region* with the maximum response (the
    image area of the arg-max cell of a patch-grid ``heatmap``) hits the mask. The release
    scores the arg-max *pixel* of the upsampled map instead (:func:`pointing_game`)."""
    heatmap, mask = np.asarray(heatmap), np.asarray(mask, bool)
    (h, w), (height, width) = heatmap.shape, mask.shape
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    rows = slice(r * height // h, -(-(r + 1) * height // h))
    cols = slice(c * width // w, -(-(c + 1) * width // w))
    return bool(mask[rows, cols].any())


def pointing_game_ceiling(mask: np.ndarray, peak_pixels: np.ndarray) -> bool:
    """Whether a heatmap *could* score a pointing-game hit on ``mask`` when its maximum can only
    fall on ``peak_pixels`` (``[K, 2]`` rows / columns), e.g. the pixels where a patch-grid map
    peaks after upsampling. The mean over instances is the ceiling of the pointing game at that
    resolution: small or thin masks between patch centres cannot be hit, whatever the model does."""
    mask = np.asarray(mask, bool)
    peaks = np.asarray(peak_pixels, int).reshape(-1, 2)
    return bool(mask[peaks[:, 0], peaks[:, 1]].any())


def patch_peak_pixels(grid: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """``[K, 2]`` pixels where a ``grid`` heatmap, bilinearly upsampled to ``shape``
    (``align_corners=False``), can take its maximum.

    A bilinear interpolant peaks at a grid sample, so the argmax is a pixel next to a patch
    centre: along each axis, the pixels clamped onto that sample (at the borders) and the nearest
    pixel on either side of it (rounding decides between them)."""
    axes = []
    for n, g in zip(shape, grid):
        src = np.clip((np.arange(n) + 0.5) * g / n - 0.5, 0, g - 1)
        near: list[set[int]] = []
        for j in range(g):
            cand = set(np.flatnonzero(src == j).tolist())
            below, above = np.flatnonzero(src < j), np.flatnonzero(src > j)
            cand |= {int(below.max())} if below.size else set()
            cand |= {int(above.min())} if above.size else set()
            near.append(cand)
        axes.append(near)
    return np.array(sorted({(r, c) for rows in axes[0] for cols in axes[1] for r in rows for c in cols}), int)


def dice(pred: np.ndarray, mask: np.ndarray) -> float:
    pred, mask = np.asarray(pred, bool), np.asarray(mask, bool)
    denom = pred.sum() + mask.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(pred, mask).sum() / denom)


def iou(pred: np.ndarray, mask: np.ndarray) -> float:
    pred, mask = np.asarray(pred, bool), np.asarray(mask, bool)
    union = np.logical_or(pred, mask).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, mask).sum() / union)


def normalize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a flat map becomes zeros)."""
    h = np.asarray(heatmap, dtype=np.float64)
    lo, hi = h.min(), h.max()
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


@dataclass
class SegmentationScores:
    dice: float
    iou: float
    threshold: float


def best_threshold_segmentation(heatmaps: list[np.ndarray], masks: list[np.ndarray],
                                step: float = 0.01) -> SegmentationScores:
    """Mean Dice (and IoU) over images at each threshold of the normalised heatmaps, searched
    in ``step`` increments; the best Dice, the IoU at that threshold, and the threshold."""
    if len(heatmaps) != len(masks) or not heatmaps:
        raise ValueError("need the same, non-zero number of heatmaps and masks")
    norm = [normalize_heatmap(h) for h in heatmaps]
    best = SegmentationScores(-1.0, 0.0, 0.0)
    for t in np.arange(step, 1.0, step):
        d = float(np.mean([dice(h >= t, m) for h, m in zip(norm, masks)]))
        if d > best.dice:
            best = SegmentationScores(d, float(np.mean([iou(h >= t, m) for h, m in zip(norm, masks)])), float(t))
    return best


# ------------------------------------------------------------------------- detection
@dataclass
class DetectionCounts:
    """Connected regions of a binarised heatmap vs ground-truth regions, matched at an IoU."""

    true_predicted: int
    predicted: int
    detected_truth: int
    truth: int

    def __add__(self, other: "DetectionCounts") -> "DetectionCounts":
        return DetectionCounts(self.true_predicted + other.true_predicted, self.predicted + other.predicted,
                               self.detected_truth + other.detected_truth, self.truth + other.truth)

    @property
    def precision(self) -> float:
        return self.true_predicted / self.predicted if self.predicted else float("nan")

    @property
    def recall(self) -> float:
        return self.detected_truth / self.truth if self.truth else float("nan")


def detection_counts(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.1) -> DetectionCounts:
    """Each connected region is one detection / one ground-truth object (8-connectivity); a
    predicted region is correct, and a true one detected, when their IoU reaches the threshold
    (0.1 in the paper)."""
    from scipy import ndimage

    structure = np.ones((3, 3), bool)
    p_lab, n_p = ndimage.label(np.asarray(pred, bool), structure)
    t_lab, n_t = ndimage.label(np.asarray(truth, bool), structure)
    hit = np.zeros((n_p, n_t), bool)
    for i in range(1, n_p + 1):
        pi = p_lab == i
        for j in np.unique(t_lab[pi]):
            if j == 0:
                continue
            tj = t_lab == j
            hit[i - 1, j - 1] = iou(pi, tj) >= iou_threshold
    return DetectionCounts(int(hit.any(1).sum()), n_p, int(hit.any(0).sum()), n_t)


def bootstrap_ci(metric, *arrays, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` of ``metric(*arrays)``, resampling rows with
    replacement (resamples where the metric is NaN, e.g. one class only, are skipped)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = metric(*(a[idx] for a in arrays))
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))
