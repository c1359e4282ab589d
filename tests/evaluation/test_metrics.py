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
