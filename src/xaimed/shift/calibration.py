"""Calibration: do predicted probabilities mean what they say?

* Expected calibration error (ECE), top-label, with equal-width confidence bins:
  ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|, where an image falls into bin
  b = 1..B when its top probability lies in ((b - 1) / B, b / B]; empty bins count zero.
* Brier score, multi-class: mean over images of sum_k (p_k - y_k)^2, y the one-hot label;
  0 is perfect, 2 the worst possible.
* Temperature scaling (Guo et al., 2017): one T > 0 divides all logits; it is fitted by
  minimising the negative log-likelihood on held-back images and leaves every prediction
  (the argmax) unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy.special import log_softmax, softmax

DEFAULT_BINS = 15
TEMPERATURE_RANGE = (0.1, 10.0)


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be (N, classes) for N labels, got {probs.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels outside 0..{probs.shape[1] - 1}")
    return probs, labels


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS
) -> float:
    """Top-label ECE with `n_bins` equal-width bins over (0, 1]; NaN for no images."""
    probs, labels = _check(probs, labels)
    if len(labels) == 0:
        return float("nan")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    # Bin b holds confidences in ((b-1)/B, b/B]; ceil maps exactly b/B into bin b.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64), 1, n_bins)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of sum_k (p_k - [k == label])^2."""
    probs, labels = _check(probs, labels)
    if len(labels) == 0:
        return float("nan")
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(1).mean())


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    logits, labels = _check(logits, labels)
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE minimising the NLL of softmax(logits / T); 1 with no images.

    Searched over log T (bounded Brent), where the NLL is smooth and the range symmetric.
    """
    logits, labels = _check(logits, labels)
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(TEMPERATURE_RANGE)
    result = optimize.minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def scaled_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
