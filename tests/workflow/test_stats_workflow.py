"""The statistics of the tiny Snakemake run recompute from the parquet files they came from,
by hand formulas and scipy; the report's tables and figures all exist."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from tests.conftest import TINY, job_counts, snakemake
from xaimed.stats.compare import benjamini_hochberg

pytestmark = pytest.mark.workflow
PAIRED_TEST_TABLES = ["ttest_models", "ttest_methods", "ttest_generalisation"]
PAIRED_TEST_TABLES += ["ttest_localisation", "ttest_faithfulness", "ttest_sanity"]


def test_nadeau_bengio_columns_use_the_real_fold_sizes(tiny_run):
    fold_metrics = pd.read_parquet(tiny_run / "results/stats/fold_metrics.parquet")
    table = pd.read_csv(tiny_run / "results/tables/ttest_models.csv")
    for row in table.itertuples():
        g = fold_metrics[fold_metrics["dataset"] == row.dataset]
        n_test = g.drop_duplicates("fold")["n_images"].to_numpy(dtype=float)
        ratio = np.mean(n_test / (n_test.sum() - n_test))
        assert row.test_train_ratio == pytest.approx(ratio)
        pivot = g.pivot(index="fold", columns="model", values=row.metric)
        d = (pivot[row.model_a] - pivot[row.model_b]).to_numpy()
        k = len(d)
        if d.std(ddof=1) == 0:
            continue
        t_nb = d.mean() / math.sqrt(d.var(ddof=1) * (1 / k + ratio))
        assert row.t_nb == pytest.approx(t_nb)
        assert row.p_nb == pytest.approx(2 * sps.t.sf(abs(t_nb), k - 1))
        assert row.p_nb >= row.p  # the correction only ever widens


def test_friedman_table_recomputes_from_the_fold_metrics(tiny_run):
    fold_metrics = pd.read_parquet(tiny_run / "results/stats/fold_metrics.parquet")
    friedman = pd.read_csv(tiny_run / "results/tables/friedman.csv")
    ranks = pd.read_parquet(tiny_run / "results/stats/ranks.parquet")
    assert len(friedman) == len(TINY["datasets"]) * 2  # two metrics by default
    for row in friedman.itertuples():
        wide = fold_metrics[fold_metrics["dataset"] == row.dataset].pivot(
            index="fold", columns="model", values=row.metric
        )
        r = sps.rankdata(-wide.to_numpy(), axis=1)
        got = ranks[(ranks["dataset"] == row.dataset) & (ranks["metric"] == row.metric)]
        np.testing.assert_allclose(got.set_index("model")["mean_rank"][wide.columns], r.mean(0))
        n, k = r.shape
        assert (row.n_folds, row.n_models) == (n, k)
        # two models: the Nemenyi CD is 1.960 * sqrt(2 * 3 / (6 N)) (Demsar's q for k = 2)
        assert row.cd == pytest.approx(1.960 * math.sqrt(k * (k + 1) / (6 * n)), abs=1e-3)


def test_report_outputs_exist(tiny_run):
    tables = tiny_run / "results" / "tables"
    for name in ("classification", "ttest_models", "ttest_methods", "friedman", "data_summary"):
        assert "<table>" in (tables / f"{name}.html").read_text()
    figures = tiny_run / "results" / "figures"
    for dataset in TINY["datasets"]:
        for kind in ("data", "confusion", "roc", "fold_metrics", "cd", "confidence_increase"):
            assert (figures / f"{kind}_{dataset}.png").stat().st_size > 0
    assert (figures / "xai_timing.png").stat().st_size > 0
    summary = pd.read_csv(tables / "data_summary.csv")
    # the folder dataset: 6 benign and 8 malignant images, each with its mask
    lesions = summary[summary["dataset"] == "lesions"].set_index("class")
    assert lesions["n_images"].to_dict() == {"benign": 6, "malignant": 8}
    assert (lesions["n_masks"] == lesions["n_images"]).all()
    assert (lesions["fold_0"] + lesions["fold_1"] == lesions["n_images"]).all()


def test_stats_adjust_and_alpha_reach_every_paired_test_table(tiny_run, tmp_path):
    """bh and alpha 0.10 in the config reach all six paired-test tables (on a copy of the
    run, so the shared one stays intact)."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    (workdir / "config.yaml").write_text(
        yaml.safe_dump({**TINY, "stats": {"adjust": "bh", "alpha": 0.1}})
    )
    # the six tables as targets: their four rules rerun (params changed), nothing else
    output = snakemake(workdir, *(f"results/tables/{name}.csv" for name in PAIRED_TEST_TABLES))
    rules = {"compare_models", "compare_methods", "quality_tables", "generalisation_tables"}
    assert set(job_counts(output)) - {"total"} == rules
    for name in PAIRED_TEST_TABLES:
        before = pd.read_csv(tiny_run / f"results/tables/{name}.csv")
        after = pd.read_csv(workdir / f"results/tables/{name}.csv")
        assert len(after) and (before["adjust"] == "holm").all(), name
        assert (after["adjust"] == "bh").all(), name
        for _, family in after.groupby("family"):
            np.testing.assert_allclose(family["p_adjusted"], benjamini_hochberg(family["p"]))
        pd.testing.assert_series_equal(after["p"], before["p"])
        # a 90 % interval is narrower than a 95 % one (equal where every difference is equal)
        width = (after["ci_high"] - after["ci_low"]).dropna()
        width_95 = (before["ci_high"] - before["ci_low"])[width.index]
        assert (width <= width_95).all() and (width < width_95).any(), name
