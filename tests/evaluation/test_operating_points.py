"""Operating points chosen on validation and applied to test: hand-computed values, and an
evaluation run whose headline F1 is recomputed from its own validation and test predictions."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from medklip.data.synthetic import WorldConfig, generate_world
from medklip.evaluation.grounding import segmentation_at
from medklip.evaluation.metrics import best_f1, f1_accuracy_at
from medklip.evaluation.operating import OperatingPoints, classification_at, fit_operating_points, grounding_at
from medklip.zeroshot.benchmark import evaluate_dataset

# validation: the F1 over the thresholds 0.9 / 0.8 / 0.4 / 0.35 / 0.2 / 0.1 is
# 2/4, 4/5, 4/6, 6/7, 6/8, 6/9: the best is 0.35
VAL_Y, VAL_P = np.array([0, 0, 1, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
# test at 0.35: predicted {0.5, 0.36}, one true: F1 2*1/(2+2) = 0.5, accuracy 2/4;
# tuned on test itself the threshold would be 0.3: F1 2*2/(3+2) = 0.8
TEST_Y, TEST_P = np.array([1, 0, 1, 0]), np.array([0.5, 0.36, 0.3, 0.1])


def test_threshold_is_picked_on_validation_and_applied_to_test() -> None:
    op = fit_operating_points("validation split", {"a": VAL_Y, "none": np.zeros(6, int)}, {"a": VAL_P, "none": VAL_P})
    assert op.thresholds == {"a": 0.35} and "no positive" in op.missing["none"] and op.images == 6
    at = classification_at(TEST_Y, TEST_P, op.thresholds["a"])
    assert at == {"operating_f1": 0.5, "operating_accuracy": 0.5, "operating_threshold": 0.35}
    assert best_f1(TEST_Y, TEST_P).f1 == pytest.approx(0.8)  # the paper's test-tuned value, for contrast
    assert np.isnan(classification_at(TEST_Y, TEST_P, None)["operating_f1"])
    assert f1_accuracy_at([0, 0], [0.9, 0.1], 0.5) == (0.0, 0.5)  # no positive, one false alarm
    assert f1_accuracy_at([1, 0], [0.5, 0.2], 0.5) == (1.0, 1.0)  # a score at the threshold counts as positive


def test_grounding_threshold_from_validation() -> None:
    heat = np.array([[1.0, 0.0], [0.0, 0.5]])
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # the top-left patch
    assert segmentation_at([heat], [mask], 0.6).dice == 1.0
    s = segmentation_at([heat], [mask], 0.4)  # the bottom-right patch too: 8 predicted, 4 right
    assert s.dice == pytest.approx(8 / 12) and s.iou == pytest.approx(0.5)
    op = fit_operating_points("v", {}, {}, {"a": ([heat], [mask])})
    assert 0.5 < op.grounding["a"] <= 1.0  # above the faint patch



def test_operating_points_record_exactly_what_was_chosen_and_why_not() -> None:
    """Every field of the record, the messages in full, and the NaN entries' keys when there is no
    threshold (or one class only on test)."""
    import dataclasses

    empty = OperatingPoints("nothing", 0)
    assert empty.to_dict() == {"available": True, "source": "nothing", "images": 0, "thresholds": {},
                               "grounding_thresholds": {}, "missing": {}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        empty.images = 3  # type: ignore[misc]
    assert fit_operating_points("test split", {}, {}).images == 0
    op = fit_operating_points("validation split (4 images)", {"none": np.zeros(4, int), "all": np.ones(3, int)},
                              {"none": np.ones(4), "all": np.ones(3)})
    assert op.images == 4 and op.thresholds == {} and op.grounding == {}
    assert op.missing == {"none": "the validation split (4 images) has no positive images",
                          "all": "the validation split (4 images) has only positive images"}
    for threshold, expected in ((None, float("nan")), (0.3, 0.3)):
        at = classification_at(np.ones(4, int), np.full(4, 0.5), threshold)  # one class on test
        assert set(at) == {"operating_f1", "operating_accuracy", "operating_threshold"}
        assert np.isnan(at["operating_f1"]) and np.isnan(at["operating_accuracy"])
        assert at["operating_threshold"] == expected or np.isnan(expected) and np.isnan(at["operating_threshold"])
    nothing = grounding_at([], [], None)
    assert set(nothing) == {"operating_dice", "operating_iou", "operating_threshold"}
    assert all(np.isnan(v) for v in nothing.values())
    heat, mask = np.array([[1.0, 0.0], [0.0, 0.5]]), np.zeros((4, 4), bool)
    mask[:2, :2] = True
    assert grounding_at([heat], [mask], 0.6) == {"operating_dice": 1.0, "operating_iou": 1.0,
                                                 "operating_threshold": 0.6}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("opworld"), WorldConfig(train=0, validation=24, test=24,
                                                                           image_size=64, seed=3))


def _column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows])


def test_evaluate_reports_test_at_validation_thresholds(world, tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "run"
    m = evaluate_dataset("synthetic", world, tiny_model_dir, out, split="test", n_boot=0, n_overlays=0, by_name=False)
    op = m["operating_points"]
    assert op["available"] and op["source"] == "validation split (24 images)" and op["images"] == 24
    val = list(csv.DictReader((out / "validation" / "predictions.csv").open()))
    test = list(csv.DictReader((out / "predictions.csv").open()))
    assert {r["split"] for r in val} == {"validation"} and {r["split"] for r in test} == {"test"}
    assert len(val) == 24 and len(test) == 24
    checked = 0
    for label, row in m["classification"].items():
        y_val = _column(val, f"label:{label}")
        if len(np.unique(y_val)) < 2:
            assert label in op["missing"] and np.isnan(row["operating_f1"])
            continue
        t = best_f1(y_val, _column(val, f"prob:{label}")).threshold
        assert op["thresholds"][label] == pytest.approx(t, abs=1e-7)
        y_test = _column(test, f"label:{label}")
        if len(np.unique(y_test)) < 2:  # not defined on test, as the paper-protocol F1
            assert np.isnan(row["operating_f1"]) and np.isnan(row["f1"])
            continue
        f1, acc = f1_accuracy_at(y_test, _column(test, f"prob:{label}"), t)
        assert row["operating_f1"] == pytest.approx(f1, abs=1e-9) and row["operating_accuracy"] == pytest.approx(acc)
        checked += 1
    assert checked >= 3
    for label, g in m["grounding"].items():
        if label not in op["grounding_thresholds"]:  # covid-19: no positive validation image
            assert label in op["missing"] and np.isnan(g["operating_dice"])
            continue
        assert g["operating_threshold"] == op["grounding_thresholds"][label] and 0 <= g["operating_dice"] <= 1
    report = (out / "report.md").read_text()
    assert "F1 (val. t)" in report and "paper protocol" in report and "validation split (24 images)" in report


@pytest.mark.parametrize("split, why", [("all", "every image is scored"), ("validation", "being scored")])
def test_no_operating_point_says_why(world, tiny_model_dir, tmp_path, split, why) -> None:
    m = evaluate_dataset("synthetic", world, tiny_model_dir, tmp_path / "run", split=split, n_boot=0, n_overlays=0,
                         by_name=False)
    assert m["operating_points"]["available"] is False and why in m["operating_points"]["reason"]
    assert all("operating_f1" not in v for v in m["classification"].values())
    assert "No operating point from validation data" in (tmp_path / "run" / "report.md").read_text()
    assert not (tmp_path / "run" / "validation").exists()
