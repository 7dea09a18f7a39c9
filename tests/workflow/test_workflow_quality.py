"""Explanation quality outputs of the real tiny Snakemake run (tests/conftest.py: tiny_run)."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import TINY, job_counts, snakemake
from xaimed.explain.metrics.localisation import localisation_scores
from xaimed.report.tables import read_parquets

pytestmark = pytest.mark.workflow


def explain_files(run, name):
    return sorted((run / "results" / "explain").glob(f"*/*/fold*/*/{name}"))


def test_localisation_table_recomputes_from_the_per_image_scores(tiny_run):
    scores = read_parquets(
        p for p in explain_files(tiny_run, "scores.parquet") if p.parent.name != "baselines"
    )
    baselines = read_parquets(
        p for p in explain_files(tiny_run, "scores.parquet") if p.parent.name == "baselines"
    )
    table = pd.read_csv(tiny_run / "results/tables/localisation.csv")
    # both tiny datasets carry masks, so every method and explained model has rows
    assert set(table["method"]) == set(TINY["explain"]["methods"])
    assert set(table["dataset"]) == set(TINY["datasets"])
    assert set(table["metric"]) == {"pointing_game", "energy_pointing_game", "iou_top_k"}
    for row in table.itertuples():
        images = scores[
            (scores["dataset"] == row.dataset)
            & (scores["model"] == row.model)
            & (scores["method"] == row.method)
            & (scores["pred_name"] == row._4)  # class
        ].dropna(subset=[row.metric])
        assert row.n_images == len(images)
        assert row.mean == pytest.approx(images[row.metric].mean())
        same = baselines.merge(images[["dataset", "model", "fold", "image_id"]])
        random = same[same["baseline"] == "random"][row.metric]
        assert row.baseline_random == pytest.approx(random.mean())
        smooth = same[same["baseline"] == "smooth_random"][row.metric]
        assert row.baseline_smooth_random == pytest.approx(smooth.mean())
        mask = same[same["baseline"] == "mask"][row.metric]
        assert row.baseline_mask == pytest.approx(mask.mean())
    assert (table.loc[table["metric"] == "pointing_game", "baseline_mask"] == 1).all()


def test_stored_pointing_game_recomputes_from_cams_and_masks(tiny_run):
    explain = tiny_run / "results/explain/lesions/resnet18/fold0/gradcampp"
    scores = pd.read_parquet(explain / "scores.parquet")
    manifest = pd.read_parquet(tiny_run / "results/data/lesions/manifest.parquet")
    masks = np.load(tiny_run / "results/data/lesions/masks.npy")
    with np.load(explain / "cams.npz") as saved:
        assert list(saved["image_id"]) == list(scores["image_id"])
        cams = saved["cams"]
    rows = manifest.reset_index().set_index("image_id").loc[scores["image_id"], "index"]
    lesions = masks[rows.to_numpy()]
    assert lesions.reshape(len(rows), -1).any(axis=1).all()  # every folder image has a mask
    expected = localisation_scores(cams, lesions, tolerance=2)  # the schema's default
    # the scores job scored exactly the stored (float32) maps
    np.testing.assert_array_equal(scores["pointing_game"], expected["pointing_game"])
    np.testing.assert_array_equal(scores["energy_pointing_game"], expected["energy_pointing_game"])


def test_sanity_and_faithfulness_tables(tiny_run):
    sanity = pd.read_csv(tiny_run / "results/tables/sanity.csv")
    assert set(sanity["metric"]) == {"spearman", "ssim"}
    # the schema's default stages: the classifier, then every block
    assert set(sanity.loc[sanity["stage"] == 1, "randomised"]) == {"fc", "classifier.1"}
    assert set(sanity.loc[sanity["stage"] > 1, "randomised"]) == {"conv1", "features.0"}
    assert (sanity["passes"] == (sanity["mean"] < 0.5)).all()
    # the schema's default: 4 images per explain job, pooled over the folds
    assert sanity["n_images"].max() <= 4 * TINY["folds"]
    faithfulness = pd.read_csv(tiny_run / "results/tables/faithfulness.csv")
    assert set(faithfulness["metric"]) == {"deletion_auc", "insertion_auc"}
    assert faithfulness["mean"].between(0, 1).all()
    assert (
        faithfulness[["baseline_random", "baseline_smooth_random", "baseline_centre"]]
        .notna()
        .all()
        .all()
    )
    for name in ("ttest_localisation", "ttest_faithfulness", "ttest_sanity"):
        tests = pd.read_csv(tiny_run / f"results/tables/{name}.csv")
        assert {"metric", "method_a", "method_b", "p_adjusted"} <= set(tests.columns), name
        assert set(tests["method_a"]) | set(tests["method_b"]) == set(TINY["explain"]["methods"])
    assert "stage" in pd.read_csv(tiny_run / "results/tables/ttest_sanity.csv").columns


@pytest.fixture(scope="module")
def edited_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run whose config the dry runs below edit: the shared run stays intact
    (another config file into its results/ is refused, so the study's own is edited)."""
    workdir = tmp_path_factory.mktemp("edited") / "run"
    shutil.copytree(tiny_run, workdir)
    return workdir


def _dry_run_counts(run, change):
    """Jobs a plain run would do after ``change`` to the tiny run's config."""
    config = copy.deepcopy(TINY)
    change(config)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(run, "--dry-run")
    counts = job_counts(output)
    counts.pop("total", None)
    return counts, output


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(quality={"tolerance": 5}),
        lambda c: c.update(quality={"sanity": {"images": 1}}),
        lambda c: c["explain"].update(road_percentiles=[50]),
    ],
    ids=["quality.tolerance", "quality.sanity.images", "explain.road_percentiles"],
)
def test_a_scoring_setting_reruns_the_scores_never_the_cams(edited_run, change):
    counts, output = _dry_run_counts(edited_run, change)
    per_fold = len(TINY["datasets"]) * len(TINY["explain"]["models"]) * TINY["folds"]
    assert counts["scores"] == per_fold and "cams" not in counts, counts
    assert "train" not in counts and "generalise" not in counts
    assert "Params have changed since last execution" in output


def test_a_cam_setting_reruns_the_cams(edited_run):
    n_folds, n_data = TINY["folds"], len(TINY["datasets"])
    counts, _ = _dry_run_counts(edited_run, lambda c: c["explain"].update(methods=["gradcampp"]))
    per_fold = n_data * len(TINY["explain"]["models"]) * n_folds
    assert counts["cams"] == counts["scores"] == per_fold and "train" not in counts
    # a target layer is a CAM setting of one model: only its cams and scores rerun
    counts, _ = _dry_run_counts(
        edited_run, lambda c: c["explain"].update(target_layers={"resnet18": "layer3"})
    )
    assert counts["cams"] == counts["scores"] == n_data * n_folds, counts
