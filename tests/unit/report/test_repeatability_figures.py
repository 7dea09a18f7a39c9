"""xaimed.report.repeatability_figures on hand-made pairs of maps: what it draws is each
method's per-image agreement, the panels stay readable, and no repeats are said, not hidden."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests import readable
from tests.readable import clipped, covering
from xaimed.report.repeatability_figures import repeatability_figure
from xaimed.stats.repeatability import NO_REPEATS, PAIR_COLUMNS

saved_figures = readable.saved_figures  # the fixture, for this module


def _pairs() -> pd.DataFrame:
    """Two models of one dataset (and one of another), two methods and the two baselines on
    three images, two pairs of models each."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset, model in (("toy", "resnet50"), ("toy", "efficientnet_b0"), ("other", "resnet50")):
        for method, kind, level in (
            ("gradcampp", "method", 0.8),
            ("eigengradcam_signed_long_name", "method", 0.3),
            ("random", "baseline", 0.0),
            ("smooth_random", "baseline", 0.1),
        ):
            for image in ("a", "b", "c"):
                for fold_b in (1, 2):
                    value = level + rng.normal(0, 0.05)
                    rows.append(
                        dict(
                            dataset=dataset,
                            model=model,
                            method=method,
                            kind=kind,
                            image_id=image,
                            fold_a=0,
                            fold_b=fold_b,
                            pred_a=0,
                            pred_b=0,
                            same_class=True,
                            constant=False,
                            spearman=value,
                            ssim=value,
                            iou_top_k=value,
                            top_k=10.0,
                        )
                    )
    return pd.DataFrame(rows)[PAIR_COLUMNS]


def test_the_boxes_are_each_images_mean_agreement(tmp_path, saved_figures):
    pairs = _pairs()
    drawn = repeatability_figure(pairs, "toy", tmp_path / "toy.png")
    assert set(drawn["model"]) == {"resnet50", "efficientnet_b0"}  # not the other dataset's
    mine = pairs[(pairs["dataset"] == "toy") & (pairs["model"] == "resnet50")]
    per_image = mine[mine["method"] == "gradcampp"].groupby("image_id")["ssim"].mean()
    row = drawn[
        (drawn["model"] == "resnet50") & (drawn["metric"] == "ssim") & (drawn["map"] == "gradcampp")
    ].iloc[0]
    assert row["n_images"] == 3
    assert np.isclose(row["median"], per_image.median())
    (fig,) = saved_figures
    assert len(fig.axes) == 2 * 3
    assert clipped(fig) == []
    assert covering(fig) == []


def test_without_repeats_the_figure_says_so(tmp_path, saved_figures, caplog):
    empty = pd.DataFrame(columns=PAIR_COLUMNS)
    with caplog.at_level("WARNING"):
        drawn = repeatability_figure(empty, "toy", tmp_path / "toy.png")
    assert drawn.empty
    assert f"toy: {NO_REPEATS}" in caplog.text
    (fig,) = saved_figures
    text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts).replace("\n", " ")
    assert NO_REPEATS in text
    assert clipped(fig) == []


def test_pairs_that_all_differ_in_class_are_said_in_the_panels(tmp_path, saved_figures, caplog):
    pairs = _pairs().assign(pred_b=1, same_class=False)
    drawn = repeatability_figure(pairs, "toy", tmp_path / "toy.png")
    assert drawn.empty
    (fig,) = saved_figures
    assert len(fig.axes) == 2 * 3
    for ax in fig.axes:
        assert "no pair of maps counts" in " ".join(t.get_text() for t in ax.texts)
    assert NO_REPEATS not in caplog.text
    assert clipped(fig) == []
