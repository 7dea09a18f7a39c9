"""xaimed.stats.quality: tables with baselines, and paired comparisons, on hand-made scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaimed.stats.compare import compare_methods
from xaimed.stats.quality import (
    FAITHFULNESS_METRICS,
    LOCALISATION_METRICS,
    compare_methods_on,
    faithfulness_table,
    localisation_table,
)


@pytest.fixture
def scores():
    """Two methods on three images of one class (image c has no lesion), one on two folds."""
    rows = []
    values = {
        "gradcam": {"a": 1.0, "b": 0.0, "c": np.nan},
        "eigengradcam_signed": {"a": 1.0, "b": 1.0, "c": np.nan},
    }
    for method, by_image in values.items():
        for fold, image in ((0, "a"), (0, "b"), (1, "c")):
            pg = by_image[image]
            rows.append(
                {
                    "dataset": "toy",
                    "model": "resnet18",
                    "fold": fold,
                    "method": method,
                    "image_id": image,
                    "pred_name": "lesion",
                    "pointing_game": pg,
                    "energy_pointing_game": pg / 2 if pg == pg else np.nan,
                    "iou_top_k": 0.25,
                    "deletion_auc": {"a": 0.1, "b": 0.3, "c": 0.5}[image],
                    "insertion_auc": 0.9 if method == "gradcam" else 0.7,
                    "sign_flipped": {"a": 1.0, "b": 0.0, "c": 1.0}[image]
                    if method.endswith("_signed")
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def baselines(scores):
    first = scores[scores["method"] == "gradcam"].drop(columns=["method", "sign_flipped"])
    frames = []
    for name, value in (("random", 0.05), ("smooth_random", 0.1), ("centre", 0.2), ("mask", 1.0)):
        frame = first.assign(baseline=name)
        for metric in LOCALISATION_METRICS + FAITHFULNESS_METRICS:
            frame[metric] = value
        if name == "mask":  # no lesion, no mask baseline
            frame.loc[frame["image_id"] == "c", LOCALISATION_METRICS + FAITHFULNESS_METRICS] = (
                np.nan
            )
        else:
            frame.loc[frame["image_id"] == "c", LOCALISATION_METRICS] = np.nan
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_localisation_table(scores, baselines):
    table = localisation_table(scores, baselines)
    assert list(table.columns) == [
        "dataset",
        "model",
        "method",
        "class",
        "metric",
        "n_images",
        "mean",
        "sd",
        "baseline_random",
        "baseline_smooth_random",
        "baseline_centre",
        "baseline_mask",
        "sign_flipped_fraction",
        "n_constant_maps",
    ]
    row = table.set_index(["method", "metric"]).loc[("gradcam", "pointing_game")]
    assert row["n_images"] == 2  # image c has no lesion
    assert row["mean"] == 0.5 and row["sd"] == pytest.approx(np.std([1, 0], ddof=1))
    baselines = ["baseline_random", "baseline_smooth_random", "baseline_centre", "baseline_mask"]
    assert tuple(row[baselines]) == pytest.approx((0.05, 0.1, 0.2, 1.0))
    assert np.isnan(row["sign_flipped_fraction"])
    signed = table.set_index(["method", "metric"]).loc[("eigengradcam_signed", "pointing_game")]
    assert signed["mean"] == 1 and signed["sign_flipped_fraction"] == 0.5  # over a and b
    assert list(table["metric"][:3]) == LOCALISATION_METRICS  # in the documented order


def test_faithfulness_table(scores, baselines):
    table = faithfulness_table(scores, baselines).set_index(["method", "metric"])
    row = table.loc[("gradcam", "deletion_auc")]
    assert row["n_images"] == 3 and row["mean"] == pytest.approx(0.3)
    # the mask baseline only where there is a lesion; the others on every image
    assert row["baseline_mask"] == 1.0 and row["baseline_random"] == pytest.approx(0.05)
    assert row["baseline_smooth_random"] == pytest.approx(0.1)  # the blur-bias control
    assert table.loc[("eigengradcam_signed", "insertion_auc"), "mean"] == pytest.approx(0.7)


def test_compare_methods_on_each_metric(scores):
    tests = compare_methods_on(scores, ["pointing_game", "deletion_auc"])
    assert list(tests["metric"]) == ["pointing_game", "deletion_auc"]
    assert "metric" in tests.columns[:5]
    for metric in ("pointing_game", "deletion_auc"):
        got = tests[tests["metric"] == metric].drop(columns=["metric", "family"])
        expected = compare_methods(scores.dropna(subset=[metric]), value=metric)
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True), expected.drop(columns="family").reset_index(drop=True)
        )
    assert tests["family"].str.endswith("/pointing_game").sum() == 1
    # pointing game: differences (0, -1) on a, b -> n = 2; c has no lesion
    assert tests.loc[tests["metric"] == "pointing_game", "n"].item() == 2
