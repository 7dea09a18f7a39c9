"""The localisation figure: each method's mean localisation scores beside the baselines.

matplotlib's object API (Figure, no pyplot), as in :mod:`xaimed.report.gallery`.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xaimed.explain.metrics.localisation import BASELINES
from xaimed.report.style import fit_text, legend_outside  # also: labels as plain text, CJK fonts
from xaimed.stats.quality import LOCALISATION_METRICS

__all__ = ["localisation_figure"]

log = logging.getLogger("xaimed.report.quality_figures")

PANEL_INCHES = (3.2, 2.6)
DPI = 100
BASELINE_STYLE = {
    "random": {"color": "0.4", "linestyle": "--"},
    "smooth_random": {"color": "tab:purple", "linestyle": "-."},
    "centre": {"color": "tab:orange", "linestyle": ":"},
    "mask": {"color": "tab:green", "linestyle": "-"},
}


def _empty_panel_text(scores: pd.DataFrame, baselines: pd.DataFrame, model: str | None) -> str:
    """Why a panel has no bars, truthfully: no maps, no lesion masks, or masks whose scores
    are undefined for every map (an all-zero map has no energy to point with)."""
    if model is None:
        return "no explained maps"
    located = [
        frame.loc[frame["model"] == model, LOCALISATION_METRICS].notna().to_numpy().any()
        for frame in (scores, baselines)
        if not frame.empty and set(LOCALISATION_METRICS) <= set(frame.columns)
    ]
    if not any(located):
        return "no lesion masks"
    text = "lesion masks, but the score is\nundefined for every map"
    if "constant_map" in scores:
        constant = int(scores.loc[scores["model"] == model, "constant_map"].astype(bool).sum())
        text += f"\n({constant} of {int((scores['model'] == model).sum())} maps constant)"
    return text


def localisation_figure(
    scores: pd.DataFrame, baselines: pd.DataFrame, out_png: str | PathLike, title: str
) -> pd.DataFrame:
    """Rows = explained models, columns = localisation metrics; bars = methods (mean over the
    images with a lesion mask, all classes and folds; error bars: standard error), lines =
    the baselines' means over the same images. Saves ``out_png`` and returns the plotted
    means (model, metric, map, n_images, mean, sem)."""
    models = sorted(scores["model"].unique()) if len(scores) else []
    plotted = []
    for metric in LOCALISATION_METRICS:
        for source, name_column in ((scores, "method"), (baselines, "baseline")):
            if source.empty:
                continue
            valid = source.dropna(subset=[metric])
            grouped = valid.groupby(["model", name_column])[metric]
            summary = grouped.agg(n_images="size", mean="mean", sd="std").reset_index()
            summary["sem"] = summary["sd"] / np.sqrt(summary["n_images"])
            summary = summary.rename(columns={name_column: "map"}).assign(
                metric=metric, kind=name_column
            )
            plotted.append(summary.drop(columns="sd"))
    columns = ["model", "map", "n_images", "mean", "sem", "metric", "kind"]
    means = pd.concat(plotted, ignore_index=True) if plotted else pd.DataFrame(columns=columns)

    nrows, ncols = max(1, len(models)), len(LOCALISATION_METRICS)
    fig = Figure(figsize=(PANEL_INCHES[0] * ncols, PANEL_INCHES[1] * nrows + 0.5), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.suptitle(title)
    for row, model in zip(axes, models or [None], strict=True):
        for ax, metric in zip(row, LOCALISATION_METRICS, strict=True):
            ax.set_title(metric.replace("_", " "), fontsize=9)
            ax.set_ylim(0, 1.15)  # room for the value labels
            part = means[(means["model"] == model) & (means["metric"] == metric)]
            methods = part[part["kind"] == "method"]
            if model is None or methods.empty:
                text = _empty_panel_text(scores, baselines, model)
                log.warning("%s, %s %s: %s", title, model, metric, text.replace("\n", " "))
                ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True)
                ax.set_xticks([])
                continue
            x = np.arange(len(methods))
            sem = methods["sem"].fillna(0).to_numpy()
            ax.bar(x, methods["mean"], yerr=sem, color="tab:blue", alpha=0.8)
            # the value of every bar, above its error bar: a mean of 0.00 draws no bar and
            # would read as missing; a white ground keeps it readable over a baseline's line
            for xi, mean, error in zip(x, methods["mean"], sem, strict=True):
                ax.text(
                    xi,
                    min(mean + error, 1.0) + 0.02,
                    f"{mean:.2f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
                )
            ax.set_xticks(x, methods["map"], rotation=45, ha="right", fontsize=7)
            for baseline in BASELINES:
                line = part[(part["kind"] == "baseline") & (part["map"] == baseline)]
                if len(line):
                    ax.axhline(
                        float(line["mean"].iloc[0]), label=baseline, **BASELINE_STYLE[baseline]
                    )
            if ax is row[0]:
                ax.set_ylabel(str(model), fontsize=9)
    legend_outside(axes[0][-1], title="baselines")
    fit_text(fig)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI)
    return means
