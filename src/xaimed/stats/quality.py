"""Explanation quality tables: localisation, faithfulness and the randomisation sanity check,
each with the baselines beside every mean, and paired comparisons of the methods.

Tables are long: one row per (dataset, model, method, class, metric), ``class`` being the
predicted class the maps explain, with n_images, mean, sd (sample) and ``baseline_random``/
``baseline_smooth_random``/``baseline_centre``/``baseline_mask``: the mean of that baseline
map's score over the same images (for the sanity check: the similarity of the trained model's map
to the baseline map, i.e. what an unrelated map scores).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from xaimed.explain.metrics.localisation import BASELINES
from xaimed.report.tables import NO_PAIRS, constant_counts, empty_because
from xaimed.stats.compare import compare_methods, table_columns

__all__ = [
    "FAITHFULNESS_METRICS",
    "LOCALISATION_METRICS",
    "SANITY_METRICS",
    "compare_methods_on",
    "faithfulness_table",
    "localisation_table",
    "sanity_table",
]

LOCALISATION_METRICS = ["pointing_game", "energy_pointing_game", "iou_top_k"]
FAITHFULNESS_METRICS = ["deletion_auc", "insertion_auc"]
SANITY_METRICS = ["spearman", "ssim"]
BASELINE_COLUMNS = [f"baseline_{b}" for b in BASELINES]
IMAGE_KEYS = ["dataset", "model", "fold", "image_id"]
TABLE_KEYS = ["dataset", "model", "method", "class"]


def _long(df: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per (keys, metric) with a non-missing value."""
    long = df.melt(id_vars=list(keys), value_vars=list(metrics), var_name="metric")
    return long.dropna(subset=["value"])


def _summarise(long: pd.DataFrame, keys: Sequence[str], extra: Sequence[str] = ()) -> pd.DataFrame:
    """n_images, mean, sd of value and the mean of each baseline (and `extra`) column."""
    spec = {
        "n_images": ("value", "size"),
        "mean": ("value", "mean"),
        "sd": ("value", "std"),
        **{c: (c, "mean") for c in [*BASELINE_COLUMNS, *extra]},
    }
    return long.groupby(list(keys), sort=True).agg(**spec).reset_index()


def _with_baselines(
    scores: pd.DataFrame, baselines: pd.DataFrame, metrics: Sequence[str]
) -> pd.DataFrame:
    """Method scores in long form with each baseline's score of the same image and metric."""
    keys = [*IMAGE_KEYS, "method", "pred_name"]
    extra = ["sign_flipped"] if "sign_flipped" in scores else []
    long = _long(scores[[*keys, *extra, *metrics]], [*keys, *extra], metrics)
    wide = _long(baselines, [*IMAGE_KEYS, "baseline"], metrics).pivot_table(
        index=[*IMAGE_KEYS, "metric"], columns="baseline", values="value", aggfunc="first"
    )
    wide = wide.reindex(columns=list(BASELINES))
    wide.columns = BASELINE_COLUMNS
    long = long.merge(wide.reset_index(), on=[*IMAGE_KEYS, "metric"], how="left")
    return long.rename(columns={"pred_name": "class"})


def _quality_table(
    scores: pd.DataFrame, baselines: pd.DataFrame, metrics: Sequence[str]
) -> pd.DataFrame:
    long = _with_baselines(scores, baselines, metrics)
    extra = ["sign_flipped"] if "sign_flipped" in long else []
    # repeats (cv: predefined) explain the same images: one mean per image, as in
    # xaimed.report.tables.pool_repeats, so n_images counts images
    columns = ["value", *BASELINE_COLUMNS, *extra]
    long = long.groupby([*TABLE_KEYS, "metric", "image_id"])[columns].mean().reset_index()
    table = _summarise(long, [*TABLE_KEYS, "metric"], extra)
    table = table.merge(constant_counts(scores, TABLE_KEYS), on=TABLE_KEYS, how="left")
    if extra:  # share of the images whose sign a sign-corrected Eigen method flipped
        table = table.rename(columns={"sign_flipped": "sign_flipped_fraction"})
    order = {m: i for i, m in enumerate(metrics)}
    table = table.sort_values(
        [*TABLE_KEYS, "metric"], key=lambda s: s.map(order) if s.name == "metric" else s
    )
    return table.reset_index(drop=True)


def localisation_table(scores: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Pointing game, energy pointing game and top-k IoU per dataset, model, method, class;
    images without a lesion mask do not count (n_images counts those with one)."""
    return _quality_table(scores, baselines, LOCALISATION_METRICS)


def faithfulness_table(scores: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Deletion AUC (lower is better) and insertion AUC (higher is better)."""
    return _quality_table(scores, baselines, FAITHFULNESS_METRICS)


def sanity_table(sanity: pd.DataFrame, max_similarity: float = 0.5) -> pd.DataFrame:
    """Similarity of the trained and the randomised model's maps per dataset, model, method,
    class, cascade stage (``randomised``: the deepest re-initialised block) and metric
    (spearman, ssim); ``passes``: the mean similarity is below ``max_similarity``, i.e. the
    maps changed when the model's weights did."""
    keys = [*IMAGE_KEYS, "method", "pred_name", "stage", "randomised"]
    frames = []
    for metric in SANITY_METRICS:
        part = sanity[keys].assign(metric=metric, value=sanity[metric])
        for baseline, column in zip(BASELINES, BASELINE_COLUMNS, strict=True):
            part[column] = sanity[f"{metric}_{baseline}"]
        frames.append(part.dropna(subset=["value"]))
    long = pd.concat(frames, ignore_index=True).rename(columns={"pred_name": "class"})
    if long.empty:
        columns = [*TABLE_KEYS, "stage", "randomised", "metric", "n_images", "mean", "sd"]
        return pd.DataFrame(columns=[*columns, *BASELINE_COLUMNS, "passes"])
    keys = [*TABLE_KEYS, "stage", "randomised", "metric"]
    # repeats (cv: predefined) check the same images: one mean per image, as _quality_table
    long = long.groupby([*keys, "image_id"])[["value", *BASELINE_COLUMNS]].mean().reset_index()
    table = _summarise(long, keys)
    table["passes"] = table["mean"] < max_similarity
    return table


def compare_methods_on(
    scores: pd.DataFrame, metrics: Sequence[str], adjust: str = "holm", alpha: float = 0.05
) -> pd.DataFrame:
    """:func:`xaimed.stats.compare.compare_methods` on each metric (paired by image, adjusted,
    `adjust`, within dataset, model, class and metric), with a ``metric`` column; with a
    ``stage`` column (sanity), separately per cascade stage."""
    stages = sorted(scores["stage"].unique()) if "stage" in scores else [None]
    frames = []
    for stage in stages:
        part = scores if stage is None else scores[scores["stage"] == stage]
        for metric in metrics:
            rows = part.dropna(subset=[metric])
            if rows.empty:
                continue
            tests = compare_methods(rows, value=metric, adjust=adjust, alpha=alpha)
            if tests.empty:  # a single method: its columns have no dtype to build on
                continue
            tests.insert(3, "metric", metric)
            tests["family"] = tests["family"] + "/" + metric
            if stage is not None:
                tests.insert(3, "stage", stage)
                tests["family"] = tests["family"] + f"/stage{stage}"
            frames.append(tests)
    if not frames:
        return empty_because(
            pd.DataFrame(
                columns=table_columns(
                    ["dataset", "model", "class", "metric"], ["method_a", "method_b"], False
                )
            ),
            f"{NO_PAIRS}: fewer than two methods with {', '.join(metrics)} in every dataset, "
            "model and class",
        )
    return pd.concat(frames, ignore_index=True)
