"""Exact, cheaper training of heads that replicate a small feature map (VGG, AlexNet).

VGG and AlexNet pool their last feature map to a fixed grid (7x7, 6x6) before a wide linear
layer. On small images that map is smaller than the grid and the pool only copies it: at 48 px
VGG16's 1x1 map is copied 49 times, and its first linear layer multiplies 25,088 inputs that are
49 copies of 512 values. That layer is then 40 % of a training step, for nothing.

Training the layer on the 512 distinct values gives the same model. Every copy of a weight
sees the same gradient, so under AdamW every copy gets the same Adam step and only its decoupled
weight decay differs (it scales each copy's own value). With ``W_eff`` the sum of a cell's
``r`` copies, AdamW on ``W_eff`` with learning rate ``r * lr`` and weight decay ``wd / r`` moves
it exactly as the copies' sum moves, and each copy is recovered as

    W_k(t) = P(t) W_k(0) + (W_eff(t) - P(t) W_eff(0)) / r,   P(t) = prod_s (1 - lr_s wd)

(the shared Adam steps, plus the copy's own decayed initial value). :class:`PooledHead` does
this: collapse the model before training, track ``P`` after each step, expand the weights back
into the torchvision layout to save. Only AdamW is handled: Adam's and SGD's coupled weight
decay give each copy a different gradient, so they train the model as it is.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger("xaimed.models.pooled_head")


def _bins(inputs: int, outputs: int) -> list[tuple[int, int]]:
    """[start, end) input cells of each output cell of adaptive average pooling."""
    return [(i * inputs // outputs, -(-(i + 1) * inputs // outputs)) for i in range(outputs)]


def _copies(inputs: int, outputs: int) -> list[int] | None:
    """The input cell each output cell copies, when adaptive pooling only copies cells and
    copies each the same number of times; else None."""
    bins = _bins(inputs, outputs)
    if any(end - start != 1 for start, end in bins):
        return None
    source = [start for start, _ in bins]
    if len({source.count(cell) for cell in range(inputs)}) != 1:
        return None
    return source


class CollapsedLinear(nn.Linear):
    """The first classifier layer on the distinct pooled values; ``decay`` is ``P(t)``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        # float64: a product of thousands of factors close to 1
        self.register_buffer("decay", torch.ones((), dtype=torch.float64))


class PooledHead:
    """A model's replicating pool and the linear layer after it; see the module docstring."""

    def __init__(self, model: nn.Module, cells: torch.Tensor, replicas: int):
        self.pool = model.avgpool
        full: nn.Linear = model.classifier[0]
        self.full_shape = full.weight.shape
        self.cells = cells  # full input column -> collapsed input column
        self.replicas = replicas
        self.initial = full.weight.detach().clone()
        self.initial_sum = self._sum(self.initial)

    @classmethod
    def find(cls, model: nn.Module, image_size: int) -> PooledHead | None:
        """The head of ``model`` (torchvision layout: ``features``, ``avgpool``,
        ``classifier``) when its pool only copies the feature map at ``image_size``."""
        pool = getattr(model, "avgpool", None)
        classifier = getattr(model, "classifier", None)
        features = getattr(model, "features", None)
        if not (
            isinstance(pool, nn.AdaptiveAvgPool2d)
            and isinstance(classifier, nn.Sequential)
            and isinstance(features, nn.Module)
        ):
            return None
        # The layer must take the pool's output directly: a dropout before it (AlexNet) drops
        # copies independently, so they would no longer share their gradients.
        if not len(classifier) or not isinstance(classifier[0], nn.Linear):
            return None
        device = next(model.parameters()).device
        with torch.no_grad():
            was_training = model.training
            model.eval()
            channels, height, width = features(
                torch.zeros(1, 3, image_size, image_size, device=device)
            ).shape[1:]
            model.train(was_training)
        out_h, out_w = nn.modules.utils._pair(pool.output_size)
        rows, cols = _copies(height, out_h), _copies(width, out_w)
        replicas = (out_h // height) * (out_w // width)
        if rows is None or cols is None or replicas == 1:
            return None
        full = classifier[0]
        if full.in_features != channels * out_h * out_w:
            return None
        cells = torch.tensor(
            [
                c * height * width + rows[i] * width + cols[j]
                for c in range(channels)
                for i in range(out_h)
                for j in range(out_w)
            ],
            device=device,
        )
        return cls(model, cells, replicas)

    def _sum(self, weight: torch.Tensor) -> torch.Tensor:
        """Full weight -> the sum of each distinct input's copies."""
        collapsed = weight.new_zeros(weight.shape[0], weight.shape[1] // self.replicas)
        return collapsed.index_add_(1, self.cells, weight)

    def collapse(self, model: nn.Module) -> None:
        """Swap the pool for one that keeps the map and the layer for its collapsed form."""
        full: nn.Linear = model.classifier[0]
        height_width = self.full_shape[1] // self.replicas  # channels x map cells
        with torch.random.fork_rng(devices=[]):  # its random init is overwritten: draw none
            layer = CollapsedLinear(height_width, full.out_features).to(full.weight.device)
        with torch.no_grad():
            layer.weight.copy_(self.initial_sum)
            layer.bias.copy_(full.bias)
        model.avgpool = nn.Identity()  # the map, flattened as it is, is the collapsed input
        model.classifier[0] = layer
        log.info(
            "training %s's first linear layer on %d distinct pooled values (each copied %d "
            "times at this image size): same model, fewer operations",
            type(model).__name__,
            height_width,
            self.replicas,
        )

    def parameter_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: the collapsed weight steps ``replicas`` times as far and decays as
        each copy does (``lr * weight_decay`` unchanged)."""
        weight = model.classifier[0].weight
        rest = [p for p in model.parameters() if p is not weight]
        return [
            {"params": rest, "lr": lr, "weight_decay": weight_decay},
            {
                "params": [weight],
                "lr": lr * self.replicas,
                "weight_decay": weight_decay / self.replicas,
            },
        ]

    def track(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """After an optimiser step: fold that step's decay factor into ``P``."""
        group = optimizer.param_groups[1]
        model.classifier[0].decay.mul_(1.0 - group["lr"] * group["weight_decay"])

    def expand(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A collapsed model's state dict -> the state dict of the model as torchvision
        builds it (the weights uncollapsed training would have reached)."""
        prefix = "classifier.0."
        state = dict(state)
        decay = float(state.pop(prefix + "decay"))
        weight = state[prefix + "weight"].to(self.initial.device)
        shared = (weight - decay * self.initial_sum) / self.replicas
        state[prefix + "weight"] = shared[:, self.cells].add_(self.initial, alpha=decay)
        return state

    def restore(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Put the original pool and layer back into ``model`` and load ``state`` (collapsed)."""
        device = model.classifier[0].weight.device
        with torch.random.fork_rng(devices=[]):
            full = nn.Linear(self.full_shape[1], self.full_shape[0]).to(device)
        model.avgpool = self.pool
        model.classifier[0] = full
        model.load_state_dict(self.expand(state))
