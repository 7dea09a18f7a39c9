"""The explain stage: CAMs of one trained model on its held-out fold, and their scores."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaimed import integrity
from xaimed.cams import METHODS, compute_cams, compute_cams_and_signs
from xaimed.faithfulness import faithfulness_scores
from xaimed.localisation import baseline_maps, image_seed, localisation_scores
from xaimed.models import IMAGENET_MEAN, IMAGENET_STD, load_checkpoint, normalize, target_layer
from xaimed.runtime import atomic_write, seed_everything, select_device
from xaimed.sanity import sanity_check, spearman, ssim
from xaimed.scores import confidence_increase, road

__all__ = [
    "QUALITY_COLUMNS",
    "SANITY_FILE_COLUMNS",
    "SCORE_COLUMNS",
    "Fold",
    "classes_in_turn",
    "explain",
    "load_fold",
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
_PREDICTION_COLUMNS = ["image_id", "label", "label_name", "pred", "pred_name"]


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a str path
        np.savez_compressed(fh, **arrays)


def classes_in_turn(rows: pd.DataFrame, max_images: int) -> np.ndarray:
    """Positions (sorted) of at most ``max_images`` rows, the predicted classes taken in turn.

    Taking the classes in turn makes a capped run explain every class; within a class go by a
    hash of the image_id, not the id itself: ids start with the true class folder, so id order
    would pick the misclassified images of the first folders first.
    """
    key = pd.util.hash_pandas_object(rows["image_id"], index=False).to_numpy()
    ordered = rows.reset_index(drop=True).assign(key=key)
    ordered = ordered.sort_values(["pred", "key"], kind="stable")
    turn = ordered.groupby("pred", sort=False).cumcount()
    chosen = ordered.assign(turn=turn).sort_values(["turn", "pred"], kind="stable")
    return np.sort(chosen.index[: int(max_images)].to_numpy())


def _select_rows(
    predictions: pd.DataFrame, manifest: pd.DataFrame, meta: dict, max_images: int | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Predictions to explain (image_id order) and their rows in images.npy."""
    missing = [c for c in _PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    if "fold" in predictions.columns and meta.get("fold") is not None:
        folds = {str(f) for f in predictions["fold"].unique()}
        if folds - {str(meta["fold"])}:
            raise ValueError(
                f"predictions hold folds {sorted(folds)} but the model was trained for the "
                f"held-out fold {meta['fold']!r}"
            )
    if predictions["image_id"].duplicated().any():
        raise ValueError("predictions list an image_id more than once")
    rows = predictions.sort_values("image_id", kind="stable").reset_index(drop=True)
    if max_images is not None and len(rows) > max_images:
        rows = rows.iloc[classes_in_turn(rows, max_images)].reset_index(drop=True)
    position = pd.Series(np.arange(len(manifest)), index=manifest["image_id"].astype(str))
    if position.index.duplicated().any():
        raise ValueError("manifest lists an image_id more than once")
    ids = rows["image_id"].astype(str)
    unknown = ids[~ids.isin(position.index)]
    if len(unknown):
        raise ValueError(
            f"{len(unknown)} predicted image_ids are not in the manifest, e.g. {list(unknown[:5])}"
        )
    index = position.loc[ids].to_numpy()
    labels = manifest["label"].to_numpy()[index]
    if not np.array_equal(labels.astype(np.int64), rows["label"].to_numpy().astype(np.int64)):
        raise ValueError("labels in predictions disagree with the manifest")
    n_classes = len(meta.get("class_names") or []) or int(meta["num_classes"])
    preds = rows["pred"].to_numpy()
    if len(preds) and (preds.min() < 0 or preds.max() >= n_classes):
        raise ValueError(f"predicted classes outside 0..{n_classes - 1}")
    return rows, index


@dataclass
class Fold:
    """One trained model's held-out images to explain, loaded and checked."""

    model: torch.nn.Module
    meta: dict
    device: torch.device
    rows: pd.DataFrame  # the predictions to explain, image_id order
    images: np.ndarray  # uint8 (n, 3, S, S), rows order
    masks: np.ndarray | None  # uint8 (n, S, S), rows order; None without a mask file
    mean: Sequence[float]
    std: Sequence[float]

    def inputs(self, start: int, stop: int) -> torch.Tensor:
        """Normalised images start..stop-1 on the model's device."""
        batch = torch.from_numpy(np.ascontiguousarray(self.images[start:stop]))
        return normalize(batch, self.mean, self.std).to(self.device)

    def seeds(self, seed: int) -> list[int]:
        return [image_seed(seed, i) for i in self.rows["image_id"].astype(str)]


def load_fold(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    *,
    masks_path: str | os.PathLike | None = None,
    device: str = "auto",
    max_images: int | None = None,
) -> Fold:
    """The model, its held-out predictions (at most ``max_images``, the predicted classes taken
    in turn), their images and (optionally) lesion masks, each checked against the others."""
    dev = select_device(device)
    model, meta = load_checkpoint(model_path, dev)
    images = integrity.load_array(images_path)
    manifest = integrity.read_parquet(manifest_path)
    predictions = integrity.read_parquet(predictions_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"{images_path}: expected uint8 (N, 3, S, S), got {images.dtype} {images.shape}"
        )
    if images.shape[0] != len(manifest):
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but the manifest {len(manifest)} rows"
        )
    size = meta.get("image_size")
    if size is not None and tuple(images.shape[-2:]) != (int(size), int(size)):
        raise ValueError(
            f"images are {images.shape[-2]}x{images.shape[-1]} but the model was trained at "
            f"{size}x{size}"
        )
    masks = None
    if masks_path is not None:
        all_masks = integrity.load_array(masks_path)
        if all_masks.shape != (images.shape[0], *images.shape[-2:]):
            raise ValueError(
                f"{masks_path}: masks {all_masks.shape} do not fit images {images.shape}"
            )
    rows, index = _select_rows(predictions, manifest, meta, max_images)
    if masks_path is not None:
        masks = np.asarray(all_masks[index])
    return Fold(
        model=model,
        meta=meta,
        device=dev,
        rows=rows,
        images=np.asarray(images[index]),
        masks=masks,
        mean=meta.get("mean") or IMAGENET_MEAN,
        std=meta.get("std") or IMAGENET_STD,
    )


def explain(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    method: str,
    scores_path: str | os.PathLike,
    cams_path: str | os.PathLike,
    *,
    batch_size: int = 16,
    road_percentiles: Sequence[float] = (20, 40, 60, 80),
    seed: int = 0,
    device: str = "auto",
    max_images: int | None = None,
    masks_path: str | os.PathLike | None = None,
    sanity_path: str | os.PathLike | None = None,
    tolerance: float = 0,
    top_k: float = 10,
    faithfulness_steps: int = 10,
    sanity_images: int = 4,
    sanity_depths: Sequence[int | str] = (1, "all"),
    layer_path: str | None = None,
) -> pd.DataFrame:
    """CAMs (``method``) for the predicted class of every image in ``predictions`` (or at most
    ``max_images``, the predicted classes taken in turn) and their scores: confidence increase,
    ROAD, deletion and insertion AUC (``faithfulness_steps``), and, with ``masks_path``, the
    localisation scores (pointing game within ``tolerance`` pixels, energy pointing game, IoU
    of the ``top_k`` % most relevant pixels).

    Writes ``scores_path`` (parquet, :data:`SCORE_COLUMNS`; ``seconds`` = the batch's CAM time
    / batch size) and ``cams_path`` (npz: image_id str, cams float16 (N, S, S), target int),
    each atomically, and returns the scores frame. With ``sanity_path``, also the randomisation
    sanity check of ``sanity_images`` of the images (classes in turn) at each cascade depth of
    ``sanity_depths`` (:data:`SANITY_FILE_COLUMNS`). Every map is taken at the target layer
    ``layer_path`` (a dotted module path, config ``explain.target_layers``; None: the default
    of :data:`xaimed.models.CAM_FAMILIES`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; supported: {', '.join(METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seed_everything(seed)
    fold = load_fold(
        model_path,
        images_path,
        manifest_path,
        predictions_path,
        masks_path=masks_path,
        device=device,
        max_images=max_images,
    )
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
