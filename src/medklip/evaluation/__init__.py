"""Metrics (pure functions of arrays), scoring of a run and its written report; no model code."""
from medklip.evaluation.grounding import (
    RELEASE_THRESHOLD,
    DetectionCounts,
    SegmentationScores,
    best_threshold_segmentation,
    detection_counts,
    dice,
    fixed_threshold_scores,
    iou,
    normalize_heatmap,
    pointing_game,
    resize_mask_nearest,
    upsample_blocks,
)
from medklip.evaluation.metrics import (
    BinaryScores,
    best_f1,
    bootstrap_ci,
    macro,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)

__all__ = [
    "RELEASE_THRESHOLD", "BinaryScores", "DetectionCounts", "SegmentationScores", "best_f1",
    "best_threshold_segmentation", "bootstrap_ci", "detection_counts", "dice", "fixed_threshold_scores", "iou",
    "macro", "normalize_heatmap", "pointing_game", "precision_recall_curve", "resize_mask_nearest", "roc_auc",
    "roc_curve", "upsample_blocks",
]
