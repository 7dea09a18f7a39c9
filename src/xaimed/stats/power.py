"""What the design can show: per dataset and test, the smallest p-value the design allows and
whether significance at `alpha` is attainable at all, computed from counts (folds, models,
methods, images), never from the results.

- t-tests (plain, Nadeau-Bengio and the corrected repeated k-fold test): p -> 0 as the paired
  differences become identical, so significance is attainable with 2 or more pairs; what the
  design limits is the effect needed, the mean difference in standard deviations of the
  differences (d_z) at which p = alpha: t_{1-alpha/2, n-1} / sqrt(n) plain,
  t_{1-alpha/2, n-1} * sqrt(1/n + n_test/n_train) corrected. With r repeats of k folds the
  model comparisons pair n = r k results (Nadeau-Bengio: the first repeat's k).
- Wilcoxon signed-rank: at best every difference has the same sign, W = 0; exact (scipy's
  default for small n) that is p = 2 / 2^n.
- Friedman (chi2): at best every block ranks the models alike, chi2 = N (k - 1).
  Iman-Davenport's F is unbounded there (p = 0), so it is reported apart.
- Nemenyi: significant where a rank difference reaches the critical difference
  CD = q_alpha sqrt(k (k+1) / (6 N)); the largest possible difference is k - 1.

The smallest adjusted p of a family of m tests: m * p with holm, p with bh (every p at its
minimum).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from xaimed.data.folds import fold_rows
from xaimed.report.tables import empty_because
from xaimed.stats.ranks import friedman_from_ranks, nemenyi_cd, nemenyi_p

log = logging.getLogger("xaimed.stats.power")

POWER_COLUMNS = [
    "dataset",
    "test",
    "table",
    "unit",
    "n",
    "k",
    "family_size",
    "min_p",
    "min_p_adjusted",
    "effect_needed",
    "effect_possible",
    "attainable",
    "alpha",
    "adjust",
]


@dataclass(frozen=True)
class Design:
    """The counts of one dataset's study: folds per repeat and repeats (their product: the
    paired blocks of the model comparisons), n_test/n_train per fold, models compared, CAM
    methods compared and the images each method comparison pairs (per predicted class: one
    family)."""

    dataset: str
    n_folds: int
    test_train_ratio: float
    n_models: int
    n_methods: int = 0
    n_images: int = 0
    n_metrics: int = 1
    n_repeats: int = 1


def design_from_folds(
    dataset: str,
    folds: pd.DataFrame,
    n_folds: int,
    n_classes: int,
    n_models: int,
    n_methods: int,
    max_images: int | None,
    n_metrics: int = 1,
    n_repeats: int = 1,
) -> Design:
    """A dataset's design from its folds table (`n_folds` per repeat, config `folds`, and
    `n_repeats`, config `repeats`): the folds' mean n_test/n_train and the images a method
    comparison pairs in one predicted class: per fold at most `max_images` held-out images,
    the predicted classes taken in turn (an even share per class); the repeats of a predefined
    split, and those of a repeated k-fold, explain the same images again, which the comparison
    counts once (one repeat's folds)."""
    sizes = []
    for fold in range(n_folds * n_repeats):
        train, held_out = fold_rows(folds, fold)
        sizes.append((len(train), len(held_out)))
    if not all(train and test for train, test in sizes):
        raise ValueError(f"{dataset}: a fold trains or tests on no image: {sizes}")
    predefined = "test" in folds and bool(folds["test"].any())
    explained = [n if max_images is None else min(n, max_images) for _, n in sizes]
    n_images = max(explained) if predefined else sum(explained[:n_folds])
    return Design(
        dataset=dataset,
        n_folds=n_folds,
        test_train_ratio=float(np.mean([test / train for train, test in sizes])),
        n_models=n_models,
        n_methods=n_methods,
        n_images=n_images // max(n_classes, 1),
        n_metrics=n_metrics,
        n_repeats=n_repeats,
    )


def wilcoxon_min_p(n: int) -> float:
    """The smallest two-sided p of scipy's Wilcoxon signed-rank test on n nonzero differences:
    all of one sign and no ties (exact: 2 / 2^n; scipy's normal approximation for large n)."""
    if n < 1:
        return math.nan
    return float(sps.wilcoxon(np.arange(1, n + 1, dtype=float)).pvalue)


def t_effect_needed(n: int, alpha: float, test_train_ratio: float | None = None) -> float:
    """The d_z (mean / sd of the n paired differences) at which the two-sided t-test's p is
    `alpha`; with `test_train_ratio`, of the Nadeau-Bengio corrected t."""
    if n < 2:
        return math.nan
    t_crit = float(sps.t.ppf(1 - alpha / 2, n - 1))
    scale = 1 / n if test_train_ratio is None else 1 / n + test_train_ratio
    return t_crit * math.sqrt(scale)


def nb_p_at_plain_alpha(n: int, alpha: float, test_train_ratio: float) -> float:
    """The Nadeau-Bengio p of differences whose plain paired t-test has p = `alpha`: the
    correction divides t by sqrt(1 + n * n_test/n_train)."""
    t_plain = float(sps.t.ppf(1 - alpha / 2, n - 1))
    t_nb = t_plain / math.sqrt(1 + n * test_train_ratio)
    return float(2 * sps.t.sf(t_nb, n - 1))


def smallest_adjusted(p: float, family_size: int, adjust: str) -> float:
    """The smallest adjusted p a family of `family_size` tests can reach when each test's
    smallest raw p is `p`: holm multiplies the smallest p by m, bh keeps it (all equal)."""
    if adjust not in ("holm", "bh"):
        raise ValueError(f"unknown p-value adjustment {adjust!r}; choose from ['holm', 'bh']")
    return min(1.0, p * family_size) if adjust == "holm" else p


def power_rows(d: Design, alpha: float = 0.05, adjust: str = "holm") -> list[dict]:
    """One row per test of the design `d` (see the module's docstring for the formulas)."""
    # the model comparisons pair every repeat's folds; Nadeau-Bengio the first repeat's
    k, models, n, nan = d.n_folds * d.n_repeats, d.n_models, d.n_images, math.nan
    k_nb = d.n_folds
    ratio = d.test_train_ratio
    rows = []

    def add(test, table, unit, size, treatments, family, min_p, needed=nan, possible=nan):
        if test == "nemenyi":  # family-wise already: significant where the CD is reachable
            adjusted, attainable = min_p, bool(possible >= needed)
        else:
            adjusted = nan if math.isnan(min_p) else smallest_adjusted(min_p, family, adjust)
            attainable = bool(adjusted <= alpha)
        values = (d.dataset, test, table, unit, size, treatments, family, min_p, adjusted)
        values += (needed, possible, attainable, alpha, adjust)
        rows.append(dict(zip(POWER_COLUMNS, values, strict=True)))

    if models >= 2:
        pairs = models * (models - 1) // 2
        t_min = 0.0 if k >= 2 else nan  # identical differences: t is infinite
        best = friedman_from_ranks(np.arange(1, models + 1), k) if k >= 2 else {}
        t_needed, nb_needed = t_effect_needed(k, alpha), t_effect_needed(k_nb, alpha, ratio)
        rcv_needed = t_effect_needed(k, alpha, ratio)
        cd = nemenyi_cd(models, k, alpha) if k >= 1 else nan
        p_best = nemenyi_p(1, models, models, k) if k >= 1 else nan
        add("t_folds", "ttest_models", "folds", k, 2, pairs, t_min, t_needed, math.inf)
        t_min_nb = 0.0 if k_nb >= 2 else nan
        add("nadeau_bengio", "ttest_models", "folds", k_nb, 2, pairs, t_min_nb, nb_needed, math.inf)
        add("repeated_cv", "ttest_models", "folds", k, 2, pairs, t_min, rcv_needed, math.inf)
        add("wilcoxon_folds", "ttest_models", "folds", k, 2, pairs, wilcoxon_min_p(k))
        add("friedman", "friedman", "folds", k, models, d.n_metrics, best.get("p", nan))
        add("iman_davenport", "friedman", "folds", k, models, 1, best.get("p_f", nan))
        add("nemenyi", "nemenyi", "folds", k, models, pairs, p_best, cd, float(models - 1))
    if d.n_methods >= 2:
        m = d.n_methods * (d.n_methods - 1) // 2
        t_min, t_needed = (0.0 if n >= 2 else nan), t_effect_needed(n, alpha)
        add("t_images", "ttest_methods", "images", n, 2, m, t_min, t_needed, math.inf)
        add("wilcoxon_images", "ttest_methods", "images", n, 2, m, wilcoxon_min_p(n))
    return rows


def power_table(designs: list[Design], alpha: float = 0.05, adjust: str = "holm") -> pd.DataFrame:
    """The `power` table of every dataset's design; a test whose significance the design
    cannot reach is logged by name."""
    table = pd.DataFrame(
        [row for d in designs for row in power_rows(d, alpha, adjust)], columns=POWER_COLUMNS
    )
    for row in table.itertuples():
        if not row.attainable:
            log.warning(
                "%s: %s (%s, n=%d) cannot reach p <= %g with this design (smallest p %.3g, %.3g "
                "after %s over a family of %d)",
                row.dataset,
                row.test,
                row.table,
                row.n,
                alpha,
                row.min_p,
                row.min_p_adjusted,
                adjust if row.test != "nemenyi" else "its own family-wise p",
                row.family_size,
            )
    if table.empty:
        return empty_because(table, "no test to size: fewer than two models and CAM methods")
    return table


def study_power(
    folds: dict[str, pd.DataFrame],
    manifests: dict[str, pd.DataFrame],
    n_folds: int,
    models: list[str],
    methods: list[str],
    max_images: int | None,
    n_metrics: int,
    alpha: float = 0.05,
    adjust: str = "holm",
    n_repeats: int = 1,
) -> pd.DataFrame:
    """The `power` table of a study: every dataset's design from its folds and manifest (its
    classes), the models compared and the CAM methods compared (none: no method rows)."""
    designs = [
        design_from_folds(
            dataset,
            folds[dataset],
            n_folds,
            manifests[dataset]["label_name"].nunique(),
            len(models),
            len(methods),
            max_images,
            n_metrics,
            n_repeats,
        )
        for dataset in folds
    ]
    return power_table(designs, alpha, adjust)
