"""The explain stage: CAMs of one trained model on its held-out fold, and their scores."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaimed import integrity
from xaimed.baselines import BASELINE_SETTINGS, score_fold_baselines
from xaimed.cams import METHODS, compute_cams, compute_cams_and_signs
from xaimed.faithfulness import faithfulness_scores
from xaimed.heldout import Fold, classes_in_turn, load_fold
from xaimed.localisation import baseline_maps, localisation_scores
from xaimed.models import target_layer
from xaimed.runtime import atomic_write, seed_everything
from xaimed.sanity import sanity_check, spearman, ssim
from xaimed.scores import confidence_increase, constant_maps, road

__all__ = [
    "QUALITY_COLUMNS",
    "SANITY_FILE_COLUMNS",
    "SCORE_COLUMNS",
    "explain",
    "explain_fold",
    "explain_method",
]

log = logging.getLogger("xaimed.explain")

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
    "constant_map",  # all zero or flat (xaimed.scores.constant_maps): the map points nowhere
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
    *(f"{s}_{b}" for s in ("spearman", "ssim") for b in ("random", "centre", "mask")),
]


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a str path
        np.savez_compressed(fh, **arrays)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; supported: {', '.join(METHODS)}")


def explain(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    method: str,
    scores_path: str | os.PathLike,
    cams_path: str | os.PathLike,
    *,
    sanity_path: str | os.PathLike | None = None,
    **options,
) -> pd.DataFrame:
    """CAMs (``method``) for the predicted class of every image in ``predictions`` (or at most
    ``max_images``, the predicted classes taken in turn) and their scores, written to
    ``scores_path`` and ``cams_path`` (and the sanity check to ``sanity_path``, if given):
    :func:`explain_fold` with this one method; ``options`` are its keyword arguments."""
    return explain_fold(
        model_path,
        images_path,
        manifest_path,
        predictions_path,
        [method],
        [scores_path],
        [cams_path],
        [sanity_path],
        **options,
    )


def explain_fold(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    methods: Sequence[str],
    scores_paths: Sequence[str | os.PathLike],
    cams_paths: Sequence[str | os.PathLike],
    sanity_paths: Sequence[str | os.PathLike | None],
    baselines_path: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    device: str = "auto",
    max_images: int | None = None,
    masks_path: str | os.PathLike | None = None,
    **settings,
) -> pd.DataFrame:
    """Every method of ``methods`` on one trained model's held-out fold and, with
    ``baselines_path``, the baseline maps (:func:`xaimed.baselines.score_fold_baselines`), in
    one process that loads the model, images and masks once: at the demo's size a job per
    method spent longer importing torch and loading than explaining.

    Method ``methods[i]`` writes ``scores_paths[i]``, ``cams_paths[i]`` and ``sanity_paths[i]``
    (None: no sanity check), the same files it writes alone (``settings`` are
    :func:`explain_method`'s keyword arguments; the global seed is reset before each method,
    so a method's results do not depend on the ones before it). The images are those of
    :func:`~xaimed.heldout.load_fold` (``max_images``; ``masks_path``: the lesion masks, for
    the localisation scores and the baselines). Every method is checked before any work, and a
    missing target layer fails before the first method writes anything. Returns all the
    methods' scores, one frame.
    """
    if not len(methods) == len(scores_paths) == len(cams_paths) == len(sanity_paths):
        raise ValueError(
            f"{len(methods)} methods need as many scores, cams and sanity paths; got "
            f"{len(scores_paths)}, {len(cams_paths)} and {len(sanity_paths)}"
        )
    for method in methods:
        _check_method(method)
    fold = load_fold(
        model_path,
        images_path,
        manifest_path,
        predictions_path,
        masks_path=masks_path,
        device=device,
        max_images=max_images,
    )
    frames = []
    for done, (method, scores, cams, sanity) in enumerate(
        zip(methods, scores_paths, cams_paths, sanity_paths, strict=True)
    ):
        log.info("method %d/%d: %s", done + 1, len(methods), method)
        seed_everything(seed)
        frames.append(
            explain_method(fold, method, scores, cams, seed=seed, sanity_path=sanity, **settings)
        )
    if baselines_path is not None:
        seed_everything(seed)
        baseline_settings = {k: v for k, v in settings.items() if k in BASELINE_SETTINGS}
        score_fold_baselines(fold, baselines_path, seed=seed, **baseline_settings)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)


def explain_method(
    fold: Fold,
    method: str,
    scores_path: str | os.PathLike,
    cams_path: str | os.PathLike,
    *,
    batch_size: int = 16,
    road_percentiles: Sequence[float] = (20, 40, 60, 80),
    seed: int = 0,
    sanity_path: str | os.PathLike | None = None,
    tolerance: float = 0,
    top_k: float = 10,
    faithfulness_steps: int = 10,
    sanity_images: int = 4,
    sanity_depths: Sequence[int | str] = (1, "all"),
    layer_path: str | None = None,
) -> pd.DataFrame:
    """CAMs (``method``) for the predicted class of every image of ``fold`` and their scores:
    confidence increase, ROAD, deletion and insertion AUC (``faithfulness_steps``), and, where
    the fold has lesion masks, the localisation scores (pointing game within ``tolerance``
    pixels, energy pointing game, IoU of the ``top_k`` % most relevant pixels).

    Writes ``scores_path`` (parquet, :data:`SCORE_COLUMNS`; ``seconds`` = the batch's CAM time
    / batch size) and ``cams_path`` (npz: image_id str, cams float16 (N, S, S), target int),
    each atomically, and returns the scores frame. With ``sanity_path``, also the randomisation
    sanity check of ``sanity_images`` of the images (classes in turn) at each cascade depth of
    ``sanity_depths`` (:data:`SANITY_FILE_COLUMNS`). Every map is taken at the target layer
    ``layer_path`` (a dotted module path, config ``explain.target_layers``; None: the default
    of :data:`xaimed.models.CAM_FAMILIES`).
    """
    _check_method(method)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model, meta, dev, rows = fold.model, fold.meta, fold.device, fold.rows
    model_name = meta["model"]
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
    target_layer(model, model_name, layer_path)  # a missing layer fails here, before any work

    targets = rows["pred"].to_numpy().astype(np.int64)
    seeds = fold.seeds(seed)
    all_cams = np.empty((n, *fold.images.shape[-2:]), dtype=np.float16)
    cams32 = np.empty((n, *fold.images.shape[-2:]), dtype=np.float32)
    columns = {name: np.full(n, np.nan) for name in ("confidence_increase", "road", "seconds")}
    columns.update({name: np.full(n, np.nan) for name in QUALITY_COLUMNS})
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
        stop = min(start + batch_size, n)
        part = slice(start, stop)
        batch_targets = targets[part].tolist()
        x = fold.inputs(start, stop)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        maps, flipped = compute_cams_and_signs(
            model,
            model_name,
            method,
            x,
            batch_targets,
            batch_size=batch_size,
            layer_path=layer_path,
        )
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        columns["seconds"][part] = (time.perf_counter() - t0) / (stop - start)
        columns["sign_flipped"][part] = flipped
        all_cams[part] = maps
        cams32[part] = maps
        columns["confidence_increase"][part] = confidence_increase(
            model, x, maps, batch_targets, batch_size
        )
        columns["road"][part] = road(
            model, x, maps, batch_targets, road_percentiles, seed=seed, batch_size=batch_size
        )
        quality = faithfulness_scores(
            model,
            x,
            maps,
            batch_targets,
            steps=faithfulness_steps,
            seeds=seeds[part],
            batch_size=batch_size,
        )
        if fold.masks is not None:
            quality |= localisation_scores(
                maps, fold.masks[part], tolerance=tolerance, top_k=top_k, seeds=seeds[part]
            )
        for name, values in quality.items():
            columns[name][part] = values
        rate = stop / max(time.perf_counter() - started, 1e-9)
        log.info("images done %d/%d (%.1f img/s)", stop, n, rate)

    constant = constant_maps(cams32)
    if constant.any():
        log.warning(
            "%s/%s fold %s, %s: %d of %d maps are constant (all zero or flat) and point "
            "nowhere; counted in scores.parquet (constant_map) and the tables; a finer target "
            "layer (explain.target_layers) usually helps",
            meta.get("dataset"),
            model_name,
            meta.get("fold"),
            method,
            constant.sum(),
            n,
        )
    scores = pd.DataFrame(
        {
            "dataset": meta.get("dataset"),
            "model": model_name,
            "fold": meta.get("fold"),
            "method": method,
            "image_id": rows["image_id"].astype(str),
            "label": rows["label"].astype(np.int64),
            "label_name": rows["label_name"].astype(str),
            "pred": rows["pred"].astype(np.int64),
            "pred_name": rows["pred_name"].astype(str),
            "correct": (rows["label"].to_numpy() == rows["pred"].to_numpy()).astype(bool),
            **columns,
            "constant_map": constant,
        },
        columns=SCORE_COLUMNS,
    )
    if sanity_path is not None:
        checked = classes_in_turn(rows, sanity_images) if n else np.arange(0)
        sanity = _sanity(fold, method, cams32, checked, seed, sanity_depths, batch_size, layer_path)
        sanity = sanity.assign(
            dataset=meta.get("dataset"), model=model_name, fold=meta.get("fold"), method=method
        )[SANITY_FILE_COLUMNS]
        integrity.write_parquet(sanity, sanity_path)
    integrity.write_parquet(scores, scores_path)
    atomic_write(
        cams_path,
        lambda tmp: _write_npz(
            tmp,
            image_id=scores["image_id"].to_numpy(dtype=str),
            cams=all_cams,
            target=targets,
        ),
    )
    log.info("wrote %s and %s", scores_path, cams_path)
    return scores


def _sanity(
    fold: Fold,
    method: str,
    cams: np.ndarray,
    checked: np.ndarray,
    seed: int,
    depths: Sequence[int],
    batch_size: int,
    layer_path: str | None = None,
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
        depths=depths,
        seed=seed,
        batch_size=batch_size,
        layer_path=layer_path,
    )
    masks = fold.masks[checked] if fold.masks is not None else np.zeros(trained.shape)
    baselines = pd.DataFrame(
        {
            "image_id": ids,
            "pred": rows["pred"].to_numpy(),
            "pred_name": rows["pred_name"].astype(str).to_numpy(),
        }
    )
    for name, maps in baseline_maps(masks, ids, seed).items():
        baselines[f"spearman_{name}"] = spearman(trained, maps)
        baselines[f"ssim_{name}"] = ssim(trained, maps)
        if name == "mask":  # no lesion, no mask to compare with
            empty = ~masks.reshape(len(ids), -1).any(axis=1)
            baselines.loc[empty, ["spearman_mask", "ssim_mask"]] = np.nan
    return result.merge(baselines, on="image_id", how="left")
