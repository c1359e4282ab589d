"""Metrics against scikit-learn on random data, and grounding metrics on hand-made masks."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from medklip.evaluation import metrics as m


@pytest.mark.parametrize("seed", range(25))
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    s = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties included
    assert abs(m.roc_auc(y, s) - sk.roc_auc_score(y, s)) < 1e-9
    p, r, t = m.precision_recall_curve(y, s)
    P, R, T = sk.precision_recall_curve(y, s)
    np.testing.assert_allclose(p, P, atol=1e-9)
    np.testing.assert_allclose(r, R, atol=1e-9)
    np.testing.assert_allclose(t, T, atol=1e-9)
    fpr, tpr, _ = m.roc_curve(y, s)
    FPR, TPR, _ = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, FPR, atol=1e-9)
    np.testing.assert_allclose(tpr, TPR, atol=1e-9)
    best = m.best_f1(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * P * R / (P + R))[:-1]
    i = int(np.argmax(f1))
    assert abs(best.f1 - f1[i]) < 1e-9 and best.threshold == T[i]
    assert abs(best.accuracy - sk.accuracy_score(y, s >= T[i])) < 1e-9
    assert abs(best.f1 - sk.f1_score(y, s >= T[i])) < 1e-9


def test_auc_with_one_class_is_nan_and_macro_skips_it() -> None:
    assert np.isnan(m.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert m.macro([0.5, float("nan"), 1.0]) == 0.75


def test_grounding_on_hand_made_masks() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True  # 9 pixels
    heat = np.zeros((10, 10))
    heat[3, 3] = 1.0
    assert m.pointing_game(heat, mask)
    heat2 = np.zeros((10, 10))
    heat2[8, 8] = 1.0
    assert not m.pointing_game(heat2, mask)
    pred = np.zeros((10, 10), bool)
    pred[2:5, 2:4] = True  # 6 pixels, all inside
    assert m.dice(pred, mask) == pytest.approx(2 * 6 / 15)
    assert m.iou(pred, mask) == pytest.approx(6 / 9)
    assert m.dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_threshold_search_finds_the_best_dice() -> None:
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    heat = np.where(mask, 0.8, 0.2) + np.linspace(0, 0.05, 400).reshape(20, 20)
    best = m.best_threshold_segmentation([heat], [mask])
    assert best.dice == pytest.approx(1.0) and best.iou == pytest.approx(1.0)
    assert 0.0 < best.threshold < 1.0


def test_detection_precision_recall_at_iou_0_1() -> None:
    truth = np.zeros((20, 20), bool)
    truth[2:6, 2:6] = True    # object A (16 px)
    truth[12:16, 12:16] = True  # object B (16 px)
    pred = np.zeros((20, 20), bool)
    pred[3:7, 3:7] = True     # overlaps A: IoU 9/23 = 0.39 -> correct
    pred[0:2, 17:20] = True   # false alarm
    pred[15:20, 15:20] = True  # touches B at one pixel: IoU 1/40 < 0.1 -> wrong, B missed
    c = m.detection_counts(pred, truth)
    assert (c.true_predicted, c.predicted, c.detected_truth, c.truth) == (1, 3, 1, 2)
    assert c.precision == pytest.approx(1 / 3) and c.recall == 0.5
    total = c + m.detection_counts(truth, truth)
    assert (total.true_predicted, total.predicted, total.detected_truth, total.truth) == (3, 5, 3, 4)
    assert np.isnan(m.detection_counts(np.zeros((4, 4)), np.zeros((4, 4))).precision)


def test_bootstrap_ci_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = y * 0.5 + rng.random(300)
    auc = m.roc_auc(y, s)
    low, high = m.bootstrap_ci(m.roc_auc, y, s, n_boot=300)
    assert low < auc < high and high - low < 0.2
    assert m.bootstrap_ci(m.roc_auc, y, s, n_boot=50) == m.bootstrap_ci(m.roc_auc, y, s, n_boot=50)  # seeded


def test_pointing_game_ceiling_counts_masks_holding_a_peak_pixel() -> None:
    from medklip.zeroshot.visualize import upsample

    peaks = m.patch_peak_pixels((2, 2), (8, 8))
    # every one-hot map on the grid peaks at one of the listed pixels
    for r in range(2):
        for c in range(2):
            h = np.zeros((2, 2))
            h[r, c] = 1
            up = upsample(h, (8, 8))
            assert tuple(np.unravel_index(np.argmax(up), up.shape)) in {tuple(p) for p in peaks}
    big = np.zeros((8, 8), bool)
    big[:, :4] = True  # half the image: holds the peaks of the left patches
    assert m.pointing_game_ceiling(big, peaks)
    thin = np.zeros((8, 8), bool)
    thin[:, 3] = True  # a one-pixel line between the patch centres of a 2x2 grid: no map can hit it
    assert not m.pointing_game_ceiling(thin, peaks)
    rng = np.random.default_rng(0)
    for _ in range(500):  # no heatmap scores a hit the ceiling rules out
        up = upsample(rng.random((2, 2)), (8, 8))
        assert not m.pointing_game(up, thin)
        mask = rng.random((8, 8)) < 0.1
        assert not m.pointing_game(up, mask) or m.pointing_game_ceiling(mask, peaks)


def test_region_pointing_game_checks_the_arg_max_patch_area() -> None:
    heat = np.array([[0.1, 0.9], [0.2, 0.3]])  # top-right patch of a 2x2 grid
    mask = np.zeros((8, 8), bool)
    mask[3, 4] = True  # one pixel inside the top-right 4x4 area
    assert m.pointing_game_region(heat, mask)
    mask[:] = False
    mask[4, 3] = True  # bottom-left area
    assert not m.pointing_game_region(heat, mask)
    # uneven division: a 3x3 grid over 8 pixels covers rows 5..7 with the last patch
    heat3 = np.zeros((3, 3))
    heat3[2, 2] = 1
    corner = np.zeros((8, 8), bool)
    corner[5, 5] = True
    assert m.pointing_game_region(heat3, corner)
    # the thin line no pixel rule can hit is hit by the region rule when its patch is chosen
    thin = np.zeros((8, 8), bool)
    thin[:, 3] = True
    assert m.pointing_game_region(np.array([[1.0, 0.0], [0.0, 0.0]]), thin)
