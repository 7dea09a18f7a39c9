"""`repeats: 2` through the real DAG: two folds trained twice per model, the second time on a
reshuffled fold assignment, and the model t-test table's corrected repeated k-fold t-test over
the four results, recomputed here by hand from the fold metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from tests.conftest import job_counts, snakemake

pytestmark = pytest.mark.workflow

REPEATED = {
    "seed": 0,
    "folds": 2,
    "repeats": 2,
    "image_size": 48,
    "datasets": {"brain_mri": {"phantom": "brain_mri", "n_per_class": 6, "phantom_size": 64}},
    # two small models: a model comparison needs a pair
    "models": ["resnet18", "mobilenet_v3_small"],
    "training": {"epochs": 1, "batch_size": 8},
    "explain": {"models": []},
    "shift": {
        "models": ["resnet18"],
        "corruptions": ["blur"],
        "severities": [5],
        "max_images": None,
        "cam_methods": [],
    },
}
# What the test needs of the DAG: the stages up to the model comparisons, not every figure.
TARGETS = [
    f"results/tables/{name}.csv"
    for name in ("ttest_models", "power", "data_summary", "friedman", "ttest_generalisation")
]


@pytest.fixture(scope="module")
def repeated_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("repeated")
    (workdir / "config.yaml").write_text(yaml.safe_dump(REPEATED))
    planned = job_counts(snakemake(workdir, "--dry-run", *TARGETS))
    snakemake(workdir, *TARGETS)
    return workdir, planned


def test_each_fold_is_trained_once_per_repeat_on_its_own_assignment(repeated_run):
    workdir, planned = repeated_run
    # 2 folds x 2 repeats per model; generalise follows every training of resnet18
    assert planned["train"] == 2 * 4 and planned["generalise"] == 4
    folds = pd.read_parquet(workdir / "results/data/brain_mri/folds.parquet")
    assert list(folds.columns) == ["image_id", "fold", "test", "excluded", "fold_repeat1"]
    assert not folds["fold"].equals(folds["fold_repeat1"])  # reshuffled
    log = (workdir / "logs/folds/brain_mri.log").read_text()
    assert "repeat 1: folds reshuffled with random state 1000" in log
    for fold in range(4):
        column = "fold" if fold < 2 else "fold_repeat1"
        predictions = pd.read_parquet(
            workdir / f"results/train/brain_mri/resnet18/fold{fold}/predictions.parquet"
        )
        # fold f holds out fold f % 2 of repeat f // 2's assignment
        held_out = folds.loc[folds[column] == fold % 2, "image_id"]
        assert sorted(predictions["image_id"]) == sorted(held_out)
        assert (predictions["fold"] == fold).all()
    summary = pd.read_csv(workdir / "results/tables/data_summary.csv")
    per_repeat = summary[["fold_0", "fold_1"]].sum(axis=1)
    assert (per_repeat == summary[["fold_2", "fold_3"]].sum(axis=1)).all()
    assert (per_repeat == summary["n_images"]).all()


def test_models_are_compared_with_the_corrected_repeated_test_over_four_results(repeated_run):
    workdir, _ = repeated_run
    fold_metrics = pd.read_parquet(workdir / "results/stats/fold_metrics.parquet")
    assert fold_metrics.set_index("fold")["repeat"].to_dict() == {0: 0, 1: 0, 2: 1, 3: 1}
    table = pd.read_csv(workdir / "results/tables/ttest_models.csv")
    assert len(table) == 2  # one pair of models, two metrics
    for row in table.itertuples():
        assert (row.n, row.repeats) == (4, 2)
        wide = fold_metrics.pivot(index="fold", columns="model", values=row.metric)
        d = (wide[row.model_a] - wide[row.model_b]).to_numpy()
        n_test = fold_metrics.drop_duplicates("fold").set_index("fold")["n_images"]
        # n_test / n_train within each repeat: the other fold of the same repeat
        ratio = np.mean([n_test[f] / n_test[f ^ 1] for f in range(4)])
        assert row.test_train_ratio == pytest.approx(ratio)
        if d.std() == 0:
            continue  # identical differences: t is infinite (tested in the unit tests)
        t_rcv = d.mean() / math.sqrt((1 / 4 + ratio) * d.var(ddof=1))
        assert row.t_rcv == pytest.approx(t_rcv)
        assert row.p_rcv == pytest.approx(2 * sps.t.sf(abs(t_rcv), 3))
        if d[:2].std() > 0:  # Nadeau-Bengio: the first repeat's two folds only
            t_nb = d[:2].mean() / math.sqrt((1 / 2 + ratio) * d[:2].var(ddof=1))
            assert row.t_nb == pytest.approx(t_nb)
    friedman = pd.read_csv(workdir / "results/tables/friedman.csv")
    assert (friedman["n_folds"] == 4).all()  # every repeat's folds are blocks
    power = pd.read_csv(workdir / "results/tables/power.csv").set_index("test")
    assert power.loc["repeated_cv", "n"] == 4 and power.loc["nadeau_bengio", "n"] == 2
    shifts = pd.read_csv(workdir / "results/tables/ttest_generalisation.csv")
    assert (shifts["n"] == 4).all() and (shifts["repeats"] == 2).all()


def test_the_repeatability_config_explains_every_image_twice_in_its_dry_run(tmp_path):
    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "config" / "repeatability.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(tmp_path, "--dry-run"))
    runs = config["folds"] * config["repeats"]
    assert counts["train"] == counts["cams"] == counts["scores"] == runs
    assert config["explain"]["max_images"] is None  # else repeats need not share an image
    assert counts["repeatability"] == 1 and counts["repeatability_figure"] == 1
