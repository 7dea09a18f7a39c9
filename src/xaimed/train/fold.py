"""Train one CNN on one cross-validation fold and predict its held-out images.

Reads top to bottom in the order things happen: the training and validation parts, the
trainer's epochs (:mod:`xaimed.train.trainer`, one log line per epoch), then the three outputs
of the contract: `model.pt` (best epoch on the validation part), `history.parquet` and
`predictions.parquet`.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from xaimed.data.folds import fold_rows, fold_seed
from xaimed.data.manifest import class_names
from xaimed.io import integrity
from xaimed.io.runtime import seed_everything
from xaimed.models import checkpoint, inputs
from xaimed.train import resume
from xaimed.train.trainer import (
    KEPT_EPOCHS,
    Trainer,
    TrainSettings,
    _epoch_errors,
    _is_better,
    _val_metrics,
)

log = logging.getLogger("xaimed.train.fold")


def split_train_val(
    labels: np.ndarray, val_fraction: float, seed: int, names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and validation parts, stratified by class.

    A class with a single image here cannot be stratified (scikit-learn refuses, naming a
    class index): its image stays in the training part, the others are split as usual, and
    the log names the class (``names[label]``) and its count. With too few images for any
    validation part, all train and the log says so."""
    rows = np.arange(len(labels))
    if val_fraction <= 0:
        return rows, rows[:0]
    classes, counts = np.unique(labels, return_counts=True)
    single = classes[counts < 2]
    if len(single):
        log.warning(
            "too few images for the stratified validation part: %s; kept in training only, "
            "the validation part is drawn from the other classes",
            ", ".join(
                f"class {names[c] if names is not None else c!r} has 1 training image"
                for c in single
            ),
        )
    split = rows[~np.isin(labels, single)]
    n_classes = len(classes) - len(single)
    # Each class needs one image on both sides of the stratified split.
    n_val = min(max(n_classes, round(val_fraction * len(rows))), len(split) - n_classes)
    if n_classes == 0 or n_val < n_classes:
        log.warning("too few training images (%d) for a validation part: none", len(rows))
        return rows, rows[:0]
    train_rows, val_rows = train_test_split(
        split, test_size=n_val, stratify=labels[split], random_state=seed
    )
    train_rows = np.concatenate([train_rows, rows[np.isin(labels, single)]])
    return np.sort(train_rows), np.sort(val_rows)


def prediction_table(
    image_ids: pd.Series,
    fold: int,
    labels: np.ndarray,
    probs: np.ndarray,
    names: list[str],
    *,
    dataset: str,
    model: str,
) -> pd.DataFrame:
    """The contract's predictions table; dataset and model make each file self-describing."""
    pred = probs.argmax(1)
    table = pd.DataFrame(
        {
            "dataset": dataset,
            "model": model,
            "image_id": image_ids.to_numpy(),
            "fold": fold,
            "label": labels,
            "label_name": [names[i] for i in labels],
            "pred": pred,
            "pred_name": [names[i] for i in pred],
        }
    )
    for k, name in enumerate(names):
        table[f"prob_{name}"] = probs[:, k].astype("float64")
    return table


def train_fold(
    *,
    images_path: str | Path,
    manifest_path: str | Path,
    folds_path: str | Path,
    dataset: str,
    fold: int,
    settings: TrainSettings,
    model_path: str | Path,
    history_path: str | Path,
    predictions_path: str | Path,
    checkpoint_path: str | Path | None = None,
    checkpoint_seconds: float | None = None,
) -> pd.DataFrame:
    """Train `settings.model` on every fold but `fold`, keep the best validation epoch (or the
    last, `keep: last`), and predict the held-out fold. Returns the history table.

    With `checkpoint_path`, the state after an epoch is saved there once `checkpoint_seconds`
    of training have passed since the last save (None: xaimed.train.resume.interval(); 0: every
    epoch), and a rerun after a kill resumes from the last saved epoch (see
    xaimed.train.resume); the checkpoint is deleted once the outputs are written."""
    if checkpoint_seconds is None:
        checkpoint_seconds = resume.interval()
    manifest = integrity.read_parquet(manifest_path)
    folds = integrity.read_parquet(folds_path)
    settings = replace(settings, seed=fold_seed(folds, fold, settings.seed))
    seed_everything(settings.seed)
    if not manifest["image_id"].equals(folds["image_id"]):
        raise ValueError(f"{folds_path} does not list the images of {manifest_path} in order")
    names = class_names(manifest)
    store = integrity.load_array(images_path)
    labels = manifest["label"].to_numpy()
    fit_rows, held_out = fold_rows(folds, fold)
    if len(held_out) == 0:
        raise ValueError(f"dataset {dataset!r}: fold {fold} has no images in {folds_path}")
    train_part, val_part = split_train_val(
        labels[fit_rows], settings.val_fraction, settings.seed, names
    )
    train_rows, val_rows = fit_rows[train_part], fit_rows[val_part]

    def tensor(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(store[rows]))

    steps = settings.epochs * math.ceil(len(train_rows) / settings.batch_size)
    trainer = Trainer(settings, len(names), steps, image_size=int(store.shape[-1]))
    host_train_images = tensor(train_rows)
    train_images = trainer.stage(host_train_images)  # may be on the GPU from here on
    train_labels = torch.from_numpy(labels[train_rows])
    val_images = trainer.stage(tensor(val_rows))
    log.info(
        "%s/%s fold %d: %d training, %d validation, %d held-out images on %s, %s",
        dataset,
        settings.model,
        fold,
        len(train_rows),
        len(val_rows),
        len(held_out),
        trainer.device,
        trainer.precision,
    )

    history, best, best_state, best_epoch, first_epoch = [], None, None, 0, 1
    run_id = resume.fingerprint(
        settings=settings,
        dataset=dataset,
        fold=fold,
        train_rows=train_rows.tolist(),
        val_rows=val_rows.tolist(),
        labels=labels.tolist(),
        store=list(store.shape),
        # a run requeued on a node with(out) native bfloat16 starts over rather than mix the two
        precision=trainer.precision,
        # the pixels themselves: a rebuilt image store must not resume an old run
        images=hashlib.sha256(host_train_images.numpy()).hexdigest(),
    )
    resumed = resume.load(checkpoint_path, run_id) if checkpoint_path else None
    if resumed:
        trainer.restore(resumed["trainer"])
        resume.set_rng_states(resumed["rng"])
        history, best, best_epoch = resumed["history"], resumed["best"], resumed["best_epoch"]
        best_state = resumed["best_state"] or copy.deepcopy(trainer.model.state_dict())
        first_epoch = settings.epochs + 1 if resumed["stopped"] else resumed["epoch"] + 1
        log.info("resuming after epoch %d from %s", resumed["epoch"], checkpoint_path)
    # Scoring the validation part needs a batch-norm pass over the training images first
    # (recalibrate_batchnorm), about a quarter of an epoch: only done every epoch where an
    # epoch's score decides something (the best epoch, early stopping).
    if settings.keep not in KEPT_EPOCHS:
        raise ValueError(f"unknown training.keep {settings.keep!r}; choose one of {KEPT_EPOCHS}")
    keep_last = settings.keep == "last"
    validate_each_epoch = settings.patience > 0 or (not keep_last and len(val_rows) > 0)
    if not validate_each_epoch:
        log.info("validation part scored after the last epoch only (keep: %s)", settings.keep)
    started = time.perf_counter()
    saved_at, save_seconds = started, 0.0
    for epoch in range(first_epoch, settings.epochs + 1):
        epoch_start = time.perf_counter()
        validated = validate_each_epoch or epoch == settings.epochs
        with _epoch_errors(dataset, settings, fold, epoch):
            train_loss, train_accuracy = trainer.train_epoch(train_images, train_labels)
            if validated:
                trainer.recalibrate_batchnorm(train_images)
                metrics = _val_metrics(trainer.predict(val_images), labels[val_rows])
            else:
                metrics = _val_metrics(np.zeros((0, len(names))), labels[[]])
        seconds = time.perf_counter() - epoch_start
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            **metrics,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
        }
        history.append(record)
        if validated and _is_better(metrics, best):
            best, best_epoch = metrics, epoch
            if not keep_last:  # keep: last needs no copy, the model's own weights are kept
                best_state = copy.deepcopy(trainer.model.state_dict())
        done_here = epoch - first_epoch + 1
        eta = (time.perf_counter() - started) / done_here * (settings.epochs - epoch)
        scores = (
            " val_loss {val_loss:.4f} val_acc {val_accuracy:.3f} val_f1 {val_f1_macro:.3f}".format(
                **metrics
            )
            if validated
            else ""
        )
        log.info(
            "epoch %d/%d train_loss %.4f train_acc %.3f%s %.1fs ETA %.0fs",
            epoch,
            settings.epochs,
            train_loss,
            train_accuracy,
            scores,
            seconds,
            eta,
        )
        stop = bool(settings.patience and epoch - best_epoch >= settings.patience)
        # Once checkpoint_seconds have passed since the last save (or the start), and never so
        # often that saving takes more than a tenth of the time (a VGG16 checkpoint is 2 GB).
        due = time.perf_counter() - saved_at >= max(checkpoint_seconds, 9 * save_seconds)
        if checkpoint_path and due:
            save_start = time.perf_counter()
            resume.save(
                checkpoint_path,
                {
                    "fingerprint": run_id,
                    "epoch": epoch,
                    "stopped": stop,
                    "trainer": trainer.state(),
                    "rng": resume.rng_states(),
                    "history": history,
                    "best": best,
                    "best_epoch": best_epoch,
                    # the best weights are the model's own when the last epoch was the best
                    "best_state": None if keep_last or best_epoch == epoch else best_state,
                },
            )
            saved_at = time.perf_counter()
            save_seconds = saved_at - save_start
        if stop:
            log.info(
                "stopping early: validation loss has not improved for %d epochs",
                settings.patience,
            )
            break

    if keep_last:
        best_epoch, best_state = history[-1]["epoch"], trainer.model.state_dict()
    trainer.finish(best_state)
    # float32, so the predictions are those of model.pt wherever it is run again (CAMs, shift)
    probs = trainer.predict(tensor(held_out), mixed_precision=False)
    predictions = prediction_table(
        manifest["image_id"].iloc[held_out],
        fold,
        labels[held_out],
        probs,
        names,
        dataset=dataset,
        model=settings.model,
    )
    accuracy = float((predictions["pred"] == predictions["label"]).mean())
    log.info(
        "kept epoch %d (keep: %s); held-out fold %d accuracy %.3f",
        best_epoch,
        settings.keep,
        fold,
        accuracy,
    )

    history_table = pd.DataFrame(history)
    history_table["best"] = history_table["epoch"] == best_epoch
    meta = {
        "model": settings.model,
        "num_classes": len(names),
        "class_names": names,
        "image_size": int(store.shape[-1]),
        "dataset": dataset,
        "fold": int(fold),
        "mean": list(inputs.IMAGENET_MEAN),
        "std": list(inputs.IMAGENET_STD),
        "best_epoch": int(best_epoch),
        "weights": settings.weights,
        "seed": int(settings.seed),
    }
    checkpoint.save_checkpoint(model_path, trainer.model, meta)
    integrity.write_parquet(history_table, history_path)
    integrity.write_parquet(predictions, predictions_path)
    if checkpoint_path:
        resume.remove(checkpoint_path)
    return history_table
