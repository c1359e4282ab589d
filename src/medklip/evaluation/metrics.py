"""Evaluation metrics as pure functions of numpy arrays (tested against scikit-learn).

Classification as the release: ROC AUC; the threshold that maximises F1 on the
precision-recall curve, the F1 there and the accuracy at that threshold; macro averages;
percentile bootstrap confidence intervals. Grounding metrics are in :mod:`.grounding`.
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


def bootstrap_ci(metric, *arrays, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` of ``metric(*arrays)``, resampling rows with
    replacement (resamples where the metric is NaN, e.g. one class only, are skipped)."""
    rng = np.random.default_rng(seed)
    columns = [np.asarray(a) for a in arrays]
    n = len(columns[0])
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = metric(*(a[idx] for a in columns))
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))
