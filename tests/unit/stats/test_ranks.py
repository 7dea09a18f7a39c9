"""Tests for xaimed.stats.ranks: Friedman and Nemenyi against Demsar (2006), scipy and hand
counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from xaimed.stats.ranks import (
    average_ranks,
    friedman,
    friedman_from_ranks,
    nemenyi_cd,
    nemenyi_p,
    nemenyi_q,
    rank_models,
)

# Demsar (2006), Table 5: critical values q_alpha of the Nemenyi test for k = 2..10.
DEMSAR_Q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
DEMSAR_Q10 = [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920]


@pytest.mark.parametrize("k", range(2, 11))
def test_nemenyi_q_matches_demsars_table(k):
    assert nemenyi_q(k, 0.05) == pytest.approx(DEMSAR_Q05[k - 2], abs=1e-3)
    assert nemenyi_q(k, 0.10) == pytest.approx(DEMSAR_Q10[k - 2], abs=1e-3)


def test_demsars_worked_example():
    # Demsar (2006), section 3.2.4: four C4.5 variants on 14 data sets, mean ranks
    # 3.143, 2.000, 2.893, 1.964 -> chi2_F = 9.28, F_F = 3.69, CD = 1.25 (0.05), 1.12 (0.10)
    res = friedman_from_ranks([3.143, 2.000, 2.893, 1.964], 14)
    assert res["chi2"] == pytest.approx(9.28, abs=0.005)
    assert res["f"] == pytest.approx(3.69, abs=0.005)
    # F(3, 39) critical value at 0.05 is 2.85 (Demsar): the null hypothesis is rejected
    assert res["p_f"] < 0.05 and sps.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.005)
    assert nemenyi_cd(4, 14, 0.05) == pytest.approx(1.25, abs=0.005)
    assert nemenyi_cd(4, 14, 0.10) == pytest.approx(1.12, abs=0.005)
    # a rank difference of exactly CD has p = alpha
    assert nemenyi_p(1.0, 1.0 + nemenyi_cd(4, 14), 4, 14) == pytest.approx(0.05, abs=1e-6)


def test_small_friedman_example_by_hand():
    # 3 folds x 3 models (higher is better). Ranks per fold: (3, 2, 1), (2, 3, 1), (3, 2, 1)
    # -> mean ranks 8/3, 7/3, 1; chi2 = 12*3/(3*4) * (64/9 + 49/9 + 1 - 12) = 14/3,
    # p = exp(-chi2/2) (chi2 with 2 df); F = 2 * 14/3 / (6 - 14/3) = 7, p_F = (1 + 2*7/4)^-2
    table = [[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [1.0, 2.0, 3.0]]
    np.testing.assert_allclose(average_ranks(table), [8 / 3, 7 / 3, 1])
    res = friedman(table)
    assert res["chi2"] == pytest.approx(14 / 3)
    assert res["p"] == pytest.approx(math.exp(-7 / 3))
    assert res["f"] == pytest.approx(7.0)
    assert res["p_f"] == pytest.approx(4.5**-2)
    ref = sps.friedmanchisquare(*np.transpose(table))
    assert (res["chi2"], res["p"]) == pytest.approx((ref.statistic, ref.pvalue))


def test_friedman_with_ties_matches_scipy():
    rng = np.random.default_rng(0)
    for k in (3, 4, 6):
        table = rng.integers(0, 4, size=(8, k)).astype(float)  # many ties
        res = friedman(table)
        ref = sps.friedmanchisquare(*table.T)
        assert (res["chi2"], res["p"]) == pytest.approx((ref.statistic, ref.pvalue))


def test_friedman_degenerate_cases():
    # two models: scipy refuses, ours is defined (a sign test on the folds)
    res = friedman([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert res["chi2"] == pytest.approx(3.0) and res["f"] == math.inf and res["p_f"] == 0.0
    assert friedman(np.ones((3, 3)))["p"] == 1.0  # all tied
    assert math.isnan(friedman([[1.0, 2.0, 3.0]])["p"])  # one fold


def _fold_metrics() -> pd.DataFrame:
    # model c best in every fold, then b, then a; d2 has one model fold missing
    rows = []
    for fold in range(4):
        for model, acc in (("a", 0.6), ("b", 0.7), ("c", 0.8)):
            rows.append(
                {"dataset": "d1", "model": model, "fold": fold, "accuracy": acc + 0.01 * fold}
            )
    for fold in range(3):
        for model, acc in (("x", 0.5 + 0.1 * fold), ("y", 0.6), ("z", 0.55)):
            if not (model == "z" and fold == 2):
                rows.append({"dataset": "d2", "model": model, "fold": fold, "accuracy": acc})
    return pd.DataFrame(rows)


def test_rank_models_tables():
    res = rank_models(_fold_metrics(), metrics=["accuracy"], adjust="holm")
    friedman_table = res["friedman"].set_index("dataset")
    d1 = friedman_table.loc["d1"]
    # consistent order in 4 folds: chi2 = 12*4/(3*4) * (1 + 4 + 9 - 12) = 8, p = exp(-4)
    assert d1["n_folds"] == 4 and d1["n_models"] == 3
    assert d1["chi2"] == pytest.approx(8.0) and d1["p"] == pytest.approx(math.exp(-4))
    assert d1["cd"] == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=1e-3)
    assert d1["family"] == "d1" and d1["p_adjusted"] == pytest.approx(d1["p"])
    # d2: only the two folds where every model has a value are blocks
    assert friedman_table.loc["d2", "n_folds"] == 2

    ranks = res["ranks"].set_index(["dataset", "model"])["mean_rank"]
    assert ranks[("d1", "c")] == 1 and ranks[("d1", "a")] == 3
    nemenyi = res["nemenyi"].set_index(["dataset", "model_a", "model_b"])
    assert nemenyi.loc[("d1", "a", "c"), "rank_diff"] == 2
    assert bool(nemenyi.loc[("d1", "a", "c"), "significant"])  # 2 > CD 1.66
    assert not bool(nemenyi.loc[("d1", "a", "b"), "significant"])  # 1 < CD
    p = nemenyi["p_nemenyi"]
    assert p[("d1", "a", "c")] < 0.05 < p[("d1", "a", "b")]
