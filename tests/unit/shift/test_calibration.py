"""Calibration metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from xaimed.shift.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    scaled_probs,
)

# Top probabilities 0.95, 0.65, 0.72, 0.85 (off every bin edge); the second is wrong.
PROBS = np.array([[0.95, 0.05], [0.65, 0.35], [0.28, 0.72], [0.15, 0.85]])
LABELS = np.array([0, 1, 1, 1])


def test_ece_with_one_image_per_bin():
    # 10 bins: each image alone in its bin -> mean |correct - confidence|.
    expected = (0.05 + 0.65 + 0.28 + 0.15) / 4
    assert expected_calibration_error(PROBS, LABELS, n_bins=10) == pytest.approx(expected)


def test_ece_with_all_images_in_one_bin():
    # 2 bins, all confidences in (0.5, 1]: |accuracy 3/4 - mean confidence 0.7925|.
    assert expected_calibration_error(PROBS, LABELS, n_bins=2) == pytest.approx(0.0425)


def test_ece_bins_are_closed_on_the_right():
    # Confidence exactly 0.5 lies in (0, 0.5] with 2 bins, 0.75 in (0.5, 1]: two bins of one.
    probs = np.array([[0.5, 0.5], [0.75, 0.25]])
    ece = expected_calibration_error(probs, np.array([0, 1]), n_bins=2)
    assert ece == pytest.approx((abs(1 - 0.5) + abs(0 - 0.75)) / 2)
    assert np.isnan(expected_calibration_error(np.zeros((0, 2)), np.zeros(0)))


def test_brier_score_multiclass():
    per_image = [0.05**2 * 2, 0.65**2 * 2, 0.28**2 * 2, 0.15**2 * 2]
    assert brier_score(PROBS, LABELS) == pytest.approx(np.mean(per_image))
    three = np.array([[0.2, 0.5, 0.3]])
    assert brier_score(three, np.array([2])) == pytest.approx(0.04 + 0.25 + 0.49)
    assert brier_score(np.eye(3), np.arange(3)) == 0.0


def test_temperature_matches_the_closed_form_optimum():
    # Same logits (2, 0) for four images, three of class 0: the NLL is minimal where
    # sigmoid(2 / T) = 3/4, i.e. T = 2 / ln 3.
    logits = np.tile([2.0, 0.0], (4, 1))
    labels = np.array([0, 0, 0, 1])
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2 / np.log(3), rel=1e-4)
    assert scaled_probs(logits, temperature)[0, 0] == pytest.approx(0.75, rel=1e-4)
    grid = np.linspace(0.5, 5, 2001)
    nll = [negative_log_likelihood(logits, labels, t) for t in grid]
    assert temperature == pytest.approx(grid[int(np.argmin(nll))], abs=5e-3)


def test_temperature_scaling_keeps_predictions_and_is_one_without_images():
    logits = np.random.default_rng(0).normal(size=(20, 4)) * 3
    for t in (0.5, 2.0):
        assert np.array_equal(scaled_probs(logits, t).argmax(1), logits.argmax(1))
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0


def test_bad_shapes_and_labels_are_refused():
    with pytest.raises(ValueError, match="labels outside 0..1"):
        brier_score(PROBS, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="probs must be"):
        expected_calibration_error(PROBS[:, 0], LABELS)
