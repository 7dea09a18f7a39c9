"""Tables, paired tests and figures of the generalise stage (one metrics row per dataset,
model, fold, shift and severity; see :mod:`xaimed.shift.generalise`)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xaimed.report.style import fit_text, legend_outside  # also: labels as plain text, CJK fonts
from xaimed.shift.corruptions import CORRUPTIONS, IN_DOMAIN
from xaimed.stats.compare import fold_test_train_ratio, paired_tests

TABLE_KEYS = ["dataset", "model", "cv", "shift", "severity"]
MEAN_COLUMNS = ["accuracy", "f1_macro", "ece", "brier", "ece_scaled", "brier_scaled"]
TESTED_METRICS = ("accuracy", "f1_macro", "ece", "brier")
SHIFT_ORDER = [IN_DOMAIN, *CORRUPTIONS]


def _in_shift_order(df: pd.DataFrame) -> pd.DataFrame:
    order = {name: i for i, name in enumerate(SHIFT_ORDER)}
    rank = df["shift"].map(order).fillna(len(order))
    keys = [k for k in TABLE_KEYS if k in df.columns and k not in ("shift", "severity")]
    return (
        df.assign(_rank=rank)
        .sort_values([*keys, "_rank", "severity"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def generalisation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, cv, shift and severity: folds, images, the mean over folds of
    accuracy, macro-F1, ECE and Brier (raw and temperature-scaled) and the SD of accuracy."""
    spec = {"n_folds": ("fold", "nunique"), "n_images": ("n_images", "sum")}
    for column in MEAN_COLUMNS:
        spec[column] = (column, "mean")
    spec["accuracy_sd"] = ("accuracy", "std")
    table = metrics.groupby(TABLE_KEYS, sort=False).agg(**spec).reset_index()
    return _in_shift_order(table)


def compare_shifts(
    metrics: pd.DataFrame,
    tested: Sequence[str] = TESTED_METRICS,
    adjust: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired tests (:func:`xaimed.stats.compare.paired_tests`) of every shift and severity against
    the in-domain images, per dataset, model, cv and metric, paired by fold; mean_diff =
    shifted - in-domain. With the Nadeau-Bengio columns (the first repeat's folds; the
    ratio from the in-domain rows' n_images) and the corrected repeated k-fold ones (every
    repeat's folds); p-values adjusted (`adjust`) within (dataset,
    model, cv, metric)."""
    keys = ["dataset", "model", "cv"]
    # Long: one row per dataset, model, cv, metric, shift, severity and fold; metrics as given.
    long = pd.concat(
        [metrics.assign(metric=m, value=metrics[m]) for m in tested], ignore_index=True
    ).sort_values(keys, kind="stable")
    tests = paired_tests(
        long,
        [*keys, "metric"],
        ["shift", "severity"],
        "fold",
        "value",
        adjust=adjust,
        alpha=alpha,
        reference=(IN_DOMAIN, 0),
        test_train_ratio=lambda g: fold_test_train_ratio(g[g["shift"] == IN_DOMAIN]),
        # metrics from before repeats have no repeat column: one repeat
        repeat="repeat" if "repeat" in metrics else None,
    )
    return tests if tests.empty else _in_shift_order(tests)


def stability_table(stability: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, CAM method, shift and severity: images, the share whose prediction
    survived the shift, and over those the mean and SD of the map change and the mean map
    correlation."""
    keys = ["dataset", "model", "method", "shift", "severity"]
    columns = [*keys, "n_images", "kept_fraction", "map_change_mean", "map_change_sd"]
    columns.append("map_correlation_mean")
    if stability.empty:
        return pd.DataFrame(columns=columns)
    table = (
        stability.assign(kept=stability["prediction_kept"].astype(float))
        .groupby(keys, sort=False)
        .agg(
            n_images=("image_id", "size"),
            kept_fraction=("kept", "mean"),
            map_change_mean=("map_change", "mean"),
            map_change_sd=("map_change", "std"),
            map_correlation_mean=("map_correlation", "mean"),
        )
        .reset_index()
    )
    return _in_shift_order(table)[columns]


def generalisation_figure(
    table: pd.DataFrame, dataset: str, out_png: str | PathLike, metric: str = "accuracy"
) -> None:
    """One panel per corruption: `metric` (mean over folds) against severity, one line per
    model (and cv mode, if several); severity 0 is the in-domain value."""
    df = table[table["dataset"] == dataset]
    if df.empty:
        raise ValueError(f"no generalisation results for dataset {dataset!r}")
    corruptions = [c for c in CORRUPTIONS if c in set(df["shift"])]
    columns = min(3, max(1, len(corruptions)))
    n_rows = -(-max(1, len(corruptions)) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * n_rows + 0.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(n_rows, columns, sharey=True, squeeze=False)).ravel()
    several_cv = df["cv"].nunique() > 1
    lines = list(df.groupby(["model", "cv"], sort=True))
    for ax, corruption in zip(axes, corruptions, strict=False):
        for (model, cv), g in lines:
            curve = pd.concat([g[g["shift"] == IN_DOMAIN], g[g["shift"] == corruption]])
            curve = curve.sort_values("severity")
            label = f"{model} ({cv})" if several_cv else model
            ax.plot(curve["severity"], curve[metric], marker="o", label=label)
        ax.set_title(corruption.replace("_", " "))
        ax.set_xlabel("severity (0 = in-domain)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(corruptions) :]:
        ax.set_visible(False)
    axes[0].set_ylabel(metric.replace("_", " "))
    legend_outside(axes[min(len(corruptions), columns) - 1], title="model")
    figure.suptitle(f"{dataset}: {metric} under corruption")
    fit_text(figure, figure.draw_without_rendering)  # constrained layout, redone at each draw
    figure.savefig(out_png, dpi=100)
