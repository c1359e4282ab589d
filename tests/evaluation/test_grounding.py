"""Grounding metrics as the release's RSNA script computes them, on hand-made maps and masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from medklip.data.benchmarks.masks import boxes_to_mask
from medklip.evaluation import grounding as g


def test_block_upsampling_is_the_release_repeat() -> None:
    heat = np.random.default_rng(0).random((14, 14)).astype(np.float32)
    release = heat.repeat(16, axis=0).repeat(16, axis=1)
    np.testing.assert_array_equal(g.upsample_blocks(heat, (224, 224)), release)
    # other sizes: each pixel copies the patch it falls in
    up = g.upsample_blocks(np.arange(6.0).reshape(2, 3), (5, 7))
    assert up[0, 0] == 0 and up[4, 6] == 5 and up[3, 3] == 4 and up[2, 3] == 1 and up[1, 2] == 0


def test_mask_resize_is_torchvisions_nearest_on_a_tensor() -> None:
    mask = np.zeros((1024, 1024))
    mask[300:517, 611:817] = 1
    mask[5:9, 1000:1003] = 1  # thin: nearest may miss it, exactly as the release
    seg_transform = T.Compose([T.ToTensor(), T.Resize([224, 224], interpolation=T.InterpolationMode.NEAREST)])
    release = seg_transform(mask)[0].numpy() > 0.5
    np.testing.assert_array_equal(g.resize_mask_nearest(mask.astype(bool), (224, 224)), release)


def test_masks_from_rsna_boxes_truncate_like_the_release() -> None:
    boxes = [(611.0, 553.0, 206.0, 205.0), (183.7, 399.9, 100.6, 50.2)]
    ours = boxes_to_mask(boxes, (1024, 1024))
    release = np.zeros((1024, 1024))
    for x, y, w, h in boxes:  # the release: seg_map[int(y):int(y)+int(h), int(x):int(x)+int(w)] = 1
        release[int(float(y)):int(float(y)) + int(float(h)), int(float(x)):int(float(x)) + int(float(w))] = 1
    np.testing.assert_array_equal(ours, release > 0)
    assert ours.sum() == 206 * 205 + 100 * 50


def _release_pointing(pred_map: np.ndarray, seg_map: np.ndarray) -> bool:
    """The release's score_cal for one image: every pixel equal to the max, a hit when any is in the mask."""
    p, s = torch.from_numpy(pred_map).flatten(), torch.from_numpy(seg_map.astype(np.float64)).flatten()
    return int(torch.sum((p == p.max()).int() * s) > 0) == 1


def test_pointing_game_takes_every_max_pixel() -> None:
    heat = np.zeros((14, 14))
    heat[2, 3] = 1.0
    mask = np.zeros((224, 224), bool)
    mask[2 * 16 + 15, 3 * 16] = True  # one pixel in the corner of the max patch's block
    up = g.upsample_blocks(heat, (224, 224))
    assert g.pointing_game(up, mask) and _release_pointing(up, mask)
    mask[:] = False
    mask[2 * 16 + 16, 3 * 16] = True  # one pixel below the block
    assert not g.pointing_game(up, mask) and not _release_pointing(up, mask)


def test_ties_make_several_max_blocks_and_any_of_them_hits() -> None:
    heat = np.zeros((14, 14))
    heat[0, 0] = heat[13, 13] = 0.5  # two patches share the maximum
    mask = np.zeros((224, 224), bool)
    mask[220, 220] = True  # only in the second block
    up = g.upsample_blocks(heat, (224, 224))
    assert g.pointing_game(up, mask) and _release_pointing(up, mask)
    flat = np.full((14, 14), 0.1)  # a flat map: every pixel is a maximum
    assert g.pointing_game(g.upsample_blocks(flat, (224, 224)), mask)


@pytest.mark.parametrize("seed", range(20))
def test_pointing_game_equals_the_release_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    heat = np.round(rng.random((14, 14)), 1)  # coarse values: ties happen
    boxes = [(float(rng.integers(0, 900)), float(rng.integers(0, 900)), float(rng.integers(10, 200)),
              float(rng.integers(10, 200))) for _ in range(int(rng.integers(1, 3)))]
    mask = g.resize_mask_nearest(boxes_to_mask(boxes, (1024, 1024)), (224, 224))
    up = g.upsample_blocks(heat, (224, 224))
    assert g.pointing_game(up, mask) == _release_pointing(up, mask)


def test_iou_and_dice_at_the_release_threshold() -> None:
    heat = np.full((2, 2), 0.001)
    heat[0, 0] = 0.01  # above 0.008
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:3] = True  # 6 pixels; the prediction is the 4-pixel top-left block
    iou, dice = g.fixed_threshold_scores(g.upsample_blocks(heat, (4, 4)), mask)
    assert iou == pytest.approx(4 / 6) and dice == pytest.approx(2 * 4 / 10)
    # release formulas: dot / (seg + pred - dot), 2 dot / (seg + pred)
    assert g.RELEASE_THRESHOLD == 0.008


def test_threshold_search_per_patch_equals_the_pixel_search() -> None:
    rng = np.random.default_rng(3)
    heats = [rng.random((7, 7)) for _ in range(6)]
    masks = [boxes_to_mask([(float(rng.integers(0, 60)), float(rng.integers(0, 60)), 30.0, 25.0)], (100, 100))
             for _ in range(6)]
    fast = g.best_threshold_segmentation(heats, masks)
    best = (-1.0, 0.0, 0.0)
    for t in np.arange(0.01, 1.0, 0.01):
        preds = [g.upsample_blocks(g.normalize_heatmap(h), m.shape) >= t for h, m in zip(heats, masks)]
        d = float(np.mean([g.dice(p, m) for p, m in zip(preds, masks)]))
        if d > best[0]:
            best = (d, float(np.mean([g.iou(p, m) for p, m in zip(preds, masks)])), float(t))
    assert fast.dice == pytest.approx(best[0]) and fast.iou == pytest.approx(best[1])
    assert fast.threshold == pytest.approx(best[2])


def test_hand_made_dice_iou() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True  # 9 pixels
    pred = np.zeros((10, 10), bool)
    pred[2:5, 2:4] = True  # 6 pixels, all inside
    assert g.dice(pred, mask) == pytest.approx(2 * 6 / 15)
    assert g.iou(pred, mask) == pytest.approx(6 / 9)
    assert g.dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_detection_precision_recall_at_iou_0_1() -> None:
    truth = np.zeros((20, 20), bool)
    truth[2:6, 2:6] = True    # object A (16 px)
    truth[12:16, 12:16] = True  # object B (16 px)
    pred = np.zeros((20, 20), bool)
    pred[3:7, 3:7] = True     # overlaps A: IoU 9/23 = 0.39 -> correct
    pred[0:2, 17:20] = True   # false alarm
    pred[15:20, 15:20] = True  # touches B at one pixel: IoU 1/40 < 0.1 -> wrong, B missed
    c = g.detection_counts(pred, truth)
    assert (c.true_predicted, c.predicted, c.detected_truth, c.truth) == (1, 3, 1, 2)
    assert c.precision == pytest.approx(1 / 3) and c.recall == 0.5
    total = c + g.detection_counts(truth, truth)
    assert (total.true_predicted, total.predicted, total.detected_truth, total.truth) == (3, 5, 3, 4)
    assert np.isnan(g.detection_counts(np.zeros((4, 4)), np.zeros((4, 4))).precision)


# ---------------------------------------------------------------- cases mutation testing asked for
def test_normalize_heatmap_with_an_offset_and_a_flat_map() -> None:
    from medklip.evaluation.grounding import normalize_heatmap

    np.testing.assert_allclose(normalize_heatmap(np.array([[2.0, 4.0], [6.0, 10.0]])), [[0, 0.25], [0.5, 1.0]])
    assert not normalize_heatmap(np.full((2, 2), 3.0)).any()


def test_empty_and_one_pixel_overlaps() -> None:
    from medklip.evaluation.grounding import dice, fixed_threshold_scores, iou

    one, empty = np.zeros((3, 3), bool), np.zeros((3, 3), bool)
    one[0, 0] = True
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0
    assert iou(one, empty) == 0.0 and dice(one, empty) == 0.0  # a union of one pixel, no overlap
    at = np.zeros((3, 3))
    at[0, 0] = 0.008  # exactly the release's threshold: not above it
    assert fixed_threshold_scores(at, one) == (0.0, 0.0)


def test_segmentation_on_a_non_square_grid_by_hand() -> None:
    """A 2 x 3 patch grid on a 4 x 9 mask: each patch is a 2 x 3 block; the mask is the middle
    top block. At t = 0.6 only that patch is on (Dice 1); at 0.4 the faint bottom-right one too
    (12 predicted pixels, 6 right: Dice 12 / 18, IoU 6 / 12)."""
    from medklip.evaluation.grounding import best_threshold_segmentation, random_patch_hit_rate, segmentation_at

    heat = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    mask = np.zeros((4, 9), bool)
    mask[:2, 3:6] = True
    assert segmentation_at([heat], [mask], 0.6).dice == 1.0
    s = segmentation_at([heat], [mask], 0.4)
    assert s.dice == pytest.approx(12 / 18) and s.iou == pytest.approx(6 / 12)
    best = best_threshold_segmentation([heat], [mask])
    assert best.dice == 1.0 and best.threshold == pytest.approx(0.51)  # the first of the tied thresholds
    assert random_patch_hit_rate((2, 3), mask) == pytest.approx(1 / 6)
    # an empty mask with nothing predicted scores 1; a prediction beside the mask scores 0
    nothing = segmentation_at([heat], [np.zeros((4, 9), bool)], 1.5)
    assert nothing.dice == 1.0 and nothing.iou == 1.0
    one_pixel = segmentation_at([np.array([[1.0, 0.0], [0.0, 0.0]])], [np.zeros((2, 2), bool)], 0.5)
    assert one_pixel.dice == 0.0 and one_pixel.iou == 0.0  # one pixel predicted, none true: a union of 1
    beside = np.zeros((4, 9), bool)
    beside[2:, :3] = True
    assert segmentation_at([heat], [beside], 0.6).dice == 0.0 and segmentation_at([heat], [beside], 0.6).iou == 0.0
    with pytest.raises(ValueError, match="same, non-zero number"):
        best_threshold_segmentation([heat, heat], [mask])


def test_detection_counts_by_hand() -> None:
    """Two predicted regions (one touching the truth only diagonally-connected into one region),
    one true region: 8-connectivity, each region matched at IoU >= 0.1."""
    from medklip.evaluation.grounding import DetectionCounts, detection_counts

    truth = np.zeros((8, 8), bool)
    truth[0:2, 0:2] = True
    pred = np.zeros((8, 8), bool)
    pred[0, 0] = pred[1, 1] = True  # diagonal neighbours: one region under 8-connectivity
    pred[6:8, 6:8] = True  # a false alarm
    c = detection_counts(pred, truth)
    assert (c.true_predicted, c.predicted, c.detected_truth, c.truth) == (1, 2, 1, 1)
    two_truths = truth.copy()
    two_truths[5:8, 0:3] = True
    c = detection_counts(pred, two_truths)  # 2 predicted, 2 true regions: one pair matched
    assert (c.true_predicted, c.predicted, c.detected_truth, c.truth) == (1, 2, 1, 2)
    both = pred.copy()
    both[0:2, 0:2] = True
    both[6:8, 6:8] = False
    both[4, 4] = True  # two predictions, the second far from any truth
    c = detection_counts(both, truth)
    assert (c.true_predicted, c.predicted, c.detected_truth) == (1, 2, 1)
    wide = np.zeros((8, 8), bool)
    wide[0:2, 0:6] = True
    halves = np.zeros((8, 8), bool)
    halves[0:2, 0:2] = halves[0:2, 4:6] = True  # two predictions inside one truth (IoU 1/3 each)
    c = detection_counts(halves, wide)
    assert (c.true_predicted, c.predicted, c.detected_truth, c.truth) == (2, 2, 1, 1)
    # IoU exactly at the threshold counts: 1 predicted pixel inside a 10-pixel truth
    line = np.zeros((1, 12), bool)
    line[0, :10] = True
    dot = np.zeros((1, 12), bool)
    dot[0, 0] = True
    assert detection_counts(dot, line).detected_truth == 1
    assert np.isnan(DetectionCounts(0, 0, 0, 0).recall)
