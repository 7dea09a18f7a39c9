"""Building a torchvision classifier by name: a fresh or pretrained network with the study's
head (its class count), for training, explaining and the config check.

Layers to explain live in :mod:`xaimed.models.layers`, precision in :mod:`.precision`, what a
model is fed in :mod:`.inputs` and the stored `model.pt` in :mod:`.checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import numpy as np
import torch
import torchvision
from torch import nn

__all__ = ["build_model", "classifier_names", "image_size_problem", "imagenet_weights_path"]

#: families whose input size is fixed when they are built: a ViT's position embeddings hold one
#: token per patch of an ``image_size`` image (torchvision builds them for 224 px by default)
SIZED_AT_BUILD = ("vit_",)


# --------------------------------------------------------------------------- building


def classifier_names() -> list[str]:
    """Names of torchvision's image classification models (no detection/segmentation/video)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _check_name(name: str) -> None:
    names = classifier_names()
    if name not in names:
        raise ValueError(
            f"unknown model {name!r}; available torchvision classifiers: {', '.join(names)}"
        )


def image_size_problem(name: str, image_size: int) -> str | None:
    """Why model ``name`` cannot take ``image_size`` px images, or None: a ViT's side must be
    a multiple of its patch size (the number in its name: vit_b_16 takes 64, 80, ... px)."""
    if not name.startswith(SIZED_AT_BUILD):
        return None
    with torch.device("meta"):
        patch = torchvision.models.get_model(name, weights=None).patch_size
    if image_size % patch == 0:
        return None
    return (
        f"{name} cuts images into {patch}x{patch} patches, so image_size must be a multiple of "
        f"{patch}; got {image_size} (nearest: {max(patch, image_size // patch * patch)} or "
        f"{(image_size // patch + 1) * patch})"
    )


def _size_arguments(name: str, image_size: int | None) -> dict[str, int]:
    """torchvision builder arguments that fit ``name`` to ``image_size`` px inputs."""
    if image_size is None or not name.startswith(SIZED_AT_BUILD):
        return {}  # the CNNs and Swin take any size
    problem = image_size_problem(name, image_size)
    if problem:
        raise ValueError(problem)
    return {"image_size": int(image_size)}


def imagenet_weights_path(name: str) -> Path:
    """Where torch hub keeps the DEFAULT ImageNet weights of ``name``.

    ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``; ``torch.hub.get_dir()``
    is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``).
    """
    _check_name(name)
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load(weights_only=True) a mapping of str -> Tensor, else ValueError."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refused by weights_only, corrupt file, ...
        raise ValueError(
            f"{path} is not a state dict that torch.load(weights_only=True) can read: {exc}"
        ) from exc
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        hint = ""
        if isinstance(obj, Mapping) and "state_dict" in obj:
            hint = " (it looks like an xaimed checkpoint: use load_checkpoint)"
        raise ValueError(
            f"{path} does not hold a state dict (a mapping of parameter names to tensors){hint}"
        )
    return dict(obj)


def _pretrained_torchvision(
    name: str, state_dict: dict[str, torch.Tensor], image_size: int | None = None
) -> nn.Module:
    """Build ``name`` exactly as torchvision builds it with its DEFAULT weights, but take the
    weights from ``state_dict`` (already read safely from disk) instead of the network.

    A ViT for another ``image_size`` than its weights' gets their position embeddings
    interpolated to its patch grid (torchvision's ``interpolate_embeddings``, as its reference
    fine-tuning does), the rest of the weights as they are.

    Going through torchvision's own builder keeps every model-specific detail of pretrained
    construction (1000 classes, DenseNet's legacy key renaming, Inception's transform_input and
    aux-head handling, ...). The weights enum's ``get_state_dict`` is patched for the duration
    of the call so that nothing is downloaded and nothing is unpickled with weights_only=False.
    """
    enum = torchvision.models.get_model_weights(name).DEFAULT
    sized = _size_arguments(name, image_size)
    if sized and sized["image_size"] != enum.meta["min_size"][0]:
        from torchvision.models.vision_transformer import interpolate_embeddings

        model = torchvision.models.get_model(name, weights=None, num_classes=1000, **sized)
        model.load_state_dict(
            interpolate_embeddings(sized["image_size"], model.patch_size, dict(state_dict))
        )
        return model

    def _local(self: Any, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        return dict(state_dict)  # a fresh copy: DenseNet's loader renames keys in place

    with mock.patch.object(type(enum), "get_state_dict", _local):
        return torchvision.models.get_model(name, weights=enum)


def _replace_head(model: nn.Module, name: str, num_classes: int) -> None:
    """Swap the 1000-class ImageNet head for a fresh ``num_classes`` head (random init)."""
    if name.startswith("squeezenet"):
        conv = model.classifier[1]
        model.classifier[1] = nn.Conv2d(conv.in_channels, num_classes, kernel_size=1)
        model.num_classes = num_classes
        return
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != 1000:
        raise NotImplementedError(
            f"cannot find the 1000-class nn.Linear head of {name!r} to replace; "
            "add a case to xaimed.models.build._replace_head"
        )
    path, old = linears[-1]
    parent_name, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


def _reset_linear_head(model: nn.Module) -> None:
    """Give a randomly initialised model's last nn.Linear PyTorch's fan-in initialisation.

    torchvision scales some heads by the number of OUTPUTS (EfficientNet: uniform within
    1/sqrt(num_classes)), sized for 1000 classes: with 2-4 classes the first logits are in the
    tens and training from scratch starts with a loss far above chance and often never
    recovers. The fan-in default keeps the first logits near zero for every architecture.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        linears[-1].reset_parameters()


def build_model(
    name: str, num_classes: int, weights: str = "none", image_size: int | None = None
) -> nn.Module:
    """Any torchvision classifier by name, with a ``num_classes`` head, for ``image_size`` px
    images (only a ViT needs it: None builds it for 224 px; the others take any size).

    weights:
      * ``"none"``: random init (the caller seeds torch);
      * ``"imagenet"``: torchvision's DEFAULT weights, read ONLY from the local torch hub cache
        (:func:`imagenet_weights_path`); never downloaded;
      * a path to a state dict (torch.load(weights_only=True)) of the 1000-class model (e.g. a
        manually copied torchvision file) or, failing that, of the ``num_classes`` model.

    With 1000-class weights and ``num_classes != 1000`` the head (last nn.Linear; SqueezeNet's
    1x1 conv) is replaced by a freshly initialised one.
    """
    _check_name(name)
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    num_classes = int(num_classes)
    sized = _size_arguments(name, image_size)
    if weights in (None, "none"):
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **sized)
        _reset_linear_head(model)
        return _prepare(model, name)
    if weights == "imagenet":
        path = imagenet_weights_path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {name!r} not found at {path}. xaimed never downloads: "
                f"place the file (from {torchvision.models.get_model_weights(name).DEFAULT.url}) "
                "at that path, or set TORCH_HOME to a directory whose hub/checkpoints/ holds it."
            )
        return _finish_pretrained(
            _pretrained_torchvision(name, _read_state_dict(path), image_size), name, num_classes
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights must be 'none', 'imagenet' or the path of a state dict file; "
            f"no file at {path}"
        )
    state = _read_state_dict(path)
    try:
        model = _pretrained_torchvision(name, state, image_size)
    except RuntimeError as err_1000:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **sized)
        try:
            model.load_state_dict(state)
        except RuntimeError as err_n:
            raise ValueError(
                f"state dict {path} fits neither the 1000-class {name} ({err_1000}) nor the "
                f"{num_classes}-class {name} ({err_n})"
            ) from err_n
        return _prepare(model, name)
    return _finish_pretrained(model, name, num_classes)


def _finish_pretrained(model: nn.Module, name: str, num_classes: int) -> nn.Module:
    if num_classes != 1000:
        _replace_head(model, name, num_classes)
    return _prepare(model, name)


def _prepare(model: nn.Module, name: str) -> nn.Module:
    """Parameter-free, output-preserving adjustments every xaimed model gets."""
    if name.startswith("densenet"):
        _densenet_relu5(model)
    return model


# --------------------------------------------------------------------------- CAM registry


def _densenet_relu5(model: nn.Module) -> nn.Module:
    """DenseNet's final ReLU as a module: ``features.relu5 = nn.Threshold(0, 0)``.

    torchvision's DenseNet ends ``features`` with BatchNorm ``norm5`` and applies the ReLU
    functionally and IN PLACE in ``forward``. Hooking ``norm5`` (pytorch-grad-cam's suggestion)
    therefore gives device-dependent CAMs: the library stores ``output.cpu().detach()``, which
    on CPU shares memory with the tensor that the in-place ReLU then rectifies (post-ReLU
    activations), while on CUDA it is a copy (pre-ReLU activations, negative parts included).
    Appending an explicit rectifier gives post-ReLU activations (what the classifier actually
    pools) on every device. ``nn.Threshold(0, 0)`` computes exactly ReLU, with ReLU's gradient,
    but saves its *input* for backward, so DenseNet's own in-place ``F.relu`` on its output
    (a no-op on values) does not invalidate the autograd graph, which ``nn.ReLU`` (saves its
    output) would. No parameters/buffers: state dicts are unchanged; the logits are unchanged
    because relu(relu(x)) == relu(x). Idempotent.
    """
    features = model.features
    if not isinstance(features[-1], nn.Threshold):
        features.add_module("relu5", nn.Threshold(0.0, 0.0))
    return features[-1]
