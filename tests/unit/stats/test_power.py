"""The power table: the smallest attainable p per test, checked against scipy, exhaustive
search over every outcome a small design allows, and the project's own tests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from xaimed.config.schema import SCHEMA_PATH, fill_defaults, load_config_file
from xaimed.stats.compare import adjust_p
from xaimed.stats.paired import corrected_ttest, paired_ttest, wilcoxon
from xaimed.stats.power import (
    Design,
    design_from_folds,
    nb_p_at_plain_alpha,
    power_table,
    smallest_adjusted,
    t_effect_needed,
    wilcoxon_min_p,
)
from xaimed.stats.ranks import friedman

REPO = SCHEMA_PATH.parents[2]


def row(table: pd.DataFrame, test: str) -> pd.Series:
    return table.set_index("test").loc[test]


@pytest.mark.parametrize("n", range(1, 11))
def test_wilcoxon_smallest_p_is_two_over_two_to_the_n(n):
    assert wilcoxon_min_p(n) == pytest.approx(2 / 2**n)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_no_sign_pattern_gives_wilcoxon_a_smaller_p(n):
    magnitudes = np.arange(1, n + 1, dtype=float)
    ps = [wilcoxon(magnitudes * s, np.zeros(n))[1] for s in itertools.product([-1, 1], repeat=n)]
    assert min(ps) == pytest.approx(wilcoxon_min_p(n))


@pytest.mark.parametrize(("k", "ratio"), [(2, 1.0), (5, 0.25), (10, 1 / 9)])
def test_effect_needed_puts_the_t_tests_at_alpha(k, ratio):
    # Differences with mean / sd exactly the effect needed: p is alpha, no more, no less.
    rng = np.random.default_rng(k)
    z = rng.normal(size=k)
    z = (z - z.mean()) / z.std(ddof=1)
    for needed, p_of in [
        (t_effect_needed(k, 0.05), lambda d: paired_ttest(d, 0 * d)[2]),
        (t_effect_needed(k, 0.05, ratio), lambda d: corrected_ttest(d, 0 * d, ratio)[1]),
    ]:
        assert p_of(z + needed) == pytest.approx(0.05)
        assert p_of(z + 1.01 * needed) < 0.05 < p_of(z + 0.99 * needed)


def test_the_issue_s_nadeau_bengio_0_087_is_not_a_bound():
    # 0.086 is the corrected p of two folds whose plain t-test sits at 0.05 (n_test/n_train 1)
    d = 1 + np.array([-1.0, 1.0]) / t_effect_needed(2, 0.05) / math.sqrt(2)
    assert paired_ttest(d, 0 * d)[2] == pytest.approx(0.05)
    assert corrected_ttest(d, 0 * d, 1.0)[1] == pytest.approx(nb_p_at_plain_alpha(2, 0.05, 1.0))
    assert nb_p_at_plain_alpha(2, 0.05, 1.0) == pytest.approx(0.0862, abs=1e-4)
    # ...but more consistent folds go lower, to 0 for identical differences.
    assert corrected_ttest(np.array([1.0, 1.001]), np.zeros(2), 1.0)[1] < 0.01
    assert corrected_ttest(np.array([1.0, 1.0]), np.zeros(2), 1.0)[1] == 0.0


@pytest.mark.parametrize(("n", "k"), [(2, 3), (2, 4), (3, 3)])
def test_friedman_smallest_p_over_every_ranking(n, k):
    table = power_table([Design("d", n, 1 / (n - 1), k)])
    orders = list(itertools.permutations(range(k)))
    ps = [
        friedman(np.array(blocks, dtype=float))["p"]
        for blocks in itertools.product(orders, repeat=n)
    ]
    assert row(table, "friedman")["min_p"] == pytest.approx(min(ps))
    assert row(table, "friedman")["min_p"] == pytest.approx(sps.chi2.sf(n * (k - 1), k - 1))


def test_two_folds_cannot_show_a_model_difference_but_five_can():
    demo = power_table([Design("demo", 2, 1.0, 4, 5, 8, 2)])
    assert row(demo, "wilcoxon_folds")["min_p"] == 0.5
    nemenyi = row(demo, "nemenyi")
    assert nemenyi["effect_needed"] == pytest.approx(3.317, abs=1e-3)
    assert nemenyi["effect_possible"] == 3
    assert not nemenyi["attainable"] and nemenyi["min_p"] > 0.05
    assert not row(demo, "friedman")["attainable"]
    # the t-tests can reach any p, but only for differences 9 and 15.6 sd from zero
    assert row(demo, "t_folds")["effect_needed"] == pytest.approx(12.706 / math.sqrt(2), 1e-4)
    assert row(demo, "nadeau_bengio")["effect_needed"] == pytest.approx(12.706 * 1.5**0.5, 1e-4)
    paper = power_table([Design("paper", 5, 0.25, 4, 5, 50, 2)])
    assert row(paper, "nemenyi")["attainable"] and row(paper, "friedman")["attainable"]


@pytest.mark.parametrize("adjust", ["holm", "bh"])
def test_smallest_adjusted_p_is_the_adjustment_of_a_family_at_its_minimum(adjust):
    for m in (1, 3, 6):
        family = np.full(m, 0.0078125)
        assert smallest_adjusted(0.0078125, m, adjust) == pytest.approx(
            adjust_p(family, adjust).min()
        )


def test_design_from_a_folds_table():
    folds = pd.DataFrame(
        {"image_id": range(30), "fold": [0] * 10 + [1] * 20, "test": False, "excluded": False}
    )
    d = design_from_folds("d", folds, 2, n_classes=2, n_models=3, n_methods=4, max_images=8)
    assert d.test_train_ratio == pytest.approx((10 / 20 + 20 / 10) / 2)
    assert d.n_images == (8 + 8) // 2
    # a predefined split: its repeats hold out the same 6 test images, which count once
    folds = pd.DataFrame(
        {"image_id": range(30), "fold": -1, "test": [True] * 6 + [False] * 24, "excluded": False}
    )
    d = design_from_folds("d", folds, 3, n_classes=3, n_models=2, n_methods=2, max_images=None)
    assert (d.n_folds, d.n_images, d.test_train_ratio) == (3, 2, pytest.approx(6 / 24))


def test_a_fold_without_images_is_refused_by_name():
    folds = pd.DataFrame({"image_id": range(4), "fold": 0, "test": False, "excluded": False})
    with pytest.raises(ValueError, match="brain_mri: a fold trains or tests on no image"):
        design_from_folds("brain_mri", folds, 2, 2, 2, 2, None)


def test_unreachable_significance_is_logged_by_dataset_and_test(caplog):
    power_table([Design("skin_lesion", 2, 1.0, 4)])
    assert "skin_lesion: wilcoxon_folds (ttest_models, n=2) cannot reach p <= 0.05" in caplog.text


def test_the_paper_config_reaches_significance_where_its_design_allows():
    config = fill_defaults(load_config_file(REPO / "config/paper.yaml"), SCHEMA_PATH)
    k, r = config["folds"], config["repeats"]
    assert (k, r) == (5, 2)  # README's power paragraph counts these
    # Every paper dataset holds out hundreds of images per class and fold (README); 50 per
    # class over all five folds is far below any of them.
    designs = [
        Design(
            name,
            k,
            1 / (k - 1),
            len(config["models"]),
            len(config["explain"]["methods"]),
            50,
            len(config["stats"]["model_metrics"]),
            n_repeats=r,
        )
        for name in config["datasets"]
    ]
    table = power_table(designs, config["stats"]["alpha"], config["stats"]["adjust"])
    assert table.groupby("test")["attainable"].all().all()
    brain = table[table["dataset"] == "brain_mri"]
    # 10 paired results: Wilcoxon reaches 2/2^10, x 6 pairs (Holm) = 0.0117 (5 folds: 0.0625)
    assert row(brain, "wilcoxon_folds")["min_p"] == 2 / 2**10
    assert row(brain, "wilcoxon_folds")["min_p_adjusted"] == pytest.approx(0.0117, abs=1e-4)
    # the corrected repeated test needs d_z 1.34 where one 5-fold run needs 1.86 (README)
    assert row(brain, "repeated_cv")["n"] == 10 and row(brain, "nadeau_bengio")["n"] == 5
    assert row(brain, "repeated_cv")["effect_needed"] == pytest.approx(1.34, abs=0.005)
    assert row(brain, "nadeau_bengio")["effect_needed"] == pytest.approx(1.86, abs=0.005)


def test_a_design_with_nothing_to_compare_gives_an_empty_table_that_says_why():
    table = power_table([Design("d", 2, 1.0, n_models=1, n_methods=1, n_images=8)])
    assert table.empty and "fewer than two models and CAM methods" in table.attrs["empty"]


def test_repeats_multiply_the_paired_folds_but_not_nadeau_bengio_s():
    table = power_table([Design("d", 5, 0.25, 4, n_repeats=3)])
    n = table.set_index("test")["n"]
    for test in ("t_folds", "repeated_cv", "wilcoxon_folds", "friedman", "nemenyi"):
        assert n[test] == 15, test
    assert n["nadeau_bengio"] == 5
    # Bouckaert & Frank's d_z at p = alpha: t_{0.975, 14} * sqrt(1/15 + 1/4)
    needed = sps.t.ppf(0.975, 14) * math.sqrt(1 / 15 + 0.25)
    assert row(table, "repeated_cv")["effect_needed"] == pytest.approx(needed)
    assert row(table, "wilcoxon_folds")["min_p"] == pytest.approx(2 / 2**15)
    # one repeat: the repeated test is Nadeau-Bengio's
    once = power_table([Design("d", 5, 0.25, 4)]).set_index("test")
    assert once.loc["repeated_cv"].equals(once.loc["nadeau_bengio"].rename("repeated_cv"))


def test_design_from_a_repeated_folds_table():
    folds = pd.DataFrame(
        {
            "image_id": range(30),
            "fold": [0] * 10 + [1] * 20,
            "test": False,
            "excluded": False,
            "fold_repeat1": [0] * 15 + [1] * 15,
        }
    )
    d = design_from_folds("d", folds, 2, 2, 3, 4, max_images=None, n_repeats=2)
    assert (d.n_folds, d.n_repeats) == (2, 2)
    assert d.test_train_ratio == pytest.approx((10 / 20 + 20 / 10 + 15 / 15 + 15 / 15) / 4)
    # each image is explained once per repeat and counted once
    assert d.n_images == 30 // 2


@pytest.mark.parametrize(("repeats", "needed"), [(1, 1.86), (2, 1.34), (5, 1.11), (10, 1.04)])
def test_repeats_of_five_folds_lower_the_effect_needed_as_methods_md_says(repeats, needed):
    # n_test/n_train 1/4 stays whatever the repeats: the gain flattens out
    table = power_table([Design("d", 5, 0.25, 2, n_repeats=repeats)])
    assert row(table, "repeated_cv")["effect_needed"] == pytest.approx(needed, abs=0.005)
