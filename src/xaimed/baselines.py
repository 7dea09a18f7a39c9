"""The baseline maps of one trained model's held-out fold, scored like the methods' maps.

A random map and a centre Gaussian (floors) and the lesion mask itself (a ceiling, where there
is one) are scored on exactly the images the explain stage explains (same selection), so the
tables can put each method's mean beside what a map that knows nothing, or everything, scores.
The maps do not depend on the method, so they are scored once per model and fold.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from xaimed import integrity
from xaimed.faithfulness import faithfulness_scores
from xaimed.heldout import Fold, load_fold
from xaimed.localisation import BASELINES, baseline_maps, localisation_scores
from xaimed.runtime import seed_everything
from xaimed.scores import confidence_increase

__all__ = ["BASELINE_COLUMNS", "BASELINE_SETTINGS", "score_baselines", "score_fold_baselines"]

log = logging.getLogger("xaimed.baselines")

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
    "confidence_increase",
    "pointing_game",
    "energy_pointing_game",
    "iou_top_k",
    "deletion_auc",
    "insertion_auc",
]


#: the explain settings the baseline scores take (the others are the methods' own)
BASELINE_SETTINGS = ("batch_size", "tolerance", "top_k", "faithfulness_steps")


def score_baselines(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    masks_path: str | os.PathLike,
    scores_path: str | os.PathLike,
    *,
    seed: int = 0,
    device: str = "auto",
    max_images: int | None = None,
    **settings,
) -> pd.DataFrame:
    """:func:`score_fold_baselines` on the fold :func:`~xaimed.heldout.load_fold` loads: the
    images the explain stage explains with the same ``max_images``."""
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
    return score_fold_baselines(fold, scores_path, seed=seed, **settings)


def score_fold_baselines(
    fold: Fold,
    scores_path: str | os.PathLike,
    *,
    batch_size: int = 16,
    seed: int = 0,
    tolerance: float = 0,
    top_k: float = 10,
    faithfulness_steps: int = 10,
) -> pd.DataFrame:
    """Scores of each baseline map (:data:`~xaimed.localisation.BASELINES`) on the images of
    ``fold``, which must have its lesion masks; the keyword arguments mean what they mean for
    :func:`xaimed.explain.explain_method`. Writes ``scores_path`` (parquet,
    :data:`BASELINE_COLUMNS`, one row per image and baseline; the ``mask`` baseline is NaN
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
    seeds = fold.seeds(seed)
    maps = baseline_maps(fold.masks, ids, seed)
    has_lesion = fold.masks.reshape(n, -1).any(axis=1) if n else np.zeros(0, dtype=bool)
    frames = []
    for name in BASELINES:
        columns = {c: np.full(n, np.nan) for c in BASELINE_COLUMNS[10:]}
        for start in range(0, n, batch_size):
            part = slice(start, min(start + batch_size, n))
            x = fold.inputs(part.start, part.stop)
            cams = maps[name][part].astype(np.float32)
            part_targets = targets[part].tolist()
            quality = {
                "confidence_increase": confidence_increase(
                    fold.model, x, cams, part_targets, batch_size
                ),
                **faithfulness_scores(
                    fold.model,
                    x,
                    cams,
                    part_targets,
                    steps=faithfulness_steps,
                    seeds=seeds[part],
                    batch_size=batch_size,
                ),
                **localisation_scores(
                    cams, fold.masks[part], tolerance=tolerance, top_k=top_k, seeds=seeds[part]
                ),
            }
            for column, values in quality.items():
                columns[column][part] = values
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
