"""`scoring.score` on a run built by hand, every number recomputed here independently: AUC from
scikit-learn, the best F1 by trying every threshold, the macro groupings by hand, the pointing game
and the release's IoU / Dice of hand-drawn heatmaps, the bootstrap from the shared resampling, the
operating points, the calibration rows, a grading and a phrase-grounding run. Fast: the mutation
score of ``evaluation/scoring.py`` is measured with it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medklip.data.benchmarks.base import Benchmark, Sample
from medklip.evaluation.calibration import brier, ece, reliability
from medklip.evaluation.grounding import contrast_to_noise, mean_iou_over_thresholds
from medklip.evaluation.metrics import bootstrap_binary_cis, bootstrap_ci, bootstrap_counts
from medklip.evaluation.operating import OperatingPoints
from medklip.evaluation.scoring import DESCRIPTION, NAME, EvaluationRun, GroundingCase, Prompt, score

N = 40
LABELS = {  # A has two uncertain images (-1); C is the unseen class, asked by description and by name
    "A": np.r_[np.ones(12), np.zeros(26), [-1, -1]].astype(int),
    "B": np.r_[np.zeros(30), np.ones(10)].astype(int),
    "C": np.r_[np.ones(5), np.zeros(35)].astype(int),
}
PROMPTS = [Prompt("A", DESCRIPTION, "a"), Prompt("B", DESCRIPTION, "b"), Prompt("C", DESCRIPTION, "c", seen=False),
           Prompt("C", NAME, "C", seen=False)]


def probabilities(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    columns = [LABELS["A"] * 0.3, LABELS["B"] * 0.2, LABELS["C"] * 0.1, np.zeros(N)]
    return np.clip(np.stack(columns, 1) + rng.random((N, 4)) * 0.8, 0, 1)


def samples() -> list[Sample]:
    return [Sample(f"i{k:02d}", Path(f"i{k:02d}.png"), {c: int(v[k]) for c, v in LABELS.items()}) for k in range(N)]


def case(peaks: list[tuple[int, int]], *mask_patches: tuple[int, int], grid: int = 2) -> GroundingCase:
    """A ``grid`` x ``grid`` patch map at 0.9 on ``peaks`` (elsewhere 0) and a mask of whole
    2 x 2-pixel patches."""
    heat = np.zeros((grid, grid))
    for peak in peaks:
        heat[peak] = 0.9
    mask = np.zeros((2 * grid, 2 * grid), bool)
    for r, c in mask_patches:
        mask[2 * r:2 * r + 2, 2 * c:2 * c + 2] = True
    return GroundingCase(heat, mask)


# A's four positive images: a hit; a miss; a hit on a mask of two patches (IoU 1/2, Dice 2/3); on a
# 3 x 3 grid, two peaks in opposite corners, one on the mask (a hit, IoU 1/2, Dice 2/3, one false
# region). Pointing game 3/4, chance (1/4 + 1/4 + 1/2 + 1/9) / 4 = 5/18, IoU of the raw map 1/2, Dice 7/12, regions found 3 of 4
# (recall), predicted regions right 3 of 5 (precision). The name prompt's one case is a hit that
# the pooled numbers must not count.
GROUNDING = {0: [case([(0, 0)], (0, 0)), case([(1, 1)], (0, 0)), case([(0, 1)], (0, 1), (1, 1)),
                 case([(0, 0), (2, 2)], (0, 0), grid=3)],
             3: [case([(1, 0)], (1, 0))]}


def bench(task: str = "classify", **kw) -> Benchmark:
    return Benchmark("toy", "Toy", task, {c: c.lower() for c in LABELS}, samples(), (0.0, 0.0, 1.0), **kw)


def best_f1_by_trying_every_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    best = (-1.0, 0.0, 0.0)
    for t in np.unique(p):
        on = p >= t
        tp = np.sum(on & (y == 1))
        f1 = 2 * tp / (on.sum() + y.sum())
        if f1 > best[0]:
            best = (f1, float(np.mean(on == y)), float(t))
    return best


def known(c: str, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = LABELS[c] >= 0
    return LABELS[c][keep], column[keep]


def test_every_number_of_a_classification_and_grounding_run_by_hand() -> None:
    probs = probabilities()
    run = EvaluationRun(samples(), PROMPTS, probs, grounding=GROUNDING, failures=[{"id": "x"}])
    m = score(bench(groups={"competition": ["A", "C"]}), run, n_boot=0, seed=0)
    assert (m["dataset"], m["task"], m["images"], m["failed_images"]) == ("toy", "classify", N, 1)
    aucs = {}
    for j, prompt in enumerate(PROMPTS):
        y, p = known(prompt.cls, probs[:, j])
        row = m["classification"][prompt.label]
        aucs[prompt.label] = roc_auc_score(y, p)
        f1, accuracy, threshold = best_f1_by_trying_every_threshold(y, p)
        assert row["auc"] == pytest.approx(aucs[prompt.label], abs=1e-12), prompt.label
        assert (row["f1"], row["accuracy"], row["threshold"]) == pytest.approx((f1, accuracy, threshold), abs=1e-12)
        assert (row["positives"], row["n"]) == (int(y.sum()), len(y))
        assert all(np.isnan(row[f"{k}_ci"]).all() for k in ("auc", "f1", "accuracy"))  # no bootstrap asked
        assert (row["ece"], row["brier"], row["calibrated"]) == (ece(y, p), brier(y, p), False)
        assert "ece_raw" not in row and "operating_f1" not in row
        assert run.curves[prompt.label][2] == row["auc"] and len(run.curves[prompt.label][0]) >= 2
    assert m["classification"]["A"]["n"] == N - 2  # the uncertain images are left out
    assert m["macro"]["auc"] == pytest.approx(np.mean([aucs["A"], aucs["B"], aucs["C"]]), abs=1e-12)
    assert m["macro_seen"]["auc"] == pytest.approx((aucs["A"] + aucs["B"]) / 2, abs=1e-12)
    assert m["macro_unseen"]["auc"] == pytest.approx(aucs["C"], abs=1e-12)
    assert m["macro_unseen_name"]["auc"] == pytest.approx(aucs["C (name)"], abs=1e-12)
    assert m["macro_competition"]["auc"] == pytest.approx((aucs["A"] + aucs["C"]) / 2, abs=1e-12)
    assert m["macro_competition"]["classes"] == 2 and "classes" not in m["macro"]
    assert m["unseen_classes"] == ["C"] and "operating_points" not in m
    g = m["grounding"]["A"]
    assert (g["pointing_game"], g["iou_release"], g["dice_release"]) == pytest.approx((3 / 4, 1 / 2, 7 / 12))
    assert g["pointing_game_chance"] == pytest.approx(5 / 18) and g["images"] == 4 and g["release_threshold"] == 0.008
    assert (g["dice_best"], g["iou_best"], g["recall"], g["precision"]) == pytest.approx((7 / 12, 1 / 2, 3 / 4, 3 / 5))
    assert m["grounding"]["C (name)"]["pointing_game"] == 1.0 and "B" not in m["grounding"]
    pooled = m["grounding_overall"]
    assert pooled["instances"] == 4 and pooled["pointing_game"] == pytest.approx(3 / 4)  # the name prompt's case out
    assert pooled["pointing_game_macro"] == pytest.approx(3 / 4) and pooled["dice_best_macro"] == pytest.approx(7 / 12)
    assert pooled["pointing_game_chance"] == pytest.approx(5 / 18) and "miou" not in pooled
    cal = m["calibration"]
    assert cal["source"] is None and cal["calibrated"] == [] and cal["uncalibrated"] == [p.label for p in PROMPTS]
    seen = [known(c, probs[:, j]) for j, c in ((0, "A"), (1, "B"))]
    assert cal["seen"] == pytest.approx({"ece": np.mean([ece(*s) for s in seen]),
                                         "brier": np.mean([brier(*s) for s in seen])})
    pooled_bins = reliability(np.concatenate([s[0] for s in seen]), np.concatenate([s[1] for s in seen]))
    assert set(run.reliability) == {"raw"}
    assert np.array_equal(run.reliability["raw"].counts, pooled_bins.counts)
    assert np.array_equal(run.reliability["raw"].frequency, pooled_bins.frequency, equal_nan=True)


def test_the_bootstrap_shares_one_resampling_per_test_set_size() -> None:
    probs = probabilities(1)
    run = EvaluationRun(samples(), PROMPTS, probs, grounding=GROUNDING)
    m = score(bench(), run, n_boot=60, seed=5)
    for j, prompt in enumerate(PROMPTS):
        y, p = known(prompt.cls, probs[:, j])
        want = bootstrap_binary_cis(y, p, bootstrap_counts(len(y), 60, 5))
        for k in ("auc", "f1", "accuracy"):
            assert m["classification"][prompt.label][f"{k}_ci"] == list(want[k]), (prompt.label, k)
    hits = np.array([1.0, 0.0, 1.0, 1.0])
    assert m["grounding"]["A"]["pointing_game_ci"] == list(bootstrap_ci(np.mean, hits, n_boot=60, seed=5))
    assert m["grounding_overall"]["pointing_game_ci"] == list(bootstrap_ci(np.mean, hits, n_boot=60, seed=5))


def test_operating_points_and_calibrated_probabilities_are_scored_beside_the_rest() -> None:
    probs = probabilities(2)
    raw = probs.copy()
    probs[:, 0] = probs[:, 0] ** 2  # "calibrated" A: a monotone map, so its AUC is unchanged
    run = EvaluationRun(samples(), PROMPTS, probs, grounding=GROUNDING, calibrated=[True, False, False, False],
                        raw_probs=raw, calibration_source="validation split")
    op = OperatingPoints("validation split", 10, thresholds={"A": 0.5, "C (name)": 0.4}, grounding={"A": 0.5})
    m = score(bench(), run, n_boot=0, seed=0, operating=op)
    for j, prompt in enumerate(PROMPTS):
        y, p = known(prompt.cls, probs[:, j])
        row = m["classification"][prompt.label]
        threshold = op.thresholds.get(prompt.label)
        if threshold is None:
            assert np.isnan(row["operating_f1"]) and np.isnan(row["operating_threshold"])
        else:
            on = p >= threshold
            assert row["operating_f1"] == pytest.approx(2 * np.sum(on & (y == 1)) / (on.sum() + y.sum()))
            assert row["operating_accuracy"] == pytest.approx(np.mean(on == y))
        assert row["calibrated"] is (j == 0)
        assert row["ece_raw"] == ece(*known(prompt.cls, raw[:, j]))
        assert row["brier_raw"] == brier(*known(prompt.cls, raw[:, j]))
    assert m["macro"]["operating_classes"] == 1  # A only (C (name) is not a description)
    assert m["macro"]["operating_f1"] == m["classification"]["A"]["operating_f1"]
    assert m["macro_unseen_name"]["operating_classes"] == 1
    assert m["grounding"]["A"]["operating_dice"] == pytest.approx(7 / 12)  # the peak patches alone, as above
    assert m["grounding"]["A"]["operating_threshold"] == 0.5
    assert np.isnan(m["grounding"]["C (name)"]["operating_dice"])
    assert m["grounding_overall"]["operating_dice_macro"] == pytest.approx(7 / 12)
    assert m["operating_points"] == op.to_dict()
    cal = m["calibration"]
    assert cal["source"] == "validation split" and cal["calibrated"] == ["A"]
    assert cal["seen"]["ece_raw"] == pytest.approx(np.mean([ece(*known("A", raw[:, 0])), ece(*known("B", raw[:, 1]))]))
    assert set(run.reliability) == {"raw", "calibrated"}


def test_a_grading_run_and_a_phrase_grounding_run() -> None:
    grades = np.r_[np.zeros(20), np.ones(12), np.full(8, 2)].astype(int)
    rows = [Sample(f"g{k}", Path(f"g{k}.png"), {"A": int(grades[k])}) for k in range(N)]
    p = np.linspace(0, 1, N)
    graded = Benchmark("grades", "Grades", "grade", {"A": "a"}, rows, (0.0, 0.0, 1.0), grades=[0, 1, 2, 3])
    m = score(graded, EvaluationRun(rows, [PROMPTS[0]], p[:, None]), n_boot=0, seed=0)
    by_grade = m["grading"]["A"]
    assert by_grade["images_per_grade"] == {"0": 20, "1": 12, "2": 8, "3": 0}
    assert by_grade["mean_probability_per_grade"]["1"] == pytest.approx(p[20:32].mean())
    assert np.isnan(by_grade["mean_probability_per_grade"]["3"])
    assert m["classification"]["A"]["auc"] == pytest.approx(roc_auc_score(grades > 0, p))
    cases = GROUNDING[0]
    phrase = Benchmark("phrases", "Phrases", "phrase-ground", {"A": "a"}, samples()[:3], (0.0, 0.0, 1.0))
    m = score(phrase, EvaluationRun(phrase.samples, [PROMPTS[0]], np.zeros((3, 1)), grounding={0: cases}),
              n_boot=0, seed=0)
    assert m["classification"] == {} and "macro" not in m and "calibration" not in m
    mious = [mean_iou_over_thresholds(c.heatmap, c.mask) for c in cases]
    cnrs = [contrast_to_noise(c.heatmap, c.mask) for c in cases]
    for where in (m["grounding"]["A"], m["grounding_overall"]):
        assert where["miou"] == pytest.approx(np.mean(mious)) and where["cnr"] == pytest.approx(np.mean(cnrs))
        assert np.isnan(where["miou_ci"]).all() and len(where["miou_thresholds"]) > 1


def test_a_missing_label_is_negative_and_what_a_run_without_a_split_or_classes_leaves_out() -> None:
    """A sample without a label for a class counts as negative; with every prompt seen there is no
    seen / unseen split of the macro; a grounding benchmark scores no classification."""
    rows = samples()
    for s in rows[:20]:
        del s.labels["B"]  # B: 10 positives among the last 20; the first 20 lose their (negative) label
    probs = probabilities()
    m = score(bench(), EvaluationRun(rows, PROMPTS[:2], probs[:, :2]), n_boot=0, seed=0)
    assert m["classification"]["B"]["n"] == N and m["classification"]["B"]["positives"] == 10
    assert m["classification"]["B"]["auc"] == pytest.approx(roc_auc_score(LABELS["B"], probs[:, 1]), abs=1e-12)
    assert "macro_seen" not in m and "macro_unseen" not in m and "macro_unseen_name" not in m
    grounded = score(bench("ground"), EvaluationRun(samples(), PROMPTS[:1], probs[:, :1], grounding={0: GROUNDING[0]}),
                     n_boot=0, seed=0)
    assert grounded["classification"] == {} and grounded["grounding"]["A"]["images"] == 4


def test_one_label_value_only_is_reported_not_scored() -> None:
    rows = samples()
    for s in rows:
        s.labels["B"] = 0
    m = score(bench(), EvaluationRun(rows, PROMPTS[:2], probabilities()[:, :2]), n_boot=0, seed=0)
    b = m["classification"]["B"]
    assert np.isnan(b["auc"]) and b["note"] == "one label value only: not defined" and "ece" not in b
    assert (b["positives"], b["n"]) == (0, N)
    assert m["macro"]["auc"] == m["classification"]["A"]["auc"]  # NaN left out of the mean
