"""Classification metrics against scikit-learn on random data; bootstrap intervals."""
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
    check_against_sklearn(y, s)


EDGE_CASES = {
    "one positive": ([0, 0, 1, 0], [0.1, 0.3, 0.2, 0.4]),
    "one negative": ([1, 1, 0, 1], [0.1, 0.3, 0.2, 0.4]),
    "the only positive scored lowest": ([1, 0, 0, 0], [0.2, 0.9, 0.5, 0.3]),
    # best F1 (0.5) where precision + recall is exactly 1, above the F1 of predicting all (0.18)
    "rare finding, best F1 at p + r = 1": ([0, 1] + [0] * 7 + [1] + [0] * 10, list(np.linspace(1, 0.05, 20))),
    "every score tied": ([0, 1, 0, 1, 1], [0.5] * 5),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases_match_sklearn(case: str) -> None:
    y, s = (np.asarray(v) for v in EDGE_CASES[case])
    check_against_sklearn(y, s)
    if case.startswith("rare"):
        assert m.best_f1(y, s).f1 == 0.5


def check_against_sklearn(y: np.ndarray, s: np.ndarray) -> None:
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


def test_bootstrap_ci_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = y * 0.5 + rng.random(300)
    auc = m.roc_auc(y, s)
    low, high = m.bootstrap_ci(m.roc_auc, y, s, n_boot=300)
    assert low < auc < high and high - low < 0.2
    assert m.bootstrap_ci(m.roc_auc, y, s, n_boot=50) == m.bootstrap_ci(m.roc_auc, y, s, n_boot=50)  # seeded


def test_bootstrap_ci_is_the_percentile_interval_of_its_resamples() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 80)
    s = y * 0.3 + rng.random(80)
    draws = np.random.default_rng(0)  # the default seed
    values = [m.roc_auc(y[idx], s[idx]) for idx in (draws.integers(0, 80, 80) for _ in range(200))]
    assert m.bootstrap_ci(m.roc_auc, y, s, n_boot=200) == (np.quantile(values, 0.025), np.quantile(values, 0.975))
    assert m.bootstrap_ci(m.roc_auc, y, s, n_boot=200, alpha=0.2) == (np.quantile(values, 0.1),
                                                                     np.quantile(values, 0.9))


def test_the_fast_bootstrap_equals_the_plain_one() -> None:
    """bootstrap_binary_cis from resampling counts gives bootstrap_ci's intervals of AUC, and of F1 and
    accuracy at the best-F1 threshold, for the same seed (ties and a rare class included)."""
    rng = np.random.default_rng(4)
    y = (rng.random(120) < 0.15).astype(int)
    s = np.round(y * 0.2 + rng.random(120), 2)
    fast = m.bootstrap_binary_cis(y, s, m.bootstrap_counts(120, 150, seed=5), alpha=0.1)
    for key, metric in (("auc", m.roc_auc), ("f1", lambda a, b: m.best_f1(a, b).f1),
                        ("accuracy", lambda a, b: m.best_f1(a, b).accuracy)):
        plain = m.bootstrap_ci(metric, y, s, n_boot=150, seed=5, alpha=0.1)
        assert fast[key] == pytest.approx(plain, abs=1e-12), key
