"""Figures of the explain stage: confidence increase and CAM timing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xaimed.report.style import Pathish, _panels, _save, check_glyphs, legend_outside
from xaimed.stats.paired import mean_ci

CONFIDENCE_INCREASE_RANGE = (-1.0, 1.0)  # a difference of two probabilities

# --- Explanations ----------------------------------------------------------------------


def _mean_and_ci(values: pd.Series, alpha: float) -> tuple[float, float, float]:
    v = values.dropna().to_numpy(dtype=float)
    low, high = mean_ci(v, alpha)
    return (float(v.mean()) if len(v) else np.nan), low, high


def _errors(stats: Sequence[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Means and the (2, n) error-bar lengths below and above them (0 where undefined)."""
    mean = np.array([m for m, _, _ in stats])
    err = np.array([[m - lo, hi - m] for m, lo, hi in stats]).reshape(-1, 2).T
    return mean, np.nan_to_num(err)


def confidence_increase_plot(
    scores: pd.DataFrame, out_png: Pathish, title: str, alpha: float = 0.05
) -> pd.DataFrame:
    """One panel per explained model: mean confidence increase per predicted class (x) and
    method (colour), with (1 - alpha) t-intervals over the images clipped to [-1, 1]: the
    score is a difference of two probabilities, and a t-interval of a few images can reach
    past what it can take. Returns one row per point: model, method, class, n, mean, ci_low,
    ci_high (clipped)."""
    models = sorted(scores["model"].unique())
    methods = sorted(scores["method"].unique())
    fig, axes = _panels(len(models), title)
    width = 0.8 / max(len(methods), 1)
    drawn = []
    for ax, model in zip(axes, models, strict=True):
        s = scores[scores["model"] == model].assign(_class=lambda d: d["pred_name"].astype(str))
        classes = sorted(s["_class"].unique())
        check_glyphs(classes)
        for j, method in enumerate(methods):
            points = []
            for c in classes:
                values = s.loc[(s["method"] == method) & (s["_class"] == c), "confidence_increase"]
                mean, low, high = _mean_and_ci(values, alpha)
                points.append((mean, *np.clip([low, high], *CONFIDENCE_INCREASE_RANGE)))
                drawn.append(
                    {"model": model, "method": method, "class": c, "n": int(values.notna().sum())}
                    | dict(zip(["mean", "ci_low", "ci_high"], points[-1], strict=True))
                )
            mean, err = _errors(points)
            x = np.arange(len(classes)) - 0.4 + width * (j + 0.5)
            ax.errorbar(x, mean, yerr=err, fmt="o", capsize=3, label=method)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("confidence increase")
        ax.set_title(model, fontsize=10)
    legend_outside(axes[-1], title="method")
    _save(fig, out_png)
    return pd.DataFrame(drawn)


def timing_plot(
    scores: pd.DataFrame, out_png: Pathish, title: str, alpha: float = 0.05
) -> pd.DataFrame:
    """One panel per dataset and explained model: mean seconds per image of each method with
    (1 - alpha) t-intervals over the images. Returns one row per bar: dataset, model,
    method, mean, ci_low, ci_high."""
    keys = sorted(scores[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None))
    fig, axes = _panels(len(keys), title, ncols=3)
    drawn = []
    for ax, (dataset, model) in zip(axes, keys, strict=True):
        s = scores[(scores["dataset"] == dataset) & (scores["model"] == model)]
        methods = sorted(s["method"].unique())
        bars = [_mean_and_ci(s.loc[s["method"] == m, "seconds"], alpha) for m in methods]
        for method, bar in zip(methods, bars, strict=True):
            drawn.append(
                {"dataset": dataset, "model": model, "method": method}
                | dict(zip(["mean", "ci_low", "ci_high"], bar, strict=True))
            )
        mean, err = _errors(bars)
        ax.bar(range(len(methods)), mean, yerr=err, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("seconds per image")
        ax.set_title(f"{dataset}: {model}", fontsize=10)
    _save(fig, out_png)
    return pd.DataFrame(drawn)
