"""Calibration of per-finding probabilities (pure functions): expected calibration error, Brier
score, reliability bins, and the two post-hoc maps fitted on held-out data, temperature scaling
and Platt scaling of the finding's log-odds.

MedKLIP's probability of a finding is the softmax of two logits, i.e. ``sigmoid(d)`` of their
difference ``d``; both maps act on ``d`` (recovered from the probability, so they apply to every
backend) and keep the ranking, hence the AUC: temperature ``sigmoid(d / T)`` (one parameter: it
sharpens or softens around ``d = 0``), Platt ``sigmoid(a d + b)`` (also shifts the base rate).
Both are fitted to Platt's smoothed targets (:func:`platt_targets`)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

ECE_BINS = 15
"""Equal-width bins of the predicted probability in [0, 1] (the usual choice since Guo et al. 2017)."""
SATURATED = 1.0 - 2.0**-24
"""The largest float32 probability below 1: saturated probabilities count as this (log-odds 16.6)."""
METHODS = ("temperature", "platt")


def log_odds(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` in float64, with float32-saturated probabilities clipped."""
    q = np.clip(np.asarray(p, np.float64), 1.0 - SATURATED, SATURATED)
    return np.log(q) - np.log1p(-q)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable at both ends


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between the probability and the 0/1 label."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class Reliability:
    """Per bin: mean predicted probability, observed frequency of positives, images."""

    confidence: np.ndarray
    frequency: np.ndarray
    counts: np.ndarray


def reliability(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Reliability bins of ``p`` (equal width; a probability of exactly 1 falls in the last bin)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=p, minlength=bins) / counts
        frequency = np.bincount(index, weights=y, minlength=bins) / counts
    return Reliability(confidence, frequency, counts)


def ece(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of a finding's probability: the image-weighted mean over
    equal-width bins of |observed frequency - mean probability|."""
    r = reliability(y, p, bins)
    kept = r.counts > 0
    return float(np.sum(r.counts[kept] * np.abs(r.frequency[kept] - r.confidence[kept])) / r.counts.sum())


def platt_targets(y: np.ndarray) -> np.ndarray:
    """Platt's (1999) targets: ``(N+ + 1) / (N+ + 2)`` for positives, ``1 / (N- + 2)`` for
    negatives. Fitting to them instead of 0 / 1 keeps a finding that the held-out images separate
    perfectly from an infinite slope (probabilities stuck at 0 and 1, ties, a changed AUC)."""
    y = np.asarray(y) > 0
    pos, neg = int(y.sum()), int((~y).sum())
    return np.where(y, (pos + 1) / (pos + 2), 1 / (neg + 2))


def _nll(t: np.ndarray, z: np.ndarray) -> float:
    # cross-entropy of sigmoid(z) against the targets t, computed stably
    return float(np.mean(t * np.logaddexp(0.0, -z) + (1 - t) * np.logaddexp(0.0, z)))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The temperature ``T`` minimising the log-loss of ``sigmoid(d / T)`` against
    :func:`platt_targets` (searched over log T in [-5, 5])."""
    t, d = platt_targets(y), log_odds(p)
    found = minimize_scalar(lambda s: _nll(t, d * np.exp(-s)), bounds=(-5.0, 5.0), method="bounded",
                            options={"xatol": 1e-10})
    return {"temperature": float(np.exp(found.x))}


PLATT_SLOPE = (0.01, 100.0)
"""Bounds of Platt's slope: positive (the ranking stays) and not so flat that distinct scores
become equal (a finding the held-out images cannot rank would otherwise get slope ~0: one constant)."""


def fit_platt(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Slope ``a`` (within :data:`PLATT_SLOPE`) and intercept ``b`` minimising the log-loss of
    ``sigmoid(a d + b)`` against :func:`platt_targets`."""
    t, d = platt_targets(y), log_odds(p)

    def loss(v: np.ndarray) -> tuple[float, np.ndarray]:
        a = np.exp(v[0])
        z = a * d + v[1]
        r = _sigmoid(z) - t  # d loss / d z, per image
        return _nll(t, z), np.array([np.mean(r * d) * a, np.mean(r)])

    bounds = [(float(np.log(PLATT_SLOPE[0])), float(np.log(PLATT_SLOPE[1]))), (None, None)]
    found = minimize(loss, x0=np.zeros(2), jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
    return {"slope": float(np.exp(found.x[0])), "intercept": float(found.x[1])}


def fit(method: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The parameters of ``method`` (:data:`METHODS`) fitted on labels ``y`` and probabilities ``p``."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    if len(np.unique(np.asarray(y))) < 2:
        raise ValueError("calibration needs positive and negative images")
    return fit_temperature(y, p) if method == "temperature" else fit_platt(y, p)


def apply(params: Mapping[str, float], p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities: ``sigmoid(d / T)`` or ``sigmoid(a d + b)`` of the log-odds ``d`` of ``p``."""
    d = log_odds(p)
    if "temperature" in params:
        z = d / params["temperature"]
    else:
        z = params["slope"] * d + params["intercept"]
    return _sigmoid(z)  # float64: a flat map (a slope near 0) must not round distinct scores into ties


def calibration_scores(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> dict[str, float]:
    """ECE and Brier score of one finding."""
    return {"ece": ece(y, p, bins), "brier": brier(y, p)}
