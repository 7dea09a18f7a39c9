"""The baseline maps of one trained model's held-out fold, scored like the methods' maps.

A random map and a centre Gaussian (floors), the lesion mask itself (a ceiling, where there
is one) and random noise as smooth as the CAMs (the blur-bias control) are scored on exactly
the images the explain stage explains (same selection), so the tables can put each method's
mean beside what a map that knows nothing, or everything, scores. The maps do not depend on
the method, so they are scored once per model and fold.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from xaimed.explain.cams import cam_grid
from xaimed.explain.heldout import MAP_SCORES, Fold, load_fold, score_maps
from xaimed.explain.metrics.localisation import BASELINES, baseline_maps
from xaimed.explain.settings import ExplainSettings, QualitySettings
from xaimed.io import integrity
from xaimed.io.runtime import seed_everything

__all__ = ["BASELINE_COLUMNS", "score_baselines", "score_fold_baselines"]

log = logging.getLogger("xaimed.explain.baselines")

BASELINE_COLUMNS = [
    "dataset",
    "model",
    "fold",
    "baseline",
    "image_id",
    "label",
    "label_name",
    "pred",
    "pred_name",
    "correct",
    *MAP_SCORES,  # scored as a method's maps are (xaimed.explain.heldout.score_maps)
]


def score_baselines(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    masks_path: str | os.PathLike,
    scores_path: str | os.PathLike,
    settings: ExplainSettings,
    quality: QualitySettings,
) -> pd.DataFrame:
    """:func:`score_fold_baselines` on the fold :func:`~xaimed.explain.heldout.load_fold` loads: the
    images the explain stage explains with the same ``settings.max_images``."""
    seed_everything(settings.seed)
    fold = load_fold(
        model_path,
        images_path,
        manifest_path,
        predictions_path,
        masks_path=masks_path,
        device=settings.device,
        max_images=settings.max_images,
    )
    return score_fold_baselines(fold, scores_path, settings, quality)


def score_fold_baselines(
    fold: Fold,
    scores_path: str | os.PathLike,
    settings: ExplainSettings,
    quality: QualitySettings,
) -> pd.DataFrame:
    """Scores of each baseline map (:data:`~xaimed.explain.metrics.localisation.BASELINES`) on the
    images of ``fold``, which must have its lesion masks, by
    :func:`~xaimed.explain.heldout.score_maps` as a method's maps are scored. Writes ``scores_path``
    (parquet, :data:`BASELINE_COLUMNS`, one row per image and baseline; the ``mask`` baseline is NaN
    where an image has no lesion)."""
    if fold.masks is None:
        raise ValueError("the baseline maps need the lesion masks (masks_path)")
    rows, meta = fold.rows, fold.meta
    n = len(rows)
    log.info(
        "scoring baselines %s on %d images of %s/%s fold %s",
        ", ".join(BASELINES),
        n,
        meta.get("dataset"),
        meta.get("model"),
        meta.get("fold"),
    )
    ids = rows["image_id"].astype(str).tolist()
    targets = rows["pred"].to_numpy().astype(np.int64)
    grid = (
        cam_grid(fold.model, meta["model"], fold.inputs(0, 1), settings.layer_path) if n else (1, 1)
    )
    log.info("smooth_random drawn at %dx%d, the target layer's map size", *grid)
    maps = baseline_maps(fold.masks, ids, settings.seed, grid=grid)
    has_lesion = fold.masks.reshape(n, -1).any(axis=1) if n else np.zeros(0, dtype=bool)
    frames = []
    for name in BASELINES:
        columns = score_maps(
            fold, maps[name], quality, seed=settings.seed, batch_size=settings.batch_size
        )
        if name == "mask":  # an all-zero map explains nothing
            for values in columns.values():
                values[~has_lesion] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "dataset": meta.get("dataset"),
                    "model": meta["model"],
                    "fold": meta.get("fold"),
                    "baseline": name,
                    "image_id": ids,
                    "label": rows["label"].to_numpy(np.int64),
                    "label_name": rows["label_name"].astype(str).to_numpy(),
                    "pred": targets,
                    "pred_name": rows["pred_name"].astype(str).to_numpy(),
                    "correct": rows["label"].to_numpy() == rows["pred"].to_numpy(),
                    **columns,
                }
            )
        )
        log.info("baseline %s scored", name)
    scores = pd.concat(frames, ignore_index=True)[BASELINE_COLUMNS]
    integrity.write_parquet(scores, scores_path)
    log.info("wrote %s", scores_path)
    return scores
