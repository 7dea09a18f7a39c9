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
from xaimed.cams import METHODS, compute_cams
from xaimed.models import IMAGENET_MEAN, IMAGENET_STD, load_checkpoint, normalize
from xaimed.runtime import atomic_write, seed_everything, select_device
from xaimed.scores import confidence_increase, road

__all__ = ["SCORE_COLUMNS", "explain"]

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
_PREDICTION_COLUMNS = ["image_id", "label", "label_name", "pred", "pred_name"]


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a str path
        np.savez_compressed(fh, **arrays)


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
        # Take the predicted classes in turn, so a capped run explains every class; within a
        # class go by a hash of the image_id, not the id itself: ids start with the true class
        # folder, so id order would pick the misclassified images of the first folders first.
        key = pd.util.hash_pandas_object(rows["image_id"], index=False).to_numpy()
        rows = rows.assign(key=key).sort_values(["pred", "key"], kind="stable")
        turn = rows.groupby("pred", sort=False).cumcount()
        chosen = rows.assign(turn=turn).sort_values(["turn", "pred"], kind="stable")
        rows = rows.drop(columns="key")
        keep = chosen.index[: int(max_images)]
        rows = rows.loc[sorted(keep)].reset_index(drop=True)
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
) -> pd.DataFrame:
    """CAMs (``method``) for the predicted class of every image in ``predictions`` (or at most
    ``max_images``, the predicted classes taken in turn) and their confidence increase and
    ROAD scores.

    Writes ``scores_path`` (parquet, :data:`SCORE_COLUMNS`; ``seconds`` = the batch's CAM time
    / batch size) and ``cams_path`` (npz: image_id str, cams float16 (N, S, S), target int),
    each atomically, and returns the scores frame.
    """
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; supported: {', '.join(METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = select_device(device)
    seed_everything(seed)
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
    rows, index = _select_rows(predictions, manifest, meta, max_images)
    mean = meta.get("mean") or IMAGENET_MEAN
    std = meta.get("std") or IMAGENET_STD
    model_name = meta["model"]
    n = len(rows)
    log.info(
        "explaining %d images of %s/%s fold %s with %s on %s",
        n,
        meta.get("dataset"),
        model_name,
        meta.get("fold"),
        method,
        dev,
    )

    targets = rows["pred"].to_numpy().astype(np.int64)
    all_cams = np.empty((n, *images.shape[-2:]), dtype=np.float16)
    conf = np.empty(n, dtype=np.float64)
    road_scores = np.empty(n, dtype=np.float64)
    seconds = np.empty(n, dtype=np.float64)
    if n:  # untimed warm-up (lazy init, cuDNN autotuning) so batch 1's seconds are comparable
        first = normalize(torch.from_numpy(np.ascontiguousarray(images[index[:1]])), mean, std)
        compute_cams(model, model_name, method, first.to(dev), targets[:1].tolist())
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch_targets = targets[start:stop].tolist()
        x = normalize(
            torch.from_numpy(np.ascontiguousarray(images[index[start:stop]])), mean, std
        ).to(dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        maps = compute_cams(model, model_name, method, x, batch_targets, batch_size=batch_size)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds[start:stop] = (time.perf_counter() - t0) / (stop - start)
        all_cams[start:stop] = maps
        conf[start:stop] = confidence_increase(model, x, maps, batch_targets, batch_size)
        road_scores[start:stop] = road(
            model, x, maps, batch_targets, road_percentiles, seed=seed, batch_size=batch_size
        )
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
            "confidence_increase": conf,
            "road": road_scores,
            "seconds": seconds,
        },
        columns=SCORE_COLUMNS,
    )
    atomic_write(scores_path, lambda tmp: scores.to_parquet(tmp, index=False))
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
