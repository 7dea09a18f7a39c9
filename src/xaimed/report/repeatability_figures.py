"""The repeatability figure: how alike the maps of independently trained models are, per CAM
method, beside what maps that share nothing score (:mod:`xaimed.stats.repeatability`).

matplotlib's object API (Figure, no pyplot), as in :mod:`xaimed.report.quality_figures`.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xaimed.explain.metrics.agreement import AGREEMENT_METRICS
from xaimed.report.quality_figures import BASELINE_STYLE
from xaimed.report.style import fit_text, legend_outside
from xaimed.stats.repeatability import (
    NO_REPEATS,
    REPEATABILITY_BASELINES,
    per_image_agreement,
)

__all__ = ["repeatability_figure"]

log = logging.getLogger("xaimed.report.repeatability_figures")

PANEL_INCHES = (3.2, 2.6)
DPI = 100
#: every agreement's range: Spearman and SSIM reach -1, top-k IoU is in [0, 1]
Y_LIMITS = {"spearman": (-1.05, 1.05), "ssim": (-1.05, 1.05), "iou_top_k": (-0.05, 1.05)}


def repeatability_figure(
    pairs: pd.DataFrame, dataset: str, out_png: str | PathLike
) -> pd.DataFrame:
    """Rows = the dataset's explained models, columns = agreement metrics; a box per method
    (its images' agreement, each image's mean over its pairs of models), lines = the
    baselines' mean agreement over the model's images explained twice. Without such an image,
    one panel says so (:data:`~xaimed.stats.repeatability.NO_REPEATS`). Saves ``out_png`` and
    returns what it drew (model, metric, map, kind, n_images, median, mean)."""
    mine = pairs[pairs["dataset"] == dataset]
    images = per_image_agreement(mine)
    drawn = (
        images.groupby(["model", "metric", "method", "kind"], sort=True)["value"]
        .agg(n_images="size", median="median", mean="mean")
        .reset_index()
        .rename(columns={"method": "map"})
    )
    models = sorted(mine["model"].unique())  # a model whose pairs all left out: said in its panels
    title = f"{dataset}: agreement of the maps of independently trained models"
    ncols = len(AGREEMENT_METRICS) if models else 1
    fig = Figure(
        figsize=(PANEL_INCHES[0] * max(ncols, 2), PANEL_INCHES[1] * max(len(models), 1) + 0.5),
        dpi=DPI,
    )
    axes = fig.subplots(max(len(models), 1), ncols, squeeze=False)
    fig.suptitle(title)
    if not models:
        log.warning("%s: %s", dataset, NO_REPEATS)
        axes[0][0].text(0.5, 0.5, NO_REPEATS, ha="center", va="center", fontsize=9, wrap=True)
        axes[0][0].set_axis_off()
    for row, model in zip(axes, models, strict=False):
        for ax, metric in zip(row, AGREEMENT_METRICS, strict=True):
            _panel(ax, images[(images["model"] == model) & (images["metric"] == metric)], metric)
            if metric == "iou_top_k":  # say which k
                ax.set_title(f"IoU of the top {mine['top_k'].iloc[0]:g} % pixels", fontsize=9)
            if ax is row[0]:
                ax.set_ylabel(str(model), fontsize=9)
    if models:
        legend_outside(axes[0][-1], title="baselines")
    fit_text(fig)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI)
    return drawn


def _panel(ax, images: pd.DataFrame, metric: str) -> None:
    """One model and metric: a box per method, a line per baseline."""
    ax.set_title(metric.replace("_", " "), fontsize=9)
    ax.set_ylim(*Y_LIMITS[metric])
    methods = images[images["kind"] == "method"]
    names = sorted(methods["method"].unique())
    if not names:
        text = "no pair of maps counts:\nthe models predicted other\nclasses, or a map is constant"
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8)
        ax.set_xticks([])
        return
    x = np.arange(len(names))
    values = [methods.loc[methods["method"] == m, "value"].to_numpy() for m in names]
    ax.boxplot(values, positions=x, widths=0.6, showmeans=True, manage_ticks=False)
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    baselines = images[images["kind"] == "baseline"]
    for baseline in REPEATABILITY_BASELINES:
        line = baselines.loc[baselines["method"] == baseline, "value"]
        if len(line):
            ax.axhline(float(line.mean()), label=baseline, **BASELINE_STYLE[baseline])
    ax.axhline(0, color="0.85", linewidth=0.8, zorder=0)
