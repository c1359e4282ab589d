"""Metrics (pure functions) and result tables."""
from medklip.evaluation.metrics import (
    BinaryScores,
    DetectionCounts,
    SegmentationScores,
    best_f1,
    best_threshold_segmentation,
    bootstrap_ci,
    detection_counts,
    dice,
    iou,
    macro,
    normalize_heatmap,
    patch_peak_pixels,
    pointing_game,
    pointing_game_ceiling,
    pointing_game_region,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)

__all__ = ["BinaryScores", "DetectionCounts", "bootstrap_ci", "detection_counts", "SegmentationScores", "best_f1", "best_threshold_segmentation", "dice", "iou",
           "macro", "normalize_heatmap", "patch_peak_pixels", "pointing_game", "pointing_game_ceiling", "pointing_game_region", "precision_recall_curve", "roc_auc", "roc_curve"]
