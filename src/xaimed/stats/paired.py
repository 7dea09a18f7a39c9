"""Paired comparisons of two series measured on the same units (folds or images): the paired
t-test, the Nadeau-Bengio corrected resampled t-test (over the r * k folds of a repeated
cross-validation: Bouckaert and Frank's corrected repeated k-fold t-test), the Wilcoxon
signed-rank test, the mean difference with its confidence interval, and Cohen's d_z.

Every function works on the differences a - b over the complete pairs (a pair with a NaN on
either side is dropped), so the tests, the interval and the effect size always agree on n.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps


def differences(a, b) -> np.ndarray:
    """a - b over the pairs where both values are present (NaN pairs are dropped)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return d[~np.isnan(d)]


def _t_from(mean: float, se: float, df: int) -> tuple[float, float]:
    """(t, two-sided p) of mean / se with `df` degrees of freedom; se = 0 is handled as
    scipy would not: t = 0, p = 1 for a zero mean, t = +/-inf, p = 0 otherwise."""
    if se == 0:
        if mean == 0:
            return 0.0, 1.0
        return float(np.sign(mean) * np.inf), 0.0
    t = mean / se
    return float(t), float(2 * sps.t.sf(abs(t), df))


def paired_ttest(a, b) -> tuple[float, float, float]:
    """(mean_diff a-b, t, p) from scipy.stats.ttest_rel, two-sided, on complete pairs.

    Degenerate cases, where scipy would return NaN with a warning:
    - fewer than 2 pairs: t = p = NaN (mean_diff is NaN for 0 pairs, the difference for 1);
    - all differences identical and zero: t = 0, p = 1 (no evidence of any difference);
    - all differences identical and nonzero: t = +/-inf (sign of the difference), p = 0.
    """
    d = differences(a, b)
    n = len(d)
    mean_diff = float(d.mean()) if n else float("nan")
    if n < 2:
        return mean_diff, float("nan"), float("nan")
    if np.all(d == d[0]):  # zero variance: scipy would give NaN with a warning
        return (mean_diff, *_t_from(mean_diff, 0.0, n - 1))
    t, p = sps.ttest_rel(d, np.zeros(n))
    return mean_diff, float(t), float(p)


def corrected_ttest(a, b, test_train_ratio: float) -> tuple[float, float, float]:
    """(t, p, se) of the Nadeau-Bengio corrected resampled t-test (Nadeau & Bengio 2003).

    Folds of a cross-validation share most of their training data, so per-fold differences
    are positively correlated and the plain paired t-test's variance s^2 / k is too small.
    The correction uses s^2 * (1/k + n_test/n_train), with k the number of folds (pairs) and
    n_test/n_train the ratio of test to training images per fold; df = k - 1. Over the r * k
    folds of r repeats (k = r * k pairs here) this is the corrected repeated k-fold t-test of
    Bouckaert & Frank (2004): t = mean(d) / sqrt((1/(k r) + n_test/n_train) var(d)), df = k r - 1.
    """
    d = differences(a, b)
    k = len(d)
    if k < 2:
        return float("nan"), float("nan"), float("nan")
    se = math.sqrt(d.var(ddof=1) * (1 / k + test_train_ratio))
    t, p = _t_from(float(d.mean()), se, k - 1)
    return t, p, se


def wilcoxon(a, b) -> tuple[float, float]:
    """(W, p) of the two-sided Wilcoxon signed-rank test (scipy's defaults: zero differences
    dropped, exact p for small samples without ties). No pair: NaN; only zero differences:
    W = 0, p = 1."""
    d = differences(a, b)
    if len(d) == 0:
        return float("nan"), float("nan")
    if np.all(d == 0):
        return 0.0, 1.0
    res = sps.wilcoxon(d)
    return float(res.statistic), float(res.pvalue)


def mean_ci(d, alpha: float = 0.05, scale: float | None = None) -> tuple[float, float]:
    """Two-sided (1 - alpha) t-interval of the mean of `d`: mean +/- t_{1-alpha/2, n-1} * se,
    with se = sd / sqrt(n) unless `scale` (a standard error) is given. NaN for n < 2."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    se = d.std(ddof=1) / math.sqrt(n) if scale is None else scale
    half = sps.t.ppf(1 - alpha / 2, n - 1) * se
    return float(d.mean() - half), float(d.mean() + half)


def cohens_dz(a, b) -> float:
    """Cohen's d_z = mean(d) / sd(d) (the paired effect size; t = d_z * sqrt(n)).
    NaN for n < 2; for sd = 0, 0 if the mean is 0, else +/-inf."""
    d = differences(a, b)
    if len(d) < 2:
        return float("nan")
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf)
    return float(d.mean() / sd)


def paired_summary(
    a, b, alpha: float = 0.05, test_train_ratio: float | None = None, repeat=None
) -> dict:
    """Everything a paired comparison reports, as one row: n, mean_diff (a - b), t, p,
    ci_low/ci_high (the (1 - alpha) CI of mean_diff), cohens_dz, wilcoxon_w, p_wilcoxon, and,
    with `test_train_ratio` (cross-validation folds), t_nb, p_nb, ci_low_nb, ci_high_nb from
    the Nadeau-Bengio corrected variance over the folds of the first repeat, and t_rcv,
    p_rcv, ci_low_rcv, ci_high_rcv, the corrected repeated k-fold t-test (Bouckaert & Frank
    2004) over the folds of every repeat, with `repeats`. `repeat` gives each pair's repeat
    of the cross-validation (None: all one repeat, and both tests agree)."""
    d = differences(a, b)
    mean_diff, t, p = paired_ttest(a, b)
    ci_low, ci_high = mean_ci(d, alpha)
    w, p_w = wilcoxon(a, b)
    row = {
        "n": len(d),
        "mean_diff": mean_diff,
        "t": t,
        "p": p,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "cohens_dz": cohens_dz(a, b),
        "wilcoxon_w": w,
        "p_wilcoxon": p_w,
    }
    if test_train_ratio is None:
        return row
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    repeat = np.zeros(len(a)) if repeat is None else np.asarray(repeat)
    complete = ~np.isnan(a - b)
    first = repeat == (repeat[complete].min() if complete.any() else 0)
    # One k-fold cross-validation (the first repeat): Nadeau-Bengio as without repeats; every
    # repeat: the same correction over the r * k pairs is Bouckaert and Frank's test.
    for suffix, keep in (("nb", first), ("rcv", np.ones(len(a), bool))):
        t_c, p_c, se_c = corrected_ttest(a[keep], b[keep], test_train_ratio)
        kept = differences(a[keep], b[keep])
        lo, hi = mean_ci(kept, alpha, scale=se_c) if len(kept) >= 2 else (float("nan"),) * 2
        row.update({f"t_{suffix}": t_c, f"p_{suffix}": p_c})
        row.update({f"ci_low_{suffix}": lo, f"ci_high_{suffix}": hi})
    row["repeats"] = len(np.unique(repeat[complete]))
    return row
