"""The generalise stage: one trained model on its held-out fold, in-domain and under shift.

For one dataset, model and fold it predicts the held-out images clean and under every
corruption and severity (:mod:`xaimed.shift.corruptions`), and scores each setting by accuracy,
macro-F1, expected calibration error and Brier score (:mod:`xaimed.shift.calibration`), optionally
after temperature scaling fitted on the validation part that training held back. For explained
models it also measures CAM stability: how far each method's map moves when the image is
corrupted but the prediction stays the same.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score

from xaimed.data.folds import fold_rows, fold_seed
from xaimed.explain.cams import CAM_METHODS, compute_cams
from xaimed.io import integrity
from xaimed.io.runtime import seed_everything, select_device
from xaimed.models.checkpoint import load_checkpoint
from xaimed.models.inputs import IMAGENET_MEAN, IMAGENET_STD, normalize
from xaimed.shift.calibration import (
    TEMPERATURE_RANGE,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    scaled_probs,
)
from xaimed.shift.corruptions import CORRUPTIONS, IN_DOMAIN, corrupt
from xaimed.train.fold import split_train_val

log = logging.getLogger("xaimed.shift.generalise")

METRIC_COLUMNS = [
    "dataset",
    "model",
    "fold",
    "repeat",
    "cv",
    "held_out_sites",
    "shift",
    "severity",
    "n_images",
    "accuracy",
    "f1_macro",
    "ece",
    "brier",
    "temperature",
    "ece_scaled",
    "brier_scaled",
]
STABILITY_COLUMNS = [
    "dataset",
    "model",
    "fold",
    "method",
    "shift",
    "severity",
    "image_id",
    "pred",
    "prediction_kept",
    "map_change",
    "map_correlation",
]
BATCH = 64


@dataclass(frozen=True)
class ShiftSettings:
    """Everything that decides one generalise job: the config's `shift` section, the
    dataset's fold scheme (`cv`, `site_column`), the model's `training.val_fraction`, the
    seed, the device, the model's CAM target layer (`layer_path`; None: the default of
    :data:`xaimed.models.layers.CAM_FAMILIES`) and, in a repeated cross-validation, the folds
    per repeat (`folds`: fold f is in repeat f // folds; None: no repeats). Built from a
    generalise job's params."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    max_images: int | None
    temperature_scaling: bool
    ece_bins: int
    val_fraction: float
    cam_methods: tuple[str, ...]
    cam_severity: int
    cam_images: int
    cv: str
    site_column: str
    seed: int
    device: str
    layer_path: str | None
    folds: int | None = None

    @classmethod
    def from_config(cls, params: dict[str, Any]) -> ShiftSettings:
        """The settings of a generalise job's params (common.smk's generalise_params): every
        key but `layer_path` (given only where a layer was chosen) and `folds` (only in
        repeated runs) is required."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        missing = sorted(known - set(params) - {"layer_path", "folds"})
        if unknown or missing:
            raise ValueError(
                f"shift settings: unknown {unknown}, missing {missing}; known: {sorted(known)}"
            )
        return cls(
            **{**params, "layer_path": params.get("layer_path")},
        )

    def __post_init__(self) -> None:
        for name in ("corruptions", "severities", "cam_methods"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = sorted(set(self.corruptions) - set(CORRUPTIONS))
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; known: {', '.join(CORRUPTIONS)}")
        unknown = sorted(set(self.cam_methods) - set(CAM_METHODS))
        if unknown:
            raise ValueError(
                f"unknown CAM method(s) {unknown} (shift.cam_methods); known: "
                + ", ".join(CAM_METHODS)
            )
        if self.cam_methods and self.cam_severity not in self.severities:
            raise ValueError(
                f"CAM stability is measured at severity {self.cam_severity} "
                "(shift.cam_severity), which is not among the severities evaluated "
                f"{list(self.severities)} (shift.severities)"
            )


def held_out_subset(image_ids: pd.Series, labels: np.ndarray, max_images: int | None) -> np.ndarray:
    """Positions (sorted) of at most `max_images` images, the true classes taken in turn and,
    within a class, images in the order of a hash of their id (ids start with the class
    folder, so id order is not a random order)."""
    n = len(labels)
    if max_images is None or n <= max_images:
        return np.arange(n)
    key = pd.util.hash_pandas_object(image_ids.reset_index(drop=True), index=False).to_numpy()
    order = pd.DataFrame({"label": labels, "key": key}).sort_values(["label", "key"])
    turn = order.groupby("label", sort=False).cumcount()
    chosen = order.assign(turn=turn).sort_values(["turn", "label"], kind="stable")
    return np.sort(chosen.index.to_numpy()[: int(max_images)])


def validation_rows(
    folds: pd.DataFrame, labels: np.ndarray, fold: int, val_fraction: float, seed: int
):
    """Rows of the validation part that training held back from the training rows of `fold`:
    the same rows and seed as :func:`xaimed.train.fold.train_fold` uses."""
    fit_rows, _ = fold_rows(folds, fold)
    _, val_part = split_train_val(labels[fit_rows], val_fraction, fold_seed(folds, fold, seed))
    return fit_rows[val_part]


@torch.no_grad()
def predict_logits(model, images: np.ndarray, mean, std, device: torch.device) -> np.ndarray:
    """float64 logits (N, classes) of uint8 images (N, 3, S, S) in evaluation mode."""
    model.eval()
    out = []
    for start in range(0, len(images), BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH]))
        out.append(model(normalize(batch, mean, std).to(device)).float().cpu())
    if not out:
        return np.zeros((0, 0))
    return torch.cat(out).numpy().astype(np.float64)


def shift_metrics(
    logits: np.ndarray, labels: np.ndarray, temperature: float | None, ece_bins: int
) -> dict[str, float]:
    """Accuracy, macro-F1 (sklearn's, as in the fold metrics), ECE and Brier; the last two
    also after dividing the logits by `temperature` (NaN without one)."""
    probs = scaled_probs(logits)
    pred = probs.argmax(1)
    metrics = {
        "n_images": len(labels),
        "accuracy": float((pred == labels).mean()),
        "f1_macro": float(f1_score(labels, pred, average="macro", zero_division=0)),
        "ece": expected_calibration_error(probs, labels, ece_bins),
        "brier": brier_score(probs, labels),
        "temperature": np.nan,
        "ece_scaled": np.nan,
        "brier_scaled": np.nan,
    }
    if temperature is not None:
        scaled = scaled_probs(logits, temperature)
        metrics["temperature"] = temperature
        metrics["ece_scaled"] = expected_calibration_error(scaled, labels, ece_bins)
        metrics["brier_scaled"] = brier_score(scaled, labels)
    return metrics


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def cam_stability(
    model,
    model_name: str,
    method: str,
    clean: torch.Tensor,
    shifted: dict[tuple[str, int], torch.Tensor],
    clean_pred: np.ndarray,
    shifted_pred: dict[tuple[str, int], np.ndarray],
    layer_path: str | None = None,
) -> list[dict]:
    """Per image and shift: did the prediction stay, and if so how far the map of the (clean)
    predicted class moved: mean |cam_shifted - cam_clean| (maps in [0, 1]) and their Pearson
    correlation (NaN for a constant map). Maps at the target layer ``layer_path`` (as in
    :func:`xaimed.explain.cams.compute_cams`)."""
    targets = clean_pred.tolist()
    clean_maps = compute_cams(model, model_name, method, clean, targets, layer_path=layer_path)
    rows = []
    for (corruption, severity), x in shifted.items():
        kept = shifted_pred[(corruption, severity)] == clean_pred
        maps = np.full_like(clean_maps, np.nan)
        if kept.any():
            keep = np.flatnonzero(kept)
            maps[keep] = compute_cams(
                model,
                model_name,
                method,
                x[keep],
                [targets[i] for i in keep],
                layer_path=layer_path,
            )
        for i in range(len(targets)):
            rows.append(
                {
                    "method": method,
                    "shift": corruption,
                    "severity": severity,
                    "row": i,
                    "prediction_kept": bool(kept[i]),
                    "map_change": float(np.abs(maps[i] - clean_maps[i]).mean())
                    if kept[i]
                    else np.nan,
                    "map_correlation": _correlation(maps[i], clean_maps[i]) if kept[i] else np.nan,
                }
            )
    return rows


def _load(model_path, images_path, manifest_path, folds_path, dev: torch.device):
    """The model and its metadata, the manifest, folds and uint8 images, checked to agree."""
    model, meta = load_checkpoint(model_path, dev)
    manifest = integrity.read_parquet(manifest_path)
    folds = integrity.read_parquet(folds_path)
    if not manifest["image_id"].equals(folds["image_id"]):
        raise ValueError(f"{folds_path} does not list the images of {manifest_path} in order")
    images = integrity.load_array(images_path)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(manifest):
        raise ValueError(
            f"{images_path}: expected uint8 (N, 3, S, S) with N = {len(manifest)} manifest rows, "
            f"got {images.dtype} {images.shape}"
        )
    return model, meta, manifest, folds, images


def _temperature(
    model, images, labels, folds, fold: int, settings: ShiftSettings, mean, std, dev
) -> float | None:
    """The temperature fitted on the validation part training held back (None without
    temperature scaling or without a validation part, which the log says)."""
    if not settings.temperature_scaling:
        return None
    val = validation_rows(folds, labels, fold, settings.val_fraction, settings.seed)
    if not len(val):
        log.warning(
            "no validation part (val_fraction %s): no temperature scaling", settings.val_fraction
        )
        return None
    val_logits = predict_logits(model, np.ascontiguousarray(images[val]), mean, std, dev)
    temperature = fit_temperature(val_logits, labels[val])
    log.info("temperature %.3f fitted on %d validation images", temperature, len(val))
    if np.isclose(temperature, TEMPERATURE_RANGE, rtol=1e-3).any():
        # A validation part classified perfectly (small parts often are) pushes T to 0.
        log.warning(
            "temperature at the bound of %s: too few validation errors to fit it",
            TEMPERATURE_RANGE,
        )
    return temperature


def _stability(
    model,
    model_name: str,
    image_ids: np.ndarray,
    clean: np.ndarray,
    y: np.ndarray,
    logits_of: dict,
    shifted_images: dict,
    settings: ShiftSettings,
    mean,
    std,
    dev,
) -> pd.DataFrame:
    """CAM stability rows of every method in ``settings.cam_methods`` on (at most
    ``cam_images`` of) the evaluated images, at ``cam_severity``."""
    # The classes in turn again: the first rows would all be of the first class.
    pick = held_out_subset(pd.Series(image_ids), y, int(settings.cam_images))
    clean_pred = logits_of[(IN_DOMAIN, 0)].argmax(1)[pick]
    x_clean = normalize(torch.from_numpy(clean[pick]), mean, std).to(dev)
    x_shift = {
        k: normalize(torch.from_numpy(v[pick]), mean, std).to(dev)
        for k, v in shifted_images.items()
    }
    pred_shift = {k: logits_of[k].argmax(1)[pick] for k in shifted_images}
    found = []
    for method in settings.cam_methods:
        found += cam_stability(
            model,
            model_name,
            method,
            x_clean,
            x_shift,
            clean_pred,
            pred_shift,
            layer_path=settings.layer_path,
        )
        log.info(
            "CAM stability of %s at layer %s done on %d images",
            method,
            settings.layer_path or "(default of CAM_FAMILIES)",
            len(pick),
        )
    rows = pd.DataFrame(found)["row"].to_numpy()
    return pd.DataFrame(found).assign(image_id=image_ids[pick][rows], pred=clean_pred[rows])


def generalise(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    folds_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    stability_path: str | os.PathLike,
    *,
    fold: int,
    settings: ShiftSettings,
) -> pd.DataFrame:
    """Evaluate one model on (at most `settings.max_images` of) its held-out fold, clean and
    under each corruption x severity; write one metrics row per setting to `metrics_path` and
    CAM stability rows (empty without `settings.cam_methods`) to `stability_path`. Returns
    the metrics."""
    started = time.perf_counter()
    seed_everything(settings.seed)
    dev = select_device(settings.device)
    model, meta, manifest, folds, images = _load(
        model_path, images_path, manifest_path, folds_path, dev
    )
    mean, std = meta.get("mean") or IMAGENET_MEAN, meta.get("std") or IMAGENET_STD
    labels = manifest["label"].to_numpy().astype(np.int64)
    _, held_out = fold_rows(folds, fold)
    if len(held_out) == 0:
        raise ValueError(f"fold {fold} has no images in {folds_path}")
    ids = manifest["image_id"].iloc[held_out]
    rows = held_out[held_out_subset(ids, labels[held_out], settings.max_images)]
    clean, y = np.ascontiguousarray(images[rows]), labels[rows]
    sites = ""
    if settings.site_column in manifest.columns:
        held_out_sites = manifest[settings.site_column].iloc[held_out].astype(str)
        sites = ",".join(sorted(held_out_sites.unique()))
    temperature = _temperature(model, images, labels, folds, fold, settings, mean, std, dev)
    log.info(
        "%s/%s fold %d: %d of %d held-out images, %d corruptions x %d severities on %s",
        meta.get("dataset"),
        meta["model"],
        fold,
        len(rows),
        len(held_out),
        len(settings.corruptions),
        len(settings.severities),
        dev,
    )

    shifts = [(IN_DOMAIN, 0)] + [
        (c, int(s)) for c in settings.corruptions for s in settings.severities
    ]
    records, logits_of, shifted_images = [], {}, {}
    for corruption, severity in shifts:
        batch = (
            clean
            if corruption == IN_DOMAIN
            else corrupt(clean, corruption, severity, settings.seed)
        )
        logits = predict_logits(model, batch, mean, std, dev)
        logits_of[(corruption, severity)] = logits
        if severity == settings.cam_severity:
            shifted_images[(corruption, severity)] = batch
        metrics = shift_metrics(logits, y, temperature, settings.ece_bins)
        records.append({"shift": corruption, "severity": severity, **metrics})
        log.info(
            "%s severity %d: accuracy %.3f ece %.3f brier %.3f",
            corruption,
            severity,
            metrics["accuracy"],
            metrics["ece"],
            metrics["brier"],
        )
    table = pd.DataFrame(records).assign(
        dataset=meta.get("dataset"),
        model=meta["model"],
        fold=int(fold),
        repeat=0 if settings.folds is None else int(fold) // settings.folds,
        cv=settings.cv,
        held_out_sites=sites,
    )[METRIC_COLUMNS]

    stability = pd.DataFrame(columns=STABILITY_COLUMNS)
    if settings.cam_methods and shifted_images:
        stability = _stability(
            model,
            meta["model"],
            manifest["image_id"].to_numpy()[rows],
            clean,
            y,
            logits_of,
            shifted_images,
            settings,
            mean,
            std,
            dev,
        ).assign(dataset=meta.get("dataset"), model=meta["model"], fold=int(fold))[
            STABILITY_COLUMNS
        ]
    integrity.write_parquet(table, metrics_path)
    integrity.write_parquet(stability, stability_path)
    log.info("done in %.1f s", time.perf_counter() - started)
    return table
