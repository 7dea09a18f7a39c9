"""Explanation quality outputs of the real tiny Snakemake run (tests/conftest.py: tiny_run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY
from xaimed.localisation import localisation_scores
from xaimed.tables import read_parquets

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
        cams = saved["cams"].astype(np.float32)
    rows = manifest.reset_index().set_index("image_id").loc[scores["image_id"], "index"]
    lesions = masks[rows.to_numpy()]
    assert lesions.reshape(len(rows), -1).any(axis=1).all()  # every folder image has a mask
    expected = localisation_scores(cams, lesions, tolerance=2)  # the schema's default
    # float16 storage can move a near-tied maximum: allow one image in the fold to differ
    assert (expected["pointing_game"] == scores["pointing_game"]).sum() >= len(scores) - 1
    np.testing.assert_allclose(
        scores["energy_pointing_game"], expected["energy_pointing_game"], atol=2e-3
    )


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
    assert faithfulness[["baseline_random", "baseline_centre"]].notna().all().all()
    for name in ("ttest_localisation", "ttest_faithfulness", "ttest_sanity"):
        tests = pd.read_csv(tiny_run / f"results/tables/{name}.csv")
        assert {"metric", "method_a", "method_b", "p_adjusted"} <= set(tests.columns), name
        assert set(tests["method_a"]) | set(tests["method_b"]) == set(TINY["explain"]["methods"])
    assert "stage" in pd.read_csv(tiny_run / "results/tables/ttest_sanity.csv").columns
