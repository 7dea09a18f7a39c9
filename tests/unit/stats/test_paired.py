"""Tests for xaimed.stats.paired: each statistic against scipy and against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from xaimed.stats.paired import cohens_dz, corrected_ttest, mean_ci, paired_summary, wilcoxon

A = [1.0, 2.0, 3.0, 5.0]
B = [0.5, 2.5, 1.0, 2.0]
# d = a - b = 0.5, -0.5, 2, 3: mean 1.25, squared deviations 0.5625 + 3.0625 + 0.5625 + 3.0625
# = 7.25, variance 7.25 / 3, sd 1.5546
VAR = 7.25 / 3
SD = math.sqrt(VAR)


def test_corrected_ttest_by_hand():
    # Nadeau-Bengio: se = sqrt(var * (1/k + n_test/n_train)); 4 folds of equal size -> 1/3
    t, p, se = corrected_ttest(A, B, 1 / 3)
    assert se == pytest.approx(math.sqrt(VAR * (1 / 4 + 1 / 3)))
    assert t == pytest.approx(1.25 / se)
    assert p == pytest.approx(2 * sps.t.sf(1.25 / se, df=3))
    # it shrinks the plain t by sqrt((1/k) / (1/k + ratio)) and so is more conservative
    plain = sps.ttest_rel(A, B)
    assert t == pytest.approx(plain.statistic * math.sqrt(0.25 / (0.25 + 1 / 3)))
    assert p > plain.pvalue
    # ratio 0 is the plain paired t-test
    t0, p0, _ = corrected_ttest(A, B, 0.0)
    assert (t0, p0) == pytest.approx((plain.statistic, plain.pvalue))


def test_corrected_ttest_degenerate_cases():
    assert all(math.isnan(x) for x in corrected_ttest([1.0], [0.0], 1.0))
    assert corrected_ttest([1.0, 2.0], [1.0, 2.0], 1.0)[:2] == (0.0, 1.0)
    assert corrected_ttest([2.0, 3.0], [1.0, 2.0], 1.0)[:2] == (math.inf, 0.0)


def test_wilcoxon_by_hand_and_against_scipy():
    # |d| = 0.5, 0.5, 2, 3 -> ranks 1.5, 1.5, 3, 4; W+ = 1.5 + 3 + 4 = 8.5, W- = 1.5
    w, p = wilcoxon(A, B)
    assert w == 1.5
    ref = sps.wilcoxon(A, B)
    assert (w, p) == pytest.approx((ref.statistic, ref.pvalue))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(0.3, size=30)
    ref = sps.wilcoxon(a, b)
    assert wilcoxon(a, b) == pytest.approx((ref.statistic, ref.pvalue))


def test_wilcoxon_degenerate_cases():
    assert all(math.isnan(x) for x in wilcoxon([], []))
    assert wilcoxon([1.0, 2.0], [1.0, 2.0]) == (0.0, 1.0)
    # NaN pairs are dropped, as in the t-tests
    assert wilcoxon([*A, np.nan], [*B, 1.0]) == pytest.approx(wilcoxon(A, B))


def test_mean_ci_by_hand_and_against_scipy():
    d = np.subtract(A, B)
    low, high = mean_ci(d)
    half = 3.182446305284263 * SD / 2  # t_{0.975, 3} * sd / sqrt(4), t from a t-table
    assert (low, high) == pytest.approx((1.25 - half, 1.25 + half))
    ref = sps.ttest_rel(A, B).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ref.low, ref.high))
    ref90 = sps.ttest_rel(A, B).confidence_interval(0.90)
    assert mean_ci(d, alpha=0.10) == pytest.approx((ref90.low, ref90.high))
    assert all(math.isnan(x) for x in mean_ci([1.0]))


def test_cohens_dz_by_hand():
    dz = cohens_dz(A, B)
    assert dz == pytest.approx(1.25 / SD)
    # t = d_z * sqrt(n) for the paired t-test
    assert dz * 2 == pytest.approx(sps.ttest_rel(A, B).statistic)
    assert cohens_dz(B, A) == pytest.approx(-dz)
    assert math.isnan(cohens_dz([1.0], [0.0]))
    assert cohens_dz([1.0, 2.0], [1.0, 2.0]) == 0.0


def test_paired_summary_agrees_with_its_parts():
    row = paired_summary(A, B, test_train_ratio=1 / 3)
    assert row["n"] == 4
    assert row["mean_diff"] == pytest.approx(1.25)
    assert (row["t"], row["p"]) == pytest.approx(tuple(sps.ttest_rel(A, B)))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(mean_ci(np.subtract(A, B)))
    t_nb, p_nb, se_nb = corrected_ttest(A, B, 1 / 3)
    assert (row["t_nb"], row["p_nb"]) == pytest.approx((t_nb, p_nb))
    # the corrected interval is the plain one widened by the corrected standard error
    half_nb = sps.t.ppf(0.975, 3) * se_nb
    assert (row["ci_low_nb"], row["ci_high_nb"]) == pytest.approx((1.25 - half_nb, 1.25 + half_nb))
    assert row["ci_high_nb"] - row["ci_low_nb"] > row["ci_high"] - row["ci_low"]
    assert "t_nb" not in paired_summary(A, B)  # images are no resamples: no correction
