"""Grounding metrics as the release's RSNA test script and the paper compute them (pure numpy).

The release (``Sample_Zero-Shot_Grounding_RSNA/test.py``):

- heatmap: the ``[h, w]`` patch-grid attention **block-upsampled** to the input size
  (``map.repeat(16, axis=1).repeat(16, axis=2)`` for 14 x 14 -> 224 x 224): :func:`upsample_blocks`;
- ground truth: the boxes filled into a map of the original image size, resized to the input size
  with torchvision's nearest ``Resize``: :func:`resize_mask_nearest`;
- pointing game: **every** pixel equal to the map's maximum (a whole block, or several on ties);
  a hit when any of them lies in the mask: :func:`pointing_game`;
- IoU / Dice: the raw (un-normalised) map binarised at ``> 0.008``, per image: :func:`fixed_threshold_scores`.

The paper's text instead searches the binarisation threshold of the min-max normalised map in 0.01
steps and reports the best Dice (:func:`best_threshold_segmentation`); detection precision /
recall count connected regions matched at IoU 0.1 (:func:`detection_counts`). Bilinear upsampling is
for drawing overlays only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RELEASE_THRESHOLD = 0.008
"""The release's fixed binarisation threshold on the raw attention map."""


def block_index(n_out: int, n_in: int) -> np.ndarray:
    """For each output pixel along one axis, the patch it copies: ``i * n_in // n_out`` (exactly
    ``numpy.repeat`` when ``n_out`` is a multiple of ``n_in``)."""
    return (np.arange(n_out) * n_in) // n_out


def upsample_blocks(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest / block upsampling of a patch-grid map to ``shape`` (the release's ``repeat``)."""
    heatmap = np.asarray(heatmap)
    rows, cols = block_index(shape[0], heatmap.shape[0]), block_index(shape[1], heatmap.shape[1])
    return heatmap[rows[:, None], cols[None, :]]


def resize_mask_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized as the release resizes its ground truth: torchvision ``Resize``
    with ``InterpolationMode.NEAREST`` on a tensor (``torch.nn.functional.interpolate``,
    ``mode="nearest"``: source index ``floor(i * in / out)``)."""
    mask = np.asarray(mask, bool)
    if mask.shape == tuple(shape):
        return mask
    import torch
    from torch.nn import functional as F

    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="nearest")[0, 0].numpy() > 0.5


def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """The release's rule: a hit when any pixel equal to the heatmap's maximum lies in the mask
    (``heatmap`` already upsampled to the mask's shape)."""
    heatmap, mask = np.asarray(heatmap), np.asarray(mask, bool)
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ; upsample the heatmap first")
    return bool(mask[heatmap == heatmap.max()].any())


def dice(pred: np.ndarray, mask: np.ndarray) -> float:
    """Dice of two boolean maps (1.0 when both are empty)."""
    pred, mask = np.asarray(pred, bool), np.asarray(mask, bool)
    denom = pred.sum() + mask.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(pred, mask).sum() / denom)


def iou(pred: np.ndarray, mask: np.ndarray) -> float:
    """Intersection over union of two boolean maps (1.0 when both are empty)."""
    pred, mask = np.asarray(pred, bool), np.asarray(mask, bool)
    union = np.logical_or(pred, mask).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, mask).sum() / union)


def fixed_threshold_scores(heatmap: np.ndarray, mask: np.ndarray,
                           threshold: float = RELEASE_THRESHOLD) -> tuple[float, float]:
    """``(IoU, Dice)`` of the raw map binarised at ``> threshold`` (the release's script)."""
    pred = np.asarray(heatmap) > threshold
    return iou(pred, mask), dice(pred, mask)


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


def _patch_overlaps(grid: tuple[int, int], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patch: how many pixels its block covers and how many of them are in the mask."""
    rows, cols = block_index(mask.shape[0], grid[0]), block_index(mask.shape[1], grid[1])
    cell = rows[:, None] * grid[1] + cols[None, :]
    area = np.bincount(cell.ravel(), minlength=grid[0] * grid[1])
    inside = np.bincount(cell.ravel(), weights=mask.ravel().astype(np.float64), minlength=grid[0] * grid[1])
    return area.astype(np.float64), inside


def random_patch_hit_rate(grid: tuple[int, int], mask: np.ndarray) -> float:
    """The pointing game's chance level for one case: the share of patches whose block holds a
    mask pixel (the hit rate of a heatmap whose maximum falls on a random patch)."""
    _area, inside = _patch_overlaps(grid, np.asarray(mask, bool))
    return float((inside > 0).mean())


_Case = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def _segmentation_cases(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[_Case]:
    if len(heatmaps) != len(masks) or not heatmaps:
        raise ValueError("need the same, non-zero number of heatmaps and masks")
    cases = []
    for h, m in zip(heatmaps, masks):
        m = np.asarray(m, bool)
        area, inside = _patch_overlaps(np.asarray(h).shape, m)
        cases.append((normalize_heatmap(h).ravel(), area, inside, float(m.sum())))
    return cases


def _scores_at(cases: Sequence[_Case], t: float) -> tuple[float, float]:
    """Mean Dice and mean IoU over the cases of the normalised maps binarised at ``>= t``."""
    dices, ious = [], []
    for norm, area, inside, truth in cases:
        on = norm >= t
        overlap, predicted = inside[on].sum(), area[on].sum()
        union = predicted + truth - overlap
        dices.append(1.0 if predicted + truth == 0 else 2 * overlap / (predicted + truth))
        ious.append(1.0 if union == 0 else overlap / union)
    return float(np.mean(dices)), float(np.mean(ious))


def segmentation_at(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float
                    ) -> SegmentationScores:
    """Mean Dice and IoU of the block-upsampled, min-max normalised patch-grid ``heatmaps``
    binarised at ``>= threshold`` (a threshold chosen elsewhere, e.g. on a validation split)."""
    dice, iou = _scores_at(_segmentation_cases(heatmaps, masks), threshold)
    return SegmentationScores(dice, iou, float(threshold))


def best_threshold_segmentation(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                                step: float = 0.01) -> SegmentationScores:
    """The paper's search: mean Dice over images of the block-upsampled, min-max normalised
    patch-grid ``heatmaps`` binarised at ``>= t`` for t in ``step`` increments; the best Dice,
    the mean IoU at that threshold, and the threshold.

    Computed per patch (a block-upsampled map is constant over each patch's block), which gives
    exactly the pixel-level values at a fraction of the cost."""
    cases = _segmentation_cases(heatmaps, masks)
    best = SegmentationScores(-1.0, 0.0, 0.0)
    for t in np.arange(step, 1.0, step):
        d, iou = _scores_at(cases, float(t))
        if d > best.dice:
            best = SegmentationScores(d, iou, float(t))
    return best


@dataclass
class DetectionCounts:
    """Connected regions of a binarised heatmap vs ground-truth regions, matched at an IoU."""

    true_predicted: int
    predicted: int
    detected_truth: int
    truth: int

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
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
            hit[i - 1, j - 1] = iou(pi, t_lab == j) >= iou_threshold
    return DetectionCounts(int(hit.any(1).sum()), n_p, int(hit.any(0).sum()), n_t)


PHRASE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
"""The thresholds mIoU is averaged over on MS-CXR (BioViL, Boecking et al. 2022)."""


def mean_iou_over_thresholds(heatmap: np.ndarray, mask: np.ndarray,
                             thresholds: Sequence[float] = PHRASE_THRESHOLDS) -> float:
    """Phrase-grounding mIoU of one case: the patch-grid map min-max normalised, block-upsampled
    to the mask, binarised at each threshold, IoU with the mask averaged over the thresholds."""
    h = upsample_blocks(normalize_heatmap(heatmap), mask.shape)
    return float(np.mean([iou(h >= t, mask) for t in thresholds]))


def contrast_to_noise(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """BioViL's contrast-to-noise ratio of one case: ``|mean_in - mean_out| / sqrt(var_in + var_out)``
    of the min-max normalised, block-upsampled map inside and outside the ground truth (NaN when the
    mask is empty or full, 0 for a flat map)."""
    h = upsample_blocks(normalize_heatmap(heatmap), mask.shape)
    mask = np.asarray(mask, bool)
    inside, outside = h[mask], h[~mask]
    if not len(inside) or not len(outside):
        return float("nan")
    spread = np.sqrt(inside.var() + outside.var())
    return float(abs(inside.mean() - outside.mean()) / spread) if spread > 0 else 0.0
