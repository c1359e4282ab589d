"""`evaluate`'s numbers recomputed independently: the labels read from the dataset's own label file
(not from medklip's reading of it), the probabilities from predictions.csv, AUC from
scikit-learn; every class and the macro average equal metrics.json. A misaligned label column is
shown to change them (the defect these tests exist for). Hand-computed values for the grounding
helpers that have no benchmark of their own (CNR, mIoU over thresholds, the pointing game's
chance level)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medklip.cli import main
from medklip.evaluation.grounding import contrast_to_noise, mean_iou_over_thresholds, random_patch_hit_rate
from tests.data.benchmark_fixtures import make_chestxray14, make_rsna

CXR14 = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
         "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]


def sk_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def predictions(out: Path) -> dict[str, dict[str, str]]:
    with (out / "predictions.csv").open() as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def check(metrics: dict, truth: dict[str, np.ndarray], probs: dict[str, np.ndarray]) -> None:
    expected = {c: sk_auc(truth[c], probs[c]) for c in truth}
    for c, want in expected.items():
        got = metrics["classification"][c]["auc"]
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12), (c, got, want)
        assert metrics["classification"][c]["positives"] == int(truth[c].sum())
    assert metrics["macro"]["auc"] == pytest.approx(np.nanmean(list(expected.values())), abs=1e-12)
    # the control: the same labels one row out of step give other numbers
    shifted = {c: sk_auc(np.roll(truth[c], 1), probs[c]) for c in truth}
    moved = [c for c in truth if np.isfinite(shifted[c]) and abs(shifted[c] - expected[c]) > 1e-3]
    assert len(moved) >= len([c for c in truth if np.isfinite(expected[c])]) // 2


def test_chestxray14_metrics_from_the_data_entry_file(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "cxr14"
    make_chestxray14(root, plain=24, with_boxes=8)
    out = tmp_path / "run"
    assert main(["evaluate", "--dataset", "chestxray14", "--root", str(root), "--model", str(tiny_model_dir),
                 "--split", "all", "--bootstrap", "0", "-q", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    with (root / "Data_Entry_2017_v2020.csv").open() as f:
        findings = {r["Image Index"]: set(r["Finding Labels"].split("|")) for r in csv.DictReader(f)}
    rows = predictions(out)
    assert sorted(rows) == sorted(findings)
    ids = sorted(rows)
    truth = {c: np.array([c in findings[i] for i in ids], int) for c in CXR14}
    probs = {c: np.array([float(rows[i][f"prob:{c}"]) for i in ids]) for c in CXR14}
    assert list(m["classification"]) == CXR14
    check(m, truth, probs)


def test_rsna_metrics_from_the_kaggle_label_file(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "rsna"
    make_rsna(root, multi=3, single=3, negative=6)
    out = tmp_path / "run"
    assert main(["evaluate", "--dataset", "rsna-pneumonia", "--root", str(root), "--model", str(tiny_model_dir),
                 "--split", "all", "--bootstrap", "0", "-q", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    with (root / "stage_2_train_labels.csv").open() as f:
        target = {r["patientId"]: int(r["Target"]) for r in csv.DictReader(f)}
    rows = predictions(out)
    ids = sorted(rows)
    assert ids == sorted(target)
    truth = {"Pneumonia": np.array([target[i] for i in ids])}
    check(m, truth, {"Pneumonia": np.array([float(rows[i]["prob:Pneumonia"]) for i in ids])})
    assert m["grounding"]["Pneumonia"]["images"] == int(truth["Pneumonia"].sum())


# ---------------------------------------------------------------- hand-computed grounding helpers
HEAT = np.array([[0.0, 1.0], [0.25, 0.5]])  # a 2 x 2 patch grid (already in [0, 1])
TOP_RIGHT = np.zeros((4, 4), bool)
TOP_RIGHT[0:2, 2:4] = True  # exactly the block of patch (0, 1)


def test_random_patch_hit_rate_by_hand() -> None:
    one = np.zeros((4, 4), bool)
    one[0, 0] = True
    assert random_patch_hit_rate((2, 2), one) == 0.25  # one patch of four holds mask
    two = np.zeros((4, 4), bool)
    two[1, 1:3] = True  # straddles patches (0, 0) and (0, 1)
    assert random_patch_hit_rate((2, 2), two) == 0.5
    assert random_patch_hit_rate((2, 2), np.zeros((4, 4), bool)) == 0.0
    assert random_patch_hit_rate((4, 4), TOP_RIGHT) == 0.25  # 4 of 16 patches on a finer grid


def test_mean_iou_over_thresholds_by_hand() -> None:
    # t = 0.1, 0.2: patches 1, 0.25, 0.5 are on (12 px), IoU 4/12; t = 0.3, 0.4, 0.5: 1 and 0.5 (8 px), 4/8
    assert mean_iou_over_thresholds(HEAT, TOP_RIGHT) == pytest.approx((2 * (4 / 12) + 3 * (4 / 8)) / 5)
    assert mean_iou_over_thresholds(HEAT, TOP_RIGHT, thresholds=(0.9,)) == 1.0


def test_contrast_to_noise_by_hand() -> None:
    # inside: four pixels of 1 (mean 1, var 0); outside: four each of 0, 0.25, 0.5 (mean 0.25,
    # var (0 + 0.0625 + 0.25) / 3 - 0.0625 = 1/24)
    assert contrast_to_noise(HEAT, TOP_RIGHT) == pytest.approx(0.75 / np.sqrt(1 / 24))
    assert contrast_to_noise(np.ones((2, 2)), TOP_RIGHT) == 0.0  # a flat map
    assert np.isnan(contrast_to_noise(HEAT, np.zeros((4, 4), bool)))
    assert np.isnan(contrast_to_noise(HEAT, np.ones((4, 4), bool)))
