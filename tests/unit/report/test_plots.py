"""Tests for xaimed.report: the numbers each figure draws, checked against sklearn, scipy and
hand counts; every figure is a readable PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image
from scipy import stats as sps
from sklearn import metrics as skm

from tests import readable
from tests.readable import clipped, covering, error_bar_span
from xaimed.report import explain_figures, stats_figures, train_figures
from xaimed.stats.ranks import rank_models

saved_figures = readable.saved_figures  # the fixture, for this module

DEMSAR = {"C4.5": 3.143, "C4.5+m": 2.000, "C4.5+cf": 2.893, "C4.5+m+cf": 1.964}


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_cd_groups_of_demsars_example():
    # CD 1.25 (alpha 0.05): the mean ranks span 1.18 < CD, so no pair differs: one group.
    fig = Figure()
    assert stats_figures.cd_axes(fig.subplots(), DEMSAR, 1.25, "0.05") == [
        ["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]
    ]
    # CD 1.12 (alpha 0.10): C4.5+m+cf and C4.5+m are better than C4.5 (1.18 and 1.14 > CD);
    # the groups without a significant difference are {m+cf, m, cf} and {cf, C4.5}.
    assert stats_figures.cd_axes(Figure().subplots(), DEMSAR, 1.12, "0.10") == [
        ["C4.5+m+cf", "C4.5+m", "C4.5+cf"],
        ["C4.5+cf", "C4.5"],
    ]
    # a CD smaller than every gap: no group
    assert stats_figures.cd_axes(Figure().subplots(), DEMSAR, 0.01, "tiny") == []


def _predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    rows = []
    for model in ("m1", "m2"):
        for fold in (0, 1):
            for i in range(12):
                label = i % 3
                logits = rng.normal(size=3) + 2.0 * (np.arange(3) == label)
                prob = np.exp(logits) / np.exp(logits).sum()
                pred = int(prob.argmax())
                rows.append(
                    {
                        "dataset": "d",
                        "model": model,
                        "fold": fold,
                        "image_id": f"{fold}_{i}",
                        "label": label,
                        "label_name": names[label],
                        "pred": pred,
                        "pred_name": names[pred],
                        **{f"prob_{n}": prob[k] for k, n in enumerate(names)},
                    }
                )
    return pd.DataFrame(rows)


def test_confusion_matrices_and_roc_curves(tmp_path):
    preds = _predictions()
    counts = train_figures.confusion_matrices(preds, tmp_path / "confusion.png", "d")
    m1 = preds[preds["model"] == "m1"]
    np.testing.assert_array_equal(counts["m1"], skm.confusion_matrix(m1["label"], m1["pred"]))
    assert counts["m2"].sum() == 24  # both folds, each image once
    assert _png_size(tmp_path / "confusion.png")[0] > _png_size(tmp_path / "confusion.png")[1]

    aucs = train_figures.roc_curves(preds, tmp_path / "roc.png", "d").set_index(["model", "class"])
    assert len(aucs) == 2 * 3  # one curve per class and model
    ref = skm.roc_auc_score(m1["label"] == 1, m1["prob_b"])
    assert aucs.loc[("m1", "b"), "auc"] == pytest.approx(ref)
    _png_size(tmp_path / "roc.png")

    binary = preds[preds["label"] < 2].drop(columns="prob_c")
    assert list(train_figures.roc_curves(binary, tmp_path / "roc2.png", "d")["class"]) == ["b", "b"]


def test_fold_metric_boxes_and_cd_diagrams(tmp_path):
    fm = pd.DataFrame(
        {
            "dataset": "d",
            "model": ["x", "y", "z"] * 3,
            "fold": np.repeat([0, 1, 2], 3),
            "accuracy": [0.6, 0.7, 0.8, 0.62, 0.71, 0.79, 0.61, 0.72, 0.81],
        }
    )
    train_figures.fold_metric_boxes(fm, ["accuracy"], tmp_path / "box.png", "d")
    _png_size(tmp_path / "box.png")
    tables = rank_models(fm, ["accuracy"])
    groups = stats_figures.cd_diagrams(
        tables["ranks"], tables["friedman"], tmp_path / "cd.png", "d"
    )
    # ranks 3, 2, 1 over 3 folds; CD = 2.343 * sqrt(3 * 4 / 18) = 1.91: x-z differ by 2
    assert groups == {"accuracy": [["z", "y"], ["y", "x"]]}
    _png_size(tmp_path / "cd.png")


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for method in ("gradcam", "layercam"):
        for i in range(10):
            rows.append(
                {
                    "dataset": "d",
                    "model": "net",
                    "fold": i % 2,
                    "method": method,
                    "image_id": f"img{i}",
                    "pred_name": "pos" if i < 6 else "neg",
                    # a difference of two probabilities: in [-1, 1]
                    "confidence_increase": np.clip(
                        rng.normal(0.1 if method == "gradcam" else -0.1, 0.3), -1, 1
                    ),
                    "seconds": rng.uniform(0.01, 0.02),
                }
            )
    return pd.DataFrame(rows)


def test_confidence_increase_and_timing_intervals(tmp_path):
    scores = _scores()
    drawn = explain_figures.confidence_increase_plot(scores, tmp_path / "ci.png", "d", alpha=0.05)
    drawn = drawn.set_index(["method", "class"])
    values = scores.loc[
        (scores["method"] == "gradcam") & (scores["pred_name"] == "pos"), "confidence_increase"
    ]
    ci = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
    row = drawn.loc[("gradcam", "pos")]
    assert row["n"] == 6 and row["mean"] == pytest.approx(values.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(ci)
    _png_size(tmp_path / "ci.png")

    timing = explain_figures.timing_plot(scores, tmp_path / "t.png", "t").set_index("method")
    seconds = scores.loc[scores["method"] == "layercam", "seconds"]
    assert timing.loc["layercam", "mean"] == pytest.approx(seconds.mean())
    _png_size(tmp_path / "t.png")


def test_confidence_increase_intervals_stay_in_the_scores_range(tmp_path, saved_figures):
    # Three images far apart: the t-interval of their mean reaches past -1 and 1.
    scores = _scores().groupby(["method", "pred_name"]).head(3).reset_index(drop=True)
    scores.loc[scores["method"] == "gradcam", "confidence_increase"] = [-0.9, 0.9, 0.95] * 2
    values = scores.loc[scores["method"] == "gradcam", "confidence_increase"].iloc[:3]
    t_low, t_high = sps.t.interval(0.95, 2, loc=values.mean(), scale=sps.sem(values))
    assert t_low < -1 and t_high > 1  # the unclipped interval is impossible
    drawn = explain_figures.confidence_increase_plot(scores, tmp_path / "ci.png", "d")
    assert drawn["ci_low"].min() == -1 and drawn["ci_high"].max() == 1
    low, high = error_bar_span(saved_figures[-1])
    assert low >= -1 - 1e-9 and high <= 1 + 1e-9


def _long_names(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.assign(
        dataset="skin_lesion_dermoscopy_2019", model="efficientnet_b0_pretrained_imagenet"
    )


def test_figures_keep_titles_and_legends_readable(tmp_path, saved_figures):
    """One explained model (the narrowest figures) and long names: no text reaches past the
    figure, no legend lies over a panel."""
    scores = _long_names(_scores())
    explain_figures.confidence_increase_plot(
        scores,
        tmp_path / "ci.png",
        "skin_lesion_dermoscopy_2019: confidence increase (mean and CI)",
    )
    explain_figures.timing_plot(scores, tmp_path / "t.png", "CAM seconds per image (mean and CI)")
    preds = _predictions()
    train_figures.confusion_matrices(preds, tmp_path / "c.png", "a_long_dataset_name: confusion")
    train_figures.roc_curves(preds, tmp_path / "r.png", "a_long_dataset_name: ROC curves")
    assert len(saved_figures) == 4
    for fig in saved_figures:
        assert clipped(fig) == [], fig.get_suptitle()
        assert covering(fig) == [], fig.get_suptitle()


def test_generalisation_figure_keeps_its_legend_off_the_curves(tmp_path, saved_figures):
    from xaimed.report.generalise_figures import generalisation_figure
    from xaimed.shift.corruptions import CORRUPTIONS, IN_DOMAIN

    rows = [
        {"dataset": "skin_lesion", "model": model, "cv": "kfold", "shift": shift}
        | {"severity": severity, "accuracy": 0.9 - 0.1 * severity}
        for model in ("resnet50", "efficientnet_b0_pretrained_imagenet")
        for shift, severity in [(IN_DOMAIN, 0)] + [(c, s) for c in CORRUPTIONS for s in (1, 5)]
    ]
    generalisation_figure(pd.DataFrame(rows), "skin_lesion", tmp_path / "g.png")
    (fig,) = saved_figures
    assert fig.axes[0].get_lines()  # the curves are drawn
    assert clipped(fig) == []
    assert covering(fig) == []
