"""One trained model's held-out images, loaded and checked against its predictions: what
the explain stage explains and the baseline maps are scored on (the same selection), and the
scores of any maps of them (a CAM method's or a baseline's: one loop for both)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from xaimed.explain.metrics.confidence import confidence_increase, road
from xaimed.explain.metrics.faithfulness import faithfulness_scores
from xaimed.explain.metrics.localisation import image_seed, localisation_scores
from xaimed.explain.settings import QualitySettings
from xaimed.io import integrity
from xaimed.io.runtime import select_device
from xaimed.models.checkpoint import load_checkpoint
from xaimed.models.inputs import IMAGENET_MEAN, IMAGENET_STD, normalize

__all__ = ["MAP_SCORES", "Fold", "classes_in_turn", "load_fold", "score_maps"]

#: what :func:`score_maps` gives per image, whatever made the map; the localisation scores
#: are NaN where the fold has no masks or the image no lesion
MAP_SCORES = [
    "confidence_increase",
    "road",
    "pointing_game",
    "energy_pointing_game",
    "iou_top_k",
    "deletion_auc",
    "insertion_auc",
]

log = logging.getLogger("xaimed.explain.heldout")

_PREDICTION_COLUMNS = ["image_id", "label", "label_name", "pred", "pred_name"]


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


def score_maps(
    fold: Fold,
    maps: np.ndarray,
    quality: QualitySettings,
    *,
    seed: int,
    batch_size: int,
    progress: str | None = None,
) -> dict[str, np.ndarray]:
    """:data:`MAP_SCORES` of ``maps`` (N, S, S) in [0, 1], one per image of ``fold`` for its
    predicted class, in batches of ``batch_size``: confidence increase, ROAD
    (``quality.road_percentiles``), deletion and insertion AUC (``quality.faithfulness_steps``)
    and, where the fold has lesion masks, the pointing game within ``quality.tolerance`` pixels,
    the energy pointing game and the IoU of the ``quality.top_k`` % most relevant pixels.
    With ``progress`` (a name), logs the images done after each batch."""
    n = len(fold.rows)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (n, *fold.images.shape[-2:]):
        raise ValueError(f"{maps.shape} maps for {n} images of {fold.images.shape[-2:]} px")
    targets = fold.rows["pred"].to_numpy().astype(np.int64)
    seeds = fold.seeds(seed)
    columns = {name: np.full(n, np.nan) for name in MAP_SCORES}
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        part = slice(start, min(start + batch_size, n))
        x, cams, part_targets = fold.inputs(part.start, part.stop), maps[part], targets[part]
        scores = {
            "confidence_increase": confidence_increase(
                fold.model, x, cams, part_targets, batch_size
            ),
            "road": road(
                fold.model,
                x,
                cams,
                part_targets,
                quality.road_percentiles,
                seed=seed,
                batch_size=batch_size,
            ),
            **faithfulness_scores(
                fold.model,
                x,
                cams,
                part_targets,
                steps=quality.faithfulness_steps,
                seeds=seeds[part],
                batch_size=batch_size,
            ),
        }
        if fold.masks is not None:
            scores |= localisation_scores(
                cams,
                fold.masks[part],
                tolerance=quality.tolerance,
                top_k=quality.top_k,
                seeds=seeds[part],
            )
        for name, values in scores.items():
            columns[name][part] = values
        if progress is not None:
            rate = part.stop / max(time.perf_counter() - started, 1e-9)
            log.info("%s: images scored %d/%d (%.1f img/s)", progress, part.stop, n, rate)
    return columns
