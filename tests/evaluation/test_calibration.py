"""Calibration: hand-computed ECE / Brier and fitted maps on constructed sets; ``medklip
calibrate`` end to end (the saved model applies it, marks what is calibrated, reports before / after)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medklip.cli import main
from medklip.data.synthetic import WorldConfig, generate_world
from medklip.evaluation.calibration import apply, brier, ece, fit, log_odds, reliability
from medklip.zeroshot.predict import Predictor


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _overconfident() -> tuple[np.ndarray, np.ndarray]:
    """100 images at log-odds +4 of which 70 positive, 100 at -4 of which 30 positive."""
    y = np.r_[np.ones(70), np.zeros(30), np.ones(30), np.zeros(70)].astype(int)
    p = np.r_[np.full(100, _sigmoid(4.0)), np.full(100, _sigmoid(-4.0))]
    return y, p


def test_temperature_scaling_on_an_overconfident_set() -> None:
    y, p = _overconfident()
    # before: each group sits in one bin; |0.7 - sigmoid(4)| on both sides
    assert ece(y, p) == pytest.approx(_sigmoid(4.0) - 0.7, abs=1e-12)
    assert brier(y, p) == pytest.approx(0.7 * (1 - _sigmoid(4.0)) ** 2 + 0.3 * _sigmoid(4.0) ** 2, abs=1e-12)
    # Platt's targets: 101/102 for the 100 positives, 1/102 for the 100 negatives; the log-loss
    # optimum puts sigmoid(4 / T) at the mean target of the +4 group, (70 * 101 + 30) / 10200
    q_star = (70 * 101 + 30 * 1) / 10200
    params = fit("temperature", y, p)
    assert params["temperature"] == pytest.approx(4 / math.log(q_star / (1 - q_star)), rel=1e-6)
    q = apply(params, p)
    assert q[:100] == pytest.approx(q_star, abs=1e-6) and q[100:] == pytest.approx(1 - q_star, abs=1e-6)
    assert ece(y, q) == pytest.approx(0.7 - q_star, abs=1e-6)  # 0.0039, from 0.282
    assert brier(y, q) == pytest.approx(0.7 * (1 - q_star) ** 2 + 0.3 * q_star**2, abs=1e-6)  # 0.2100, from 0.2895


def test_platt_scaling_shifts_the_base_rate() -> None:
    # log-odds 2 with 90% positives, 0 with 50%; 140 positives (target 141/142), 60 negatives (1/62):
    # a * 2 + b and b are the logits of the two groups' mean targets
    y = np.r_[np.ones(90), np.zeros(10), np.ones(50), np.zeros(50)].astype(int)
    p = np.r_[np.full(100, _sigmoid(2.0)), np.full(100, 0.5)]
    high, low = (90 * 141 / 142 + 10 / 62) / 100, (50 * 141 / 142 + 50 / 62) / 100
    params = fit("platt", y, p)
    b = math.log(low / (1 - low))
    assert params["intercept"] == pytest.approx(b, abs=1e-5)
    assert params["slope"] == pytest.approx((math.log(high / (1 - high)) - b) / 2, abs=1e-5)
    assert apply(params, p)[:100] == pytest.approx(high, abs=1e-5)
    with pytest.raises(ValueError, match="positive and negative"):
        fit("temperature", np.ones(4), np.full(4, 0.5))


def test_a_separable_finding_keeps_its_ranking() -> None:
    """Held-out images that one threshold separates: Platt's targets keep the fit finite, so no
    probability collapses to 0 or 1 and ties cannot change the AUC."""
    from medklip.evaluation.metrics import roc_auc

    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.9])
    for method in ("platt", "temperature"):
        q = apply(fit(method, y, p), p)
        assert len(np.unique(q)) == 5 and 0 < q.min() and q.max() < 1
        assert roc_auc(y, q) == roc_auc(y, p) == 1.0
    # no signal at all on the held-out images: the slope stops at its floor, the scores stay distinct
    flat = fit("platt", np.array([1, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert flat["slope"] == pytest.approx(0.01)
    assert len(np.unique(apply(flat, np.array([0.1, 0.2, 0.3, 0.4])))) == 4


def test_bins_and_saturated_probabilities() -> None:
    r = reliability(np.array([1, 0, 1]), np.array([1.0, 0.0, 0.5]), bins=4)
    assert r.counts.tolist() == [1, 0, 1, 1]  # 1.0 falls in the last bin, 0.5 in the third
    assert r.frequency[3] == 1 and r.confidence[2] == 0.5
    assert np.isfinite(log_odds(np.array([0.0, 1.0], np.float32))).all()
    assert apply({"temperature": 1.0}, np.array([0.25, 0.9], np.float32)) == pytest.approx([0.25, 0.9], abs=1e-7)



def test_the_bounds_defaults_and_refusals_by_hand() -> None:
    """Saturation at float32's largest probability below 1 (log-odds log(2**24 - 1)); both maps'
    sigmoid against the plain formula far into both tails (to +-15); the temperature's ceiling e**5 (labels
    that say nothing about confident scores) and Platt's slope ceiling 100 (a perfect split of
    near-equal scores); 15 bins by default; the refusals in full."""
    from medklip.evaluation.calibration import calibration_scores

    top = math.log(2**24 - 1)
    assert log_odds(np.array([1.0, 0.0, 0.5])) == pytest.approx([top, -top, 0.0], abs=1e-9)
    d = np.array([-15.0, -4.0, 0.0, 2.5, 15.0])  # within the saturation at +-16.6
    p = 1 / (1 + np.exp(-d))
    want = 1 / (1 + np.exp(-(0.5 * d - 1)))
    assert apply({"slope": 0.5, "intercept": -1.0}, p) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert apply({"temperature": 2.0}, p) == pytest.approx(1 / (1 + np.exp(-d / 2)), rel=1e-9, abs=1e-15)
    assert fit("temperature", np.array([0, 1, 0, 1]), np.array([0.9, 0.9, 0.1, 0.1])) == {
        "temperature": pytest.approx(math.exp(5.0), rel=1e-6)}
    y = np.r_[np.zeros(100), np.ones(100)].astype(int)
    near = np.r_[np.full(100, 0.4975), np.full(100, 0.5025)]  # log-odds -0.01 / +0.01
    steep = fit("platt", y, near)
    assert set(steep) == {"slope", "intercept"} and steep["slope"] == pytest.approx(100.0)
    labels, probs = np.array([1, 0, 1, 0, 1, 1]), np.array([0.04, 0.1, 0.5, 0.55, 0.93, 1.0])
    assert len(reliability(labels, probs).counts) == 15
    assert calibration_scores(labels, probs) == {"ece": ece(labels, probs, 15), "brier": brier(labels, probs)}
    assert ece(labels, probs, 15) != ece(labels, probs, 10)
    assert ece(np.array([1, 0]), np.array([0.7, 0.1])) == pytest.approx((0.3 + 0.1) / 2)  # bins of one image count
    with pytest.raises(ValueError) as caught:
        fit("isotonic", labels, probs)
    assert str(caught.value) == "unknown calibration method 'isotonic'; use one of temperature, platt"
    with pytest.raises(ValueError) as caught:
        fit("platt", np.zeros(3), np.full(3, 0.5))
    assert str(caught.value) == "calibration needs positive and negative images"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("calworld"), WorldConfig(train=0, validation=32, test=24,
                                                                            image_size=64, seed=5))


def test_calibrate_writes_a_model_that_applies_it(world, tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "calibrated"
    assert main(["calibrate", "--model", str(tiny_model_dir), "--dataset", "synthetic", "--root", str(world),
                 "-o", str(out), "-q"]) == 0
    assert "calibrated" in capsys.readouterr().out
    record = json.loads((out / "config.json").read_text())["calibration"]
    assert record["method"] == "platt" and record["images"] == 32 and "validation" in record["data"]
    assert "covid-19" in record["not_calibrated"]  # no validation positive, and not a model query
    assert "Calibration" in (out / "README.md").read_text()
    params = record["parameters"]
    assert len(params) >= 3 and set(params) == set(record["operating_points"])
    images = sorted((world / "images" / "test").glob("*.png"))[:6]
    names = list(params)[:3]
    raw = Predictor(tiny_model_dir).predict(images, names, {"my finding": "a dense opacity"}, heatmaps=False)
    cal = Predictor(out).predict(images, names, {"my finding": "a dense opacity"}, heatmaps=False)
    off = Predictor(out, calibrated=False).predict(images, names, {"my finding": "a dense opacity"}, heatmaps=False)
    for r, c, o in zip(raw, cal, off):
        for n in names:
            assert c.probabilities[n] == pytest.approx(float(apply(params[n], np.float32([r.probabilities[n]]))[0]),
                                                       abs=1e-6)
            assert o.probabilities[n] == r.probabilities[n] and c.calibrated[n] and not o.calibrated[n]
        assert c.probabilities["my finding"] == r.probabilities["my finding"] and not c.calibrated["my finding"]
    assert Predictor(out).operating_point(names[0]) == record["operating_points"][names[0]]
    assert Predictor(out).operating_point(names[0], described=True) is None
    # a model finding asked with the user's own description is a new query: not calibrated, both
    # where the flags are read per name (the CLI) and per query row (evaluate)
    mine = Predictor(out)
    flags = mine.calibrated_findings([names[0], names[1], "covid-19"], {names[0]: "my words for it"})
    assert flags == {names[0]: False, names[1]: True, "covid-19": False}
    _names, _emb, rows = mine.queries([names[0], names[1], "covid-19"], {names[0]: "my words for it"})
    assert mine.calibrated_rows(rows) == [False, True, False]
    assert mine.calibrated_rows([rows[1] - len(mine.model.entity_names)]) == [False]  # -k is "not the model's", never row n-k


def test_evaluate_reports_calibration_before_and_after(world, tiny_model_dir, tmp_path) -> None:
    from medklip.zeroshot.benchmark import evaluate_dataset
    from medklip.zeroshot.calibrate import calibrate_model

    calibrate_model(tiny_model_dir, "synthetic", world, tmp_path / "m")
    cal = evaluate_dataset("synthetic", world, tmp_path / "m", tmp_path / "run", n_boot=0, n_overlays=0, by_name=False)
    raw = evaluate_dataset("synthetic", world, tiny_model_dir, tmp_path / "raw", n_boot=0, n_overlays=0, by_name=False)
    c = cal["calibration"]
    assert "validation" in c["source"] and "covid-19" in c["uncalibrated"] and c["calibrated"]
    assert c["seen"]["ece_raw"] == pytest.approx(raw["calibration"]["seen"]["ece"], abs=1e-9)
    assert raw["calibration"]["source"] is None and "ece_raw" not in raw["calibration"]["seen"]
    kept = [k for k in c["calibrated"] if not math.isnan(raw["classification"][k]["auc"])]
    assert len(kept) >= 3
    for label in kept:  # a monotone map: the ranking, hence the AUC, is kept
        assert cal["classification"][label]["auc"] == pytest.approx(raw["classification"][label]["auc"], abs=1e-9)
        assert cal["classification"][label]["calibrated"] is True
    report = (tmp_path / "run" / "report.md").read_text()
    assert "raw (before calibration)" in report and "15 equal-width bins" in report
    assert (tmp_path / "run" / "reliability.png").is_file()
