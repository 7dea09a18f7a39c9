"""The trainer: settings, optimisers, schedulers, augmentation, epochs."""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from xaimed.io.runtime import select_device
from xaimed.models import build, inputs
from xaimed.models import precision as models_precision
from xaimed.models.pooled_head import PooledHead

OPTIMIZERS = ("adamw", "adam", "sgd")

SCHEDULERS = ("cosine", "constant")
# training.keep: which epoch becomes model.pt
KEPT_EPOCHS = ("best", "last")


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run; built from the config's `training` section.

    No field has a default: the schema (workflow/schemas/config.schema.yaml) is their only
    home, and :meth:`with_defaults` reads them from there for callers outside the workflow.
    """

    model: str
    weights: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    scheduler: str
    label_smoothing: float
    val_fraction: float
    patience: int
    keep: str
    augment: dict[str, Any]
    seed: int
    device: str
    amp: bool

    @classmethod
    def from_config(cls, model: str, training: dict[str, Any], seed: int) -> TrainSettings:
        """The shared training settings, overridden by `training.models.<model>` if present."""
        merged = {k: v for k, v in training.items() if k != "models"}
        merged.update(training.get("models", {}).get(model, {}))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return cls(model=model, seed=seed, **{k: v for k, v in merged.items() if k != "model"})

    @classmethod
    def with_defaults(cls, model: str, **given: Any) -> TrainSettings:
        """``given`` (training settings, and the config's top-level `seed` and `device`) with
        the schema's defaults for the rest: what tests, benchmarks and notebooks use."""
        from xaimed.config.schema import SCHEMA_PATH, fill_defaults, load_schema

        top = {key: given.pop(key) for key in ("seed", "device") if key in given}
        schema = load_schema(SCHEMA_PATH)
        config = fill_defaults(copy.deepcopy({"training": given, **top}), schema)
        training = {**config["training"], "device": config["device"]}
        return cls.from_config(model, training, seed=config["seed"])


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
        model = build.build_model(settings.model, num_classes, settings.weights, image_size)
        self.model = inputs.to_device(model, self.device)
        # bfloat16 autocast where it is faster: CUDA, and CPUs with native bfloat16 for the
        # models whose kernels gain from it (the demo's VGG16, ResNet50 and DenseNet121 jobs
        # took 1.25-1.5x less time on such a CPU, start-up included).
        self.bfloat16 = settings.amp and models_precision.trains_in_bfloat16(
            settings.model, self.device
        )
        # VGG on small images: train its first linear layer on the distinct pooled values (exact
        # for AdamW, see xaimed.models.pooled_head); the saved model is torchvision's layout again.
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
        batch = inputs.normalize(images.to(self.device, non_blocking=True))
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
        # Chunks of (nearly) equal size: a last chunk of one image fails wherever a batch-norm
        # layer sees a 1x1 map (DenseNet121's last at 40 px: 97 images in chunks of 32 did).
        chunks = max(1, math.ceil(len(images) / (self.settings.batch_size * 2)))
        if len(images) < 2 * chunks:
            raise ValueError(
                f"batch-norm statistics need at least 2 training images, got {len(images)}"
            )
        for rows in torch.arange(len(images)).tensor_split(chunks):
            with self._autocast():
                self.model(self._inputs(images[rows[0] : rows[-1] + 1]))
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
