"""Train one CNN on one cross-validation fold and predict its held-out images.

Reads top to bottom in the order things happen: settings, data split, model, optimiser and
schedule, the epoch loop (one log line per epoch), then the three outputs of the contract:
`model.pt` (best epoch on the validation part), `history.parquet` and `predictions.parquet`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from torch import nn

from xaimed import checkpoint, integrity, models
from xaimed.datasets import class_names
from xaimed.folds import fold_rows, fold_seed
from xaimed.pooled_head import PooledHead
from xaimed.runtime import seed_everything, select_device

log = logging.getLogger("xaimed.train")

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "constant")


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run; built from the config's `training` section."""

    model: str
    weights: str = "none"
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    label_smoothing: float = 0.0
    val_fraction: float = 0.15
    patience: int = 0
    augment: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    @classmethod
    def from_config(cls, model: str, training: dict[str, Any], seed: int = 0) -> TrainSettings:
        """The shared training settings, overridden by `training.models.<model>` if present."""
        merged = {k: v for k, v in training.items() if k != "models"}
        merged.update(training.get("models", {}).get(model, {}))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return cls(model=model, seed=seed, **{k: v for k, v in merged.items() if k != "model"})


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


def make_optimizer(settings: TrainSettings, params) -> torch.optim.Optimizer:
    name = settings.optimizer.lower()
    # Fused kernels update every parameter in one pass: ~10x faster steps on CPU for VGG16's
    # 138M parameters, where the optimiser step otherwise costs more than the backward pass.
    common = {"lr": settings.lr, "weight_decay": settings.weight_decay, "fused": True}
    if name == "adamw":
        return torch.optim.AdamW(params, **common)
    if name == "adam":
        return torch.optim.Adam(params, **common)
    if name == "sgd":
        return torch.optim.SGD(params, momentum=0.9, nesterov=True, **common)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}; choose one of {OPTIMIZERS}")


def make_scheduler(settings: TrainSettings, optimizer, steps: int):
    """Per-step learning-rate schedule over the whole run."""
    name = settings.scheduler.lower()
    if name == "cosine":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],  # settings.lr, or scaled
            total_steps=steps,
            pct_start=0.15,
            anneal_strategy="cos",
        )
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"unknown scheduler {settings.scheduler!r}; choose one of {SCHEDULERS}")


def augment(
    batch: torch.Tensor, generator: torch.Generator, options: dict[str, Any]
) -> torch.Tensor:
    """Random flips, shifts/zooms and intensity changes of a normalised batch, all in one go."""
    n = batch.shape[0]
    device = batch.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (high - low) + low).to(device)

    shift, zoom = float(options.get("shift", 0.0)), float(options.get("zoom", 0.0))
    flip = options.get("hflip", False)
    if shift or zoom or flip:
        scale = uniform(1 - zoom, 1 + zoom)
        sign = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=device)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0] = scale * sign
        theta[:, 1, 1] = scale
        theta[:, 0, 2] = uniform(-2 * shift, 2 * shift)
        theta[:, 1, 2] = uniform(-2 * shift, 2 * shift)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        batch = F.grid_sample(batch, grid, padding_mode="border", align_corners=False)
    intensity = float(options.get("intensity", 0.0))
    if intensity:
        gain = uniform(1 - intensity, 1 + intensity).view(n, 1, 1, 1)
        offset = uniform(-intensity, intensity).view(n, 1, 1, 1)
        batch = batch * gain + offset
    return batch


class Trainer:
    """One model, its optimiser and schedule; steps over uint8 image tensors held in memory."""

    def __init__(
        self, settings: TrainSettings, num_classes: int, steps: int, image_size: int | None = None
    ):
        self.settings = settings
        self.device = select_device(settings.device)
        self.cuda = self.device.type == "cuda"
        model = models.build_model(settings.model, num_classes, settings.weights)
        self.model = models.to_device(model, self.device)
        # bfloat16 autocast where it is faster: CUDA, and CPUs with native bfloat16 for the
        # models whose kernels gain from it (the demo's VGG16, ResNet50 and DenseNet121 jobs
        # took 1.25-1.5x less time on such a CPU, start-up included).
        self.bfloat16 = settings.amp and models.trains_in_bfloat16(settings.model, self.device)
        # VGG on small images: train its first linear layer on the distinct pooled values (exact
        # for AdamW, see xaimed.pooled_head); the saved model is torchvision's layout again.
        self.head = None
        if image_size and settings.optimizer.lower() == "adamw":
            self.head = PooledHead.find(self.model, image_size)
        if self.head:
            self.head.collapse(self.model)
            params = self.head.parameter_groups(self.model, settings.lr, settings.weight_decay)
        else:
            params = self.model.parameters()
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.optimizer = make_optimizer(settings, params)
        self.scheduler = make_scheduler(settings, self.optimizer, steps)
        self.generator = torch.Generator().manual_seed(settings.seed)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        batch = models.normalize(images.to(self.device, non_blocking=True))
        return batch.contiguous(memory_format=torch.channels_last)  # as the model (to_device)

    def _autocast(self, enabled: bool = True):
        # bfloat16 needs no loss scaling, so AMP, clipping and the step stay in one simple place.
        enabled = enabled and self.bfloat16
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    @property
    def precision(self) -> str:
        return "bfloat16 autocast" if self.bfloat16 else "float32"

    def stage(self, images: torch.Tensor) -> torch.Tensor:
        """Images to draw batches from: on the GPU when they fit in a quarter of its free
        memory (batches are then gathered there, with no copy from the host per step),
        else in pinned host memory for asynchronous copies; as they are on the CPU."""
        if not self.cuda:
            return images
        free, _ = torch.cuda.mem_get_info(self.device)
        if images.numel() * images.element_size() < free // 4:
            return images.to(self.device)
        return images.pin_memory()

    def train_epoch(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        self.model.train()
        order = torch.randperm(len(labels), generator=self.generator)
        labels = labels.to(self.device)
        batch_size = self.settings.batch_size
        # Sums stay on the device: reading them back every step would stall a GPU each step.
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            if len(rows) < 2:  # batch norm cannot train on a single image
                continue
            rows = rows.to(images.device)
            x = augment(self._inputs(images[rows]), self.generator, self.settings.augment)
            y = labels[rows.to(self.device)]
            with self._autocast():
                logits = self.model(x)
                loss = F.cross_entropy(
                    logits.float(), y, label_smoothing=self.settings.label_smoothing
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.head:
                self.head.track(self.model, self.optimizer)
            self.scheduler.step()
            total_loss += loss.detach() * len(rows)
            correct += (logits.argmax(1) == y).sum()
            seen += len(rows)
        mean_loss = total_loss.item() / max(seen, 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"the training loss is {mean_loss}")
        return mean_loss, correct.item() / max(seen, 1)

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs to continue this trainer exactly where it is."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def finish(self, state: dict[str, Any]) -> nn.Module:
        """The model as torchvision builds it, with the weights of ``state`` (a state dict of
        this trainer's model, e.g. its best epoch)."""
        if self.head:
            self.head.restore(self.model, state)
            self.head = None
        else:
            self.model.load_state_dict(state)
        return self.model

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])

    @torch.no_grad()
    def recalibrate_batchnorm(self, images: torch.Tensor) -> None:
        """Recompute batch-norm statistics over the training images, un-augmented.

        With a few steps per epoch the running averages lag far behind the weights, and a
        from-scratch model then scores at chance in eval mode however well it trains (the
        validation loss was 10x the training loss); exact averages ("precise BN") fix that.
        Only the batch-norm layers run in train mode, so dropout and stochastic depth stay off.
        """
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        self.model.eval()
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over this pass
            norm.train()
        step = self.settings.batch_size * 2
        for start in range(0, len(images), step):
            with self._autocast():
                self.model(self._inputs(images[start : start + step]))
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        self.model.eval()

    @torch.no_grad()
    def predict(self, images: torch.Tensor, mixed_precision: bool = True) -> np.ndarray:
        """Softmax probabilities (N, classes) in evaluation mode; with ``mixed_precision``
        False in float32, as every later stage runs the saved model."""
        self.model.eval()
        out = []
        for start in range(0, len(images), self.settings.batch_size * 2):
            with self._autocast(mixed_precision):
                logits = self.model(
                    self._inputs(images[start : start + self.settings.batch_size * 2])
                )
            out.append(torch.softmax(logits.float(), 1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def _val_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if len(labels) == 0:
        return {"val_loss": math.nan, "val_accuracy": math.nan, "val_f1_macro": math.nan}
    eps = 1e-12
    pred = probs.argmax(1)
    return {
        "val_loss": float(-np.log(probs[np.arange(len(labels)), labels] + eps).mean()),
        "val_accuracy": float((pred == labels).mean()),
        "val_f1_macro": float(f1_score(labels, pred, average="macro", zero_division=0)),
    }


def _is_better(candidate: dict[str, float], best: dict[str, float] | None) -> bool:
    """Lower validation loss wins; a tie goes to the higher macro-F1.

    The loss, not accuracy or F1, because validation parts are small: on ten images F1 moves
    in steps of 0.1 and a lucky early epoch would beat a model that learned the task.
    """
    if best is None:
        return True
    if math.isnan(candidate["val_loss"]):
        return True  # no validation part: the last epoch is the model
    key = (-candidate["val_loss"], candidate["val_f1_macro"])
    return key > (-best["val_loss"], best["val_f1_macro"])


@contextlib.contextmanager
def _epoch_errors(dataset: str, settings: TrainSettings, fold: int, epoch: int):
    """Turn a diverged loss or an out-of-memory GPU into a message that names the job and
    the config key to change."""
    where = f"dataset {dataset!r}, model {settings.model!r}, fold {fold}, epoch {epoch}"
    try:
        yield
    except FloatingPointError as error:
        raise FloatingPointError(
            f"{where}: {error}; lower the learning rate (training.lr, or "
            f"training.models.{settings.model}.lr for this model only)"
        ) from None
    except torch.cuda.OutOfMemoryError:
        raise MemoryError(
            f"{where}: the GPU ran out of memory at batch size {settings.batch_size}; lower "
            f"training.models.{settings.model}.batch_size (this model only) or "
            "training.batch_size (every model)"
        ) from None


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
    """Train `settings.model` on every fold but `fold`, keep the best validation epoch, and
    predict the held-out fold. Returns the history table.

    With `checkpoint_path`, the state after an epoch is saved there once `checkpoint_seconds`
    of training have passed since the last save (None: xaimed.checkpoint.interval(); 0: every
    epoch), and a rerun after a kill resumes from the last saved epoch (see
    xaimed.checkpoint); the checkpoint is deleted once the outputs are written."""
    if checkpoint_seconds is None:
        checkpoint_seconds = checkpoint.interval()
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
    run_id = checkpoint.fingerprint(
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
    resumed = checkpoint.load(checkpoint_path, run_id) if checkpoint_path else None
    if resumed:
        trainer.restore(resumed["trainer"])
        checkpoint.set_rng_states(resumed["rng"])
        history, best, best_epoch = resumed["history"], resumed["best"], resumed["best_epoch"]
        best_state = resumed["best_state"] or copy.deepcopy(trainer.model.state_dict())
        first_epoch = settings.epochs + 1 if resumed["stopped"] else resumed["epoch"] + 1
        log.info("resuming after epoch %d from %s", resumed["epoch"], checkpoint_path)
    started = time.perf_counter()
    saved_at, save_seconds = started, 0.0
    for epoch in range(first_epoch, settings.epochs + 1):
        epoch_start = time.perf_counter()
        with _epoch_errors(dataset, settings, fold, epoch):
            train_loss, train_accuracy = trainer.train_epoch(train_images, train_labels)
            trainer.recalibrate_batchnorm(train_images)
            metrics = _val_metrics(trainer.predict(val_images), labels[val_rows])
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
        if _is_better(metrics, best):
            best, best_epoch = metrics, epoch
            best_state = copy.deepcopy(trainer.model.state_dict())
        done_here = epoch - first_epoch + 1
        eta = (time.perf_counter() - started) / done_here * (settings.epochs - epoch)
        log.info(
            "epoch %d/%d train_loss %.4f train_acc %.3f val_loss %.4f val_acc %.3f val_f1 %.3f "
            "%.1fs ETA %.0fs",
            epoch,
            settings.epochs,
            train_loss,
            train_accuracy,
            metrics["val_loss"],
            metrics["val_accuracy"],
            metrics["val_f1_macro"],
            seconds,
            eta,
        )
        stop = bool(settings.patience and epoch - best_epoch >= settings.patience)
        # Once checkpoint_seconds have passed since the last save (or the start), and never so
        # often that saving takes more than a tenth of the time (a VGG16 checkpoint is 2 GB).
        due = time.perf_counter() - saved_at >= max(checkpoint_seconds, 9 * save_seconds)
        if checkpoint_path and due:
            save_start = time.perf_counter()
            checkpoint.save(
                checkpoint_path,
                {
                    "fingerprint": run_id,
                    "epoch": epoch,
                    "stopped": stop,
                    "trainer": trainer.state(),
                    "rng": checkpoint.rng_states(),
                    "history": history,
                    "best": best,
                    "best_epoch": best_epoch,
                    # the best weights are the model's own when the last epoch was the best
                    "best_state": None if best_epoch == epoch else best_state,
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
    log.info("best epoch %d; held-out fold %d accuracy %.3f", best_epoch, fold, accuracy)

    history_table = pd.DataFrame(history)
    history_table["best"] = history_table["epoch"] == best_epoch
    meta = {
        "model": settings.model,
        "num_classes": len(names),
        "class_names": names,
        "image_size": int(store.shape[-1]),
        "dataset": dataset,
        "fold": int(fold),
        "mean": list(models.IMAGENET_MEAN),
        "std": list(models.IMAGENET_STD),
        "best_epoch": int(best_epoch),
        "weights": settings.weights,
        "seed": int(settings.seed),
    }
    models.save_checkpoint(model_path, trainer.model, meta)
    integrity.write_parquet(history_table, history_path)
    integrity.write_parquet(predictions, predictions_path)
    if checkpoint_path:
        checkpoint.remove(checkpoint_path)
    return history_table
