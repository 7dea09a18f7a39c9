"""The smallest configs a user may write run through the whole DAG (the real Snakemake, every
default target), and a finished run's config re-saved in another key order reruns nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import SMALLEST, job_counts, snakemake

pytestmark = pytest.mark.workflow

COMPARISONS = {
    "ttest_models": "logs/stats/compare_models.log",
    "nemenyi": "logs/stats/rank_models.log",
    "ttest_methods": "logs/stats/compare_methods.log",
    "ttest_localisation": "logs/report/quality_tables.log",
    "ttest_faithfulness": "logs/report/quality_tables.log",
    "ttest_sanity": "logs/report/quality_tables.log",
}


@pytest.fixture(scope="module")
def smallest_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("smallest")
    (workdir / "config.yaml").write_text(yaml.safe_dump(SMALLEST, sort_keys=False))
    snakemake(workdir)
    return workdir


def test_one_model_method_and_class_run_every_default_target(smallest_run):
    assert "Nothing to be done" in snakemake(smallest_run, "--dry-run")
    for table, log in COMPARISONS.items():
        csv = smallest_run / f"results/tables/{table}.csv"
        assert pd.read_csv(csv).empty, table
        assert "(no pairs to compare: fewer than two " in csv.with_suffix(".md").read_text()
        assert f"{table}.csv is empty: no pairs to compare" in (smallest_run / log).read_text()
    html = (smallest_run / "results/tables/ttest_methods.html").read_text()
    assert "<p>(no pairs to compare: fewer than two methods" in html
    for fold in (0, 1):
        scores = pd.read_parquet(
            smallest_run / f"results/explain/brain_mri/resnet18/fold{fold}/gradcampp/scores.parquet"
        )
        assert len(scores) == 1  # one explained image: one class
    # k-fold: each image is explained once, so no agreement across models; said, not hidden
    repeatability = smallest_run / "results/tables/repeatability.csv"
    assert pd.read_csv(repeatability).empty
    for twin in (".md", ".html"):
        assert (
            "no image was explained by two or more models"
            in repeatability.with_suffix(twin).read_text()
        )
    log = (smallest_run / "logs/stats/repeatability.log").read_text()
    assert "brain_mri/resnet18: no image was explained by two or more models" in log
    figures = ["cams", "localisation", "confidence_increase", "generalisation", "cd"]
    figures.append("repeatability")
    for figure in figures:
        assert (smallest_run / f"results/figures/{figure}_brain_mri.png").stat().st_size > 0


def _reversed(node):
    """The same config with every mapping's keys in reverse order."""
    if isinstance(node, dict):
        return {key: _reversed(node[key]) for key in reversed(list(node))}
    return node


def test_a_reordered_or_resaved_config_reruns_nothing_and_a_real_change_its_jobs(
    smallest_run, tmp_path
):
    workdir = tmp_path / "run"
    shutil.copytree(smallest_run, workdir)
    config = _reversed(SMALLEST)
    config["training"].update(optimizer="adamw", lr=0.001)  # defaults, written out
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert "Nothing to be done" in snakemake(workdir, "--dry-run")
    (workdir / "config.yaml").write_text(yaml.safe_dump(SMALLEST, sort_keys=True))
    assert "Nothing to be done" in snakemake(workdir, "--dry-run")

    config["training"]["lr"] = 0.01
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    counts = job_counts(snakemake(workdir, "--dry-run"))
    assert counts["train"] == 2 and counts["cams"] == counts["scores"] == counts["generalise"] == 2
    assert not {"phantom", "ingest", "folds", "preprocess", "data_summary"} & set(counts)
