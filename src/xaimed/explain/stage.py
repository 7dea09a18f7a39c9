"""The explain stage in two steps: the CAMs of one trained model on its held-out fold (rule
``cams``), and their scores from the stored maps (rule ``scores``), so a change to how maps are
scored (:class:`~xaimed.explain.settings.QualitySettings`) recomputes no CAM."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaimed.explain.baselines import score_fold_baselines
from xaimed.explain.cams import METHODS, cam_grid, compute_cams, compute_cams_and_signs
from xaimed.explain.heldout import MAP_SCORES, Fold, classes_in_turn, load_fold, score_maps
from xaimed.explain.metrics.confidence import constant_maps
from xaimed.explain.metrics.localisation import BASELINES, baseline_maps
from xaimed.explain.metrics.sanity import sanity_check, spearman, ssim
from xaimed.explain.settings import ExplainSettings, QualitySettings
from xaimed.io import integrity
from xaimed.io.runtime import atomic_write, seed_everything
from xaimed.models.layers import target_layer

__all__ = [
    "QUALITY_COLUMNS",
    "SANITY_FILE_COLUMNS",
    "SCORE_COLUMNS",
    "explain",
    "explain_fold",
    "explain_method",
    "score_fold",
    "score_method",
]

log = logging.getLogger("xaimed.explain.stage")

SCORE_COLUMNS = [
    "dataset",
    "model",
    "fold",
    "method",
    "image_id",
    "label",
    "label_name",
    "pred",
    "pred_name",
    "correct",
    "confidence_increase",
    "road",
    "seconds",
    # all zero or flat (xaimed.explain.metrics.confidence.constant_maps): the map points nowhere
    "constant_map",
]
#: explanation quality, appended to SCORE_COLUMNS: localisation against the lesion mask (NaN
#: where the image has none), deletion/insertion AUCs, and whether a sign-corrected Eigen
#: method flipped the library's sign (NaN for other methods)
QUALITY_COLUMNS = [
    "pointing_game",
    "energy_pointing_game",
    "iou_top_k",
    "deletion_auc",
    "insertion_auc",
    "sign_flipped",
]
SCORE_COLUMNS += QUALITY_COLUMNS
#: sanity.parquet: one row per checked image and cascade depth; <similarity>_<baseline> is the
#: similarity of the trained model's map to a baseline map (what an unrelated map scores)
SANITY_FILE_COLUMNS = [
    "dataset",
    "model",
    "fold",
    "method",
    "image_id",
    "pred",
    "pred_name",
    "stage",
    "randomised",
    "spearman",
    "ssim",
    *(f"{s}_{b}" for s in ("spearman", "ssim") for b in BASELINES),
]


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a str path
        np.savez_compressed(fh, **arrays)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; supported: {', '.join(METHODS)}")


def _check_paths(methods: Sequence[str], **paths: Sequence) -> None:
    for name, given in paths.items():
        if len(given) != len(methods):
            raise ValueError(f"{len(methods)} methods need as many {name} paths; got {len(given)}")
    for method in methods:
        _check_method(method)


def explain(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    method: str,
    scores_path: str | os.PathLike,
    cams_path: str | os.PathLike,
    settings: ExplainSettings,
    quality: QualitySettings,
    *,
    masks_path: str | os.PathLike | None = None,
    sanity_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Both steps for one method: :func:`explain_fold` writes ``cams_path``, then
    :func:`score_fold` scores it into ``scores_path`` (and ``sanity_path``, if given)."""
    args = (model_path, images_path, manifest_path, predictions_path)
    explain_fold(*args, [method], [cams_path], settings)
    return score_fold(
        *args,
        [method],
        [cams_path],
        [scores_path],
        [sanity_path],
        settings,
        quality,
        masks_path=masks_path,
    )


def explain_fold(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    methods: Sequence[str],
    cams_paths: Sequence[str | os.PathLike],
    settings: ExplainSettings,
) -> None:
    """The CAMs of every method of ``methods`` on one trained model's held-out fold (rule
    ``cams``), in one process that loads the model and images once: at the demo's size a job
    per method spent longer importing torch and loading than explaining.

    Method ``methods[i]`` writes ``cams_paths[i]`` (:func:`explain_method`; the global seed is
    reset before each method, so a method's maps do not depend on the ones before it). The
    images are those of :func:`~xaimed.explain.heldout.load_fold` (``settings.max_images``). Every
    method is checked before any work, and a missing target layer fails before the first
    method writes anything.
    """
    _check_paths(methods, cams=cams_paths)
    fold = load_fold(
        model_path,
        images_path,
        manifest_path,
        predictions_path,
        device=settings.device,
        max_images=settings.max_images,
    )
    target_layer(fold.model, fold.meta["model"], settings.layer_path)  # fails before any work
    for done, (method, cams) in enumerate(zip(methods, cams_paths, strict=True)):
        log.info("method %d/%d: %s", done + 1, len(methods), method)
        seed_everything(settings.seed)
        explain_method(fold, method, cams, settings)


def explain_method(
    fold: Fold, method: str, cams_path: str | os.PathLike, settings: ExplainSettings
) -> dict[str, np.ndarray]:
    """CAMs (``method``) for the predicted class of every image of ``fold``, taken at the
    target layer ``settings.layer_path`` in batches of ``settings.batch_size``.

    Writes ``cams_path`` atomically (npz: image_id str, cams float32 (N, S, S), target int,
    seconds = the batch's CAM time / batch size, sign_flipped = whether a sign-corrected Eigen
    method flipped the library's sign, NaN for other methods) and returns its arrays. The maps
    are stored in float32: the scores read them back, and float16 would move ROAD by up to
    0.02 (docs/outputs.md).
    """
    _check_method(method)
    model, meta, dev, rows = fold.model, fold.meta, fold.device, fold.rows
    model_name, layer_path, batch_size = meta["model"], settings.layer_path, settings.batch_size
    n = len(rows)
    log.info(
        "explaining %d images of %s/%s fold %s with %s at layer %s on %s",
        n,
        meta.get("dataset"),
        model_name,
        meta.get("fold"),
        method,
        layer_path or "(default of CAM_FAMILIES)",
        dev,
    )
    targets = rows["pred"].to_numpy().astype(np.int64)
    cams = np.empty((n, *fold.images.shape[-2:]), dtype=np.float32)
    seconds = np.full(n, np.nan)
    flipped = np.full(n, np.nan)
    if n:  # untimed warm-up (lazy init, cuDNN autotuning) so batch 1's seconds are comparable
        compute_cams(
            model,
            model_name,
            method,
            fold.inputs(0, 1),
            targets[:1].tolist(),
            layer_path=layer_path,
        )
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        part = slice(start, min(start + batch_size, n))
        x = fold.inputs(part.start, part.stop)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        cams[part], flipped[part] = compute_cams_and_signs(
            model,
            model_name,
            method,
            x,
            targets[part].tolist(),
            batch_size=batch_size,
            layer_path=layer_path,
        )
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds[part] = (time.perf_counter() - t0) / (part.stop - part.start)
        rate = part.stop / max(time.perf_counter() - started, 1e-9)
        log.info("images done %d/%d (%.1f img/s)", part.stop, n, rate)
    arrays = {
        "image_id": rows["image_id"].to_numpy(dtype=str),
        "cams": cams,
        "target": targets,
        "seconds": seconds,
        "sign_flipped": flipped,
    }
    atomic_write(cams_path, lambda tmp: _write_npz(tmp, **arrays))
    log.info("wrote %s", cams_path)
    return arrays


def score_fold(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    methods: Sequence[str],
    cams_paths: Sequence[str | os.PathLike],
    scores_paths: Sequence[str | os.PathLike],
    sanity_paths: Sequence[str | os.PathLike | None],
    settings: ExplainSettings,
    quality: QualitySettings,
    *,
    masks_path: str | os.PathLike | None = None,
    baselines_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The scores of every method's stored maps (``cams_paths[i]``, written by
    :func:`explain_fold` with the same ``settings``) on one model's held-out fold (rule
    ``scores``): method ``methods[i]`` writes ``scores_paths[i]`` and ``sanity_paths[i]``
    (None: no sanity check; :func:`score_method`) and, with ``baselines_path``, the baseline
    maps' scores (:func:`xaimed.explain.baselines.score_fold_baselines`). ``masks_path``: the lesion
    masks, for the localisation scores and the baselines. The global seed is reset before each
    method. Returns all the methods' scores, one frame."""
    _check_paths(methods, cams=cams_paths, scores=scores_paths, sanity=sanity_paths)
    fold = load_fold(
        model_path,
        images_path,
        manifest_path,
        predictions_path,
        masks_path=masks_path,
        device=settings.device,
        max_images=settings.max_images,
    )
    frames = []
    for done, paths in enumerate(zip(methods, cams_paths, scores_paths, sanity_paths, strict=True)):
        log.info("method %d/%d: %s", done + 1, len(methods), paths[0])
        seed_everything(settings.seed)
        frames.append(score_method(fold, *paths, settings, quality))
    if baselines_path is not None:
        seed_everything(settings.seed)
        score_fold_baselines(fold, baselines_path, settings, quality)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)


def _read_cams(path: str | os.PathLike, fold: Fold) -> dict[str, np.ndarray]:
    """A cams.npz, checked against the images and classes of ``fold``."""
    stored = integrity.read_npz(path)
    missing = {"image_id", "cams", "target", "seconds", "sign_flipped"} - set(stored)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}: made by an older xaimed; rerun cams")
    ids = fold.rows["image_id"].astype(str).to_numpy()
    targets = fold.rows["pred"].to_numpy().astype(np.int64)
    if not (np.array_equal(stored["image_id"], ids) and np.array_equal(stored["target"], targets)):
        raise ValueError(
            f"{path} holds the maps of other images or classes than the {len(ids)} held-out "
            "predictions to score: rerun cams with the same explain settings"
        )
    return stored


def score_method(
    fold: Fold,
    method: str,
    cams_path: str | os.PathLike,
    scores_path: str | os.PathLike,
    sanity_path: str | os.PathLike | None,
    settings: ExplainSettings,
    quality: QualitySettings,
) -> pd.DataFrame:
    """Scores of ``method``'s maps stored in ``cams_path`` (:func:`explain_method`) for the
    images of ``fold``: :data:`~xaimed.explain.heldout.MAP_SCORES`
    (:func:`~xaimed.explain.heldout.score_maps`), with the CAM step's ``seconds`` and
    ``sign_flipped`` beside them and whether each map is constant. Writes ``scores_path`` (parquet,
    :data:`SCORE_COLUMNS`) atomically and returns it. With ``sanity_path``, also the randomisation
    sanity check of ``quality.sanity_images`` of the images (classes in turn) at each cascade depth
    of ``quality.sanity_depths`` (:data:`SANITY_FILE_COLUMNS`), with the maps taken at the same
    target layer.
    """
    _check_method(method)
    meta, rows = fold.meta, fold.rows
    n = len(rows)
    stored = _read_cams(cams_path, fold)
    cams = stored["cams"].astype(np.float32)
    name = f"{meta.get('dataset')}/{meta['model']} fold {meta.get('fold')}, {method}"
    log.info("scoring %d maps of %s", n, name)
    columns = score_maps(
        fold, cams, quality, seed=settings.seed, batch_size=settings.batch_size, progress=method
    )
    constant = constant_maps(cams)
    if constant.any():
        log.warning(
            "%s: %d of %d maps are constant (all zero or flat) and point nowhere; counted in "
            "scores.parquet (constant_map) and the tables; a finer target layer "
            "(explain.target_layers) usually helps",
            name,
            constant.sum(),
            n,
        )
    scores = pd.DataFrame(
        {
            "dataset": meta.get("dataset"),
            "model": meta["model"],
            "fold": meta.get("fold"),
            "method": method,
            "image_id": rows["image_id"].astype(str),
            "label": rows["label"].astype(np.int64),
            "label_name": rows["label_name"].astype(str),
            "pred": rows["pred"].astype(np.int64),
            "pred_name": rows["pred_name"].astype(str),
            "correct": (rows["label"].to_numpy() == rows["pred"].to_numpy()).astype(bool),
            **{column: columns[column] for column in MAP_SCORES},
            "seconds": stored["seconds"],
            "sign_flipped": stored["sign_flipped"],
            "constant_map": constant,
        },
        columns=SCORE_COLUMNS,
    )
    if sanity_path is not None:
        checked = classes_in_turn(rows, quality.sanity_images) if n else np.arange(0)
        sanity = _sanity(fold, method, cams, checked, settings, quality)
        sanity = sanity.assign(
            dataset=meta.get("dataset"), model=meta["model"], fold=meta.get("fold"), method=method
        )[SANITY_FILE_COLUMNS]
        integrity.write_parquet(sanity, sanity_path)
    integrity.write_parquet(scores, scores_path)
    log.info("wrote %s", scores_path)
    return scores


def _sanity(
    fold: Fold,
    method: str,
    cams: np.ndarray,
    checked: np.ndarray,
    settings: ExplainSettings,
    quality: QualitySettings,
) -> pd.DataFrame:
    """The randomisation check of the images at positions ``checked``, with the similarity of
    their trained maps to each baseline map beside it."""
    rows = fold.rows.iloc[checked]
    ids = rows["image_id"].astype(str).tolist()
    trained = cams[checked]
    inputs = torch.cat([fold.inputs(i, i + 1) for i in checked]) if len(checked) else None
    if inputs is None:
        return pd.DataFrame(columns=SANITY_FILE_COLUMNS)
    result = sanity_check(
        fold.model,
        fold.meta["model"],
        method,
        inputs,
        rows["pred"].tolist(),
        trained,
        ids,
        depths=quality.sanity_depths,
        seed=settings.seed,
        batch_size=settings.batch_size,
        layer_path=settings.layer_path,
    )
    masks = fold.masks[checked] if fold.masks is not None else np.zeros(trained.shape)
    baselines = pd.DataFrame(
        {
            "image_id": ids,
            "pred": rows["pred"].to_numpy(),
            "pred_name": rows["pred_name"].astype(str).to_numpy(),
        }
    )
    grid = cam_grid(fold.model, fold.meta["model"], inputs, settings.layer_path)
    for name, maps in baseline_maps(masks, ids, settings.seed, grid=grid).items():
        baselines[f"spearman_{name}"] = spearman(trained, maps)
        baselines[f"ssim_{name}"] = ssim(trained, maps)
        if name == "mask":  # no lesion, no mask to compare with
            empty = ~masks.reshape(len(ids), -1).any(axis=1)
            baselines.loc[empty, ["spearman_mask", "ssim_mask"]] = np.nan
    return result.merge(baselines, on="image_id", how="left")
