"""Repeatability of explanations: do independently trained models of one architecture explain
the same image alike? (Arun et al., "Assessing the trustworthiness of saliency maps for
localizing abnormalities in medical imaging", Radiology: AI 2021.)

An image held out by two or more trained models of one architecture on one dataset (the
repeats of ``cv: predefined``; the repeats of a repeated cross-validation) has one map per model
and CAM method. Nothing here depends on how those models came about: every fold's ``cams.npz``
of a (dataset, model, method) is read, and every image id found in two or more of them is
paired across them, each pair of folds once.

Agreement of two maps of one image, per pair: Spearman, SSIM and the IoU of their top-k %
pixels (:func:`xaimed.explain.metrics.agreement.map_agreement`; k = quality.top_k, the k of
the localisation table's top-k IoU). A pair where either map is constant has nothing to agree
on: NaN (counted, not scored), and a pair whose models predicted different classes compares
maps of different classes: kept in the pairs file, left out of the table and the tests
(counted). Each image counts once, with its mean over its pairs (r models give r (r - 1) / 2
pairs of one image, not independent).

What "no agreement" looks like: the same agreement of the model-free ``random`` and
``smooth_random`` baselines (:mod:`xaimed.explain.metrics.localisation`), drawn independently
for each model (the scoring baselines are seeded per image only, so two models would get the
same map and agree trivially). ``centre`` and ``mask`` are the same map in every model: their
agreement is 1 by construction and tells nothing, so they are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import combinations
from os import PathLike

import numpy as np
import pandas as pd

from xaimed.explain.metrics.agreement import AGREEMENT_METRICS, map_agreement
from xaimed.explain.metrics.localisation import image_seed, random_map, smooth_random_map
from xaimed.io import integrity
from xaimed.report.tables import NO_PAIRS, empty_because
from xaimed.stats.compare import paired_tests, table_columns
from xaimed.stats.paired import mean_ci

__all__ = [
    "NO_REPEATS",
    "PAIR_COLUMNS",
    "REPEATABILITY_BASELINES",
    "TABLE_COLUMNS",
    "compare_methods_repeatability",
    "per_image_agreement",
    "repeatability_pairs",
    "repeatability_table",
]

log = logging.getLogger("xaimed.stats.repeatability")

#: model-free maps drawn independently per model: what maps that share nothing agree
REPEATABILITY_BASELINES = ("random", "smooth_random")
NO_REPEATS = "no image was explained by two or more models: set repeats >= 2 or cv: predefined"
MAP_KEYS = ["dataset", "model", "method"]
PAIR_COLUMNS = [
    *MAP_KEYS,
    "kind",  # method or baseline (then method is the baseline's name)
    "image_id",
    "fold_a",
    "fold_b",
    "pred_a",
    "pred_b",
    "same_class",
    "constant",  # either map constant: no agreement to measure
    *AGREEMENT_METRICS,
    "top_k",
]
TABLE_COLUMNS = [
    *MAP_KEYS,
    "metric",
    "n_images",
    "n_pairs",
    "n_models",
    "mean",
    "sd",
    "median",
    "q25",
    "q75",
    "ci_low",
    "ci_high",
    *[f"baseline_{b}" for b in REPEATABILITY_BASELINES],
    "n_pairs_other_class",
    "n_pairs_constant",
    "top_k",
]


# --- The pairs: every image explained by two or more models ------------------------------------


def _read_maps(path: str | PathLike) -> dict[str, np.ndarray]:
    """image_id, cams and target (the predicted class explained) of one cams.npz."""
    stored = integrity.read_npz(path)
    missing = {"image_id", "cams", "target"} - set(stored)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}: made by an older xaimed; rerun cams")
    ids = stored["image_id"].astype(str)
    repeated = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(repeated):
        raise ValueError(f"image {repeated[0]!r} appears twice in CAM file {path}")
    return {"image_id": ids, "cams": stored["cams"], "target": stored["target"]}


def _fold_seed(seed: int, image_id: str, fold: int) -> int:
    """The seed of one image's baseline map and tie-breaking in one fold's model: its own per
    fold, so that two models' random maps of an image are drawn independently."""
    return image_seed(seed, f"{image_id}#fold{int(fold)}")


def _baseline_map(name: str, shape, grid, seed: int) -> np.ndarray:
    if name == "random":
        return random_map(shape, seed)
    return smooth_random_map(shape, grid, seed)


def _pair_frame(keys: dict, kind: str, where: pd.DataFrame, agreement: dict, top_k: float):
    """One row per pair ``where`` (image_id, fold_a, fold_b, pred_a, pred_b) with its
    agreement."""
    same_class = where["pred_a"].to_numpy() == where["pred_b"].to_numpy()
    frame = where.reset_index(drop=True).assign(**keys, kind=kind, same_class=same_class)
    return frame.assign(**agreement, top_k=float(top_k))[PAIR_COLUMNS]


def _pairs_of_folds(
    keys: dict, maps: Mapping[int, dict], top_k: float, seed: int
) -> list[pd.DataFrame]:
    """The pairs of one (dataset, model, method): per pair of folds, the images both
    explained."""
    frames = []
    for fold_a, fold_b in combinations(sorted(maps), 2):
        a, b = maps[fold_a], maps[fold_b]
        common, at_a, at_b = np.intersect1d(a["image_id"], b["image_id"], return_indices=True)
        if not len(common):
            continue
        cams_a, cams_b = a["cams"][at_a], b["cams"][at_b]
        if cams_a.shape != cams_b.shape:
            raise ValueError(
                f"{'/'.join(map(str, keys.values()))}: folds {fold_a} and {fold_b} hold maps of "
                f"different sizes ({cams_a.shape[1:]} and {cams_b.shape[1:]}) for the same images"
            )
        seeds_a = [_fold_seed(seed, i, fold_a) for i in common]
        seeds_b = [_fold_seed(seed, i, fold_b) for i in common]
        agreement = map_agreement(cams_a, cams_b, top_k, seeds_a, seeds_b)
        where = pd.DataFrame(
            {
                "image_id": common,
                "fold_a": fold_a,
                "fold_b": fold_b,
                "pred_a": a["target"][at_a],
                "pred_b": b["target"][at_b],
            }
        )
        frames.append(_pair_frame(keys, "method", where, agreement, top_k))
    return frames


def _baseline_pairs(
    method_pairs: pd.DataFrame, shape, grid, top_k: float, seed: int
) -> list[pd.DataFrame]:
    """The baselines' pairs of one (dataset, model): the same (image, fold a, fold b) pairs as
    its methods', each map drawn with its fold's own seed. ``grid`` None (no native map size
    known): no smooth_random."""
    where = method_pairs.drop_duplicates(["image_id", "fold_a", "fold_b"])
    where = where[["image_id", "fold_a", "fold_b", "pred_a", "pred_b"]]
    ids = where["image_id"].to_numpy()
    seeds_a = [_fold_seed(seed, i, f) for i, f in zip(ids, where["fold_a"], strict=True)]
    seeds_b = [_fold_seed(seed, i, f) for i, f in zip(ids, where["fold_b"], strict=True)]
    frames = []
    for name in REPEATABILITY_BASELINES:
        if name == "smooth_random" and grid is None:
            continue
        maps_a = np.stack([_baseline_map(name, shape, grid, s) for s in seeds_a])
        maps_b = np.stack([_baseline_map(name, shape, grid, s) for s in seeds_b])
        agreement = map_agreement(maps_a, maps_b, top_k, seeds_a, seeds_b)
        keys = {
            "dataset": method_pairs["dataset"].iloc[0],
            "model": method_pairs["model"].iloc[0],
            "method": name,
        }
        frames.append(_pair_frame(keys, "baseline", where, agreement, top_k))
    return frames


def native_grid(model: str, image_size: int, layer_path: str | None) -> tuple[int, int] | None:
    """The target layer's map size at ``image_size`` px (what smooth_random is drawn on), from
    :func:`xaimed.models.layers.cam_map_sizes`; None where it gives none for the layer."""
    from xaimed.models.layers import cam_map_sizes  # torch: only where there are pairs

    maps = cam_map_sizes(model, image_size)
    size = maps["sizes"].get(layer_path or maps["default"])
    return None if size is None else (int(size[0]), int(size[1]))


def repeatability_pairs(
    cams_paths: Sequence[str | PathLike],
    maps: Sequence[Mapping],
    top_k: float = 10,
    seed: int = 0,
    target_layers: Mapping[str, str | None] | None = None,
) -> pd.DataFrame:
    """Every pair of maps of one image by two models (:data:`PAIR_COLUMNS`, one row per image
    and pair of folds, for each method and baseline), from the cams.npz files ``cams_paths``;
    ``maps[i]`` names file i's dataset, model, fold and method. ``target_layers``: each model's
    CAM layer (None: the registry's default), the grid smooth_random is drawn on."""
    if len(cams_paths) != len(maps):
        raise ValueError(f"{len(cams_paths)} CAM files for {len(maps)} map descriptions")
    target_layers = dict(target_layers or {})
    by_method: dict[tuple, dict[int, str | PathLike]] = {}
    for path, key in zip(cams_paths, maps, strict=True):
        by_method.setdefault(tuple(key[k] for k in MAP_KEYS), {})[int(key["fold"])] = path
    frames: list[pd.DataFrame] = []
    found_by_model: dict[tuple, list[pd.DataFrame]] = {key[:2]: [] for key in by_method}
    shapes: dict[tuple, tuple] = {}
    for key, paths in by_method.items():
        read = {fold: _read_maps(path) for fold, path in paths.items()}
        found = _pairs_of_folds(dict(zip(MAP_KEYS, key, strict=True)), read, top_k, seed)
        n_images = pd.concat(found)["image_id"].nunique() if found else 0
        log.info(
            "%s: %d images explained by two or more of %d folds",
            "/".join(key),
            n_images,
            len(paths),
        )
        if found:
            found_by_model[key[:2]] += found
            shapes[key[:2]] = next(iter(read.values()))["cams"].shape[1:]
        frames += found
    for (dataset, model), found in found_by_model.items():
        if not found:
            log.warning("%s/%s: %s", dataset, model, NO_REPEATS)
            continue
        shape = shapes[(dataset, model)]
        grid = native_grid(model, shape[-1], target_layers.get(model))
        if grid is None:
            log.warning(
                "%s/%s: no map size known for its target layer: no smooth_random agreement",
                dataset,
                model,
            )
        method_pairs = pd.concat(found, ignore_index=True)
        frames += _baseline_pairs(method_pairs, shape, grid, top_k, seed)
    if not frames:
        return empty_because(pd.DataFrame(columns=PAIR_COLUMNS), NO_REPEATS)
    pairs = pd.concat(frames, ignore_index=True)[PAIR_COLUMNS]
    _log_excluded(pairs[pairs["kind"] == "method"])
    return pairs


def _log_excluded(pairs: pd.DataFrame) -> None:
    """Say how many pairs the table and tests leave out, and why."""
    for key, g in pairs.groupby(MAP_KEYS, sort=False):
        other, constant = int((~g["same_class"]).sum()), int(g["constant"].sum())
        if other or constant:
            log.warning(
                "%s: of %d pairs, %d explain different predicted classes and %d have a constant "
                "map: neither counts in the repeatability table or tests",
                "/".join(key),
                len(g),
                other,
                constant,
            )


# --- The table and the tests: one value per image ---------------------------------------------


def per_image_agreement(pairs: pd.DataFrame) -> pd.DataFrame:
    """Long, one row per (dataset, model, method, kind, metric, image_id): the metric's mean
    over the image's pairs that count (same predicted class, no constant map), with n_pairs
    and the folds they came from."""
    counted = pairs[pairs["same_class"].astype(bool)]
    long = counted.melt(
        id_vars=[*MAP_KEYS, "kind", "image_id", "fold_a", "fold_b"],
        value_vars=AGREEMENT_METRICS,
        var_name="metric",
    ).dropna(subset=["value"])
    grouped = long.groupby([*MAP_KEYS, "kind", "metric", "image_id"], sort=False)
    return grouped.agg(value=("value", "mean"), n_pairs=("value", "size")).reset_index()


def _summary(values: pd.Series, alpha: float) -> dict:
    """n_images and the spread of the per-image agreement; NaN without an image (every pair
    of another class or with a constant map: counted beside it)."""
    v = values.to_numpy(dtype=float)
    if not len(v):
        return {"n_images": 0} | dict.fromkeys(
            ["mean", "sd", "median", "q25", "q75", "ci_low", "ci_high"], np.nan
        )
    ci_low, ci_high = mean_ci(v, alpha)
    return {
        "n_images": len(v),
        "mean": v.mean(),
        "sd": v.std(ddof=1) if len(v) > 1 else np.nan,
        "median": np.median(v),
        "q25": np.percentile(v, 25),
        "q75": np.percentile(v, 75),
        "ci_low": ci_low,
        "ci_high": ci_high,
    }


def repeatability_table(pairs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """:data:`TABLE_COLUMNS`, one row per dataset, model, CAM method and agreement metric, over
    the images explained by two or more models: n_images, n_pairs (the pairs that count),
    n_models (the folds they came from), the spread of the per-image agreement (mean, sd,
    median, q25/q75, the (1 - ``alpha``) t-interval of the mean), the baselines' mean
    agreement over the same images, and the pairs left out (other class, constant map).
    Empty, saying :data:`NO_REPEATS`, where no image was explained twice."""
    if pairs.empty:
        return empty_because(pd.DataFrame(columns=TABLE_COLUMNS), NO_REPEATS)
    images = per_image_agreement(pairs)
    baselines = images[images["kind"] == "baseline"].pivot_table(
        index=["dataset", "model", "metric", "image_id"], columns="method", values="value"
    )
    methods = pairs[pairs["kind"] == "method"]
    rows = []
    for (dataset, model, method), all_pairs in methods.groupby(MAP_KEYS, sort=True):
        mine = images[
            (images["kind"] == "method")
            & (images["dataset"] == dataset)
            & (images["model"] == model)
            & (images["method"] == method)
        ]
        counted = all_pairs[all_pairs["same_class"].astype(bool)]
        for metric in AGREEMENT_METRICS:
            values = mine[mine["metric"] == metric]
            folds = counted.dropna(subset=[metric])[["fold_a", "fold_b"]]
            row = {
                "dataset": dataset,
                "model": model,
                "method": method,
                "metric": metric,
                **_summary(values["value"], alpha),
                "n_pairs": int(values["n_pairs"].sum()),
                "n_models": len(np.unique(folds.to_numpy())),
                "n_pairs_other_class": int((~all_pairs["same_class"].astype(bool)).sum()),
                "n_pairs_constant": int(counted["constant"].astype(bool).sum()),
                "top_k": all_pairs["top_k"].iloc[0] if metric == "iou_top_k" else np.nan,
            }
            index = pd.MultiIndex.from_arrays(
                [[dataset] * len(values), [model] * len(values), [metric] * len(values)]
                + [values["image_id"].to_list()]
            )
            for baseline in REPEATABILITY_BASELINES:
                column = baselines[baseline] if baseline in baselines else pd.Series(dtype=float)
                row[f"baseline_{baseline}"] = column.reindex(index).mean()
            rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def compare_methods_repeatability(
    pairs: pd.DataFrame, adjust: str = "holm", alpha: float = 0.05
) -> pd.DataFrame:
    """Paired tests between every pair of CAM methods on each agreement metric, paired by
    image (its mean agreement over its pairs), adjusted (``adjust``) within dataset, model
    and metric: :func:`xaimed.stats.compare.paired_tests`, as the quality tests."""
    block = ["dataset", "model", "metric"]
    columns = table_columns(block, ["method_a", "method_b"], False)
    if pairs.empty:
        return empty_because(pd.DataFrame(columns=columns), NO_REPEATS)
    images = per_image_agreement(pairs)
    long = images[images["kind"] == "method"]
    order = {m: i for i, m in enumerate(AGREEMENT_METRICS)}
    long = long.sort_values(
        ["dataset", "model", "metric"], key=lambda s: s.map(order) if s.name == "metric" else s
    )
    if long.empty:
        return empty_because(
            pd.DataFrame(columns=columns),
            f"{NO_PAIRS}: no pair of maps of one image explains the same class with a map "
            "that is not constant",
        )
    return paired_tests(
        long,
        block,
        "method",
        "image_id",
        "value",
        adjust=adjust,
        alpha=alpha,
        levels_within=["dataset", "model"],
    )
