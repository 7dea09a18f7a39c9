"""Model building, CAM target layers, input normalisation and checkpoints.

Everything architecture specific that the CAM code needs lives in ONE registry,
:data:`CAM_FAMILIES`: model-name prefix -> (target layer, tail after that layer).
Add a new architecture family there, nowhere else. A run may explain another layer of a model
(config ``explain.target_layers``): :func:`target_layer` and :func:`model_tail` take that
layer's dotted module path, and the registry's default applies when it is None.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from xaimed.checkpoint import state_sha256
from xaimed.integrity import quarantine
from xaimed.runtime import atomic_write

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "CAM_FAMILIES",
    "CPU_FLOAT32_FAMILIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CamFamily",
    "build_model",
    "cam_family",
    "cam_map_sizes",
    "classifier_names",
    "cpu_has_bfloat16",
    "finer_cam_layers",
    "imagenet_weights_path",
    "load_checkpoint",
    "model_tail",
    "module_names",
    "normalize",
    "save_checkpoint",
    "target_layer",
    "to_device",
    "trains_in_bfloat16",
]


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


def _pretrained_torchvision(name: str, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Build ``name`` exactly as torchvision builds it with its DEFAULT weights, but take the
    weights from ``state_dict`` (already read safely from disk) instead of the network.

    Going through torchvision's own builder keeps every model-specific detail of pretrained
    construction (1000 classes, DenseNet's legacy key renaming, Inception's transform_input and
    aux-head handling, ...). The weights enum's ``get_state_dict`` is patched for the duration
    of the call so that nothing is downloaded and nothing is unpickled with weights_only=False.
    """
    enum = torchvision.models.get_model_weights(name).DEFAULT

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
            "add a case to xaimed.models._replace_head"
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


def build_model(name: str, num_classes: int, weights: str = "none") -> nn.Module:
    """Any torchvision classifier by name, with a ``num_classes`` head.

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
    if weights in (None, "none"):
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
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
            _pretrained_torchvision(name, _read_state_dict(path)), name, num_classes
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights must be 'none', 'imagenet' or the path of a state dict file; "
            f"no file at {path}"
        )
    state = _read_state_dict(path)
    try:
        model = _pretrained_torchvision(name, state)
    except RuntimeError as err_1000:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
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


def _last_relu_index(features: nn.Sequential) -> int:
    return max(i for i, m in enumerate(features) if isinstance(m, nn.ReLU))


def _vgg_target(model: nn.Module) -> nn.Module:
    return model.features[_last_relu_index(model.features)]


def _vgg_tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = model.features[_last_relu_index(model.features) + 1 :](x)  # the final max-pool
    return model.classifier(torch.flatten(model.avgpool(x), 1))


def _pool_flatten(head: str) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """Tail ``head(flatten(avgpool(x), 1))`` (ResNet, RegNet, EfficientNet, MobileNetV3)."""

    def tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return getattr(model, head)(torch.flatten(model.avgpool(x), 1))

    return tail


def _densenet_tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = F.adaptive_avg_pool2d(F.relu(x), (1, 1))  # DenseNet.forward (not in place here)
    return model.classifier(torch.flatten(out, 1))


def _mobilenet_v2_tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def _convnext_tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.classifier(model.avgpool(x))  # classifier = LayerNorm2d, Flatten, Linear


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _resnet_rest(
    stage: str, start: int, later: tuple[str, ...]
) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """Tail: blocks ``start:`` of ``stage``, the ``later`` stages, pooling, ``fc``."""

    def tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for block in list(getattr(model, stage))[start:]:
            x = block(x)
        for name in later:
            x = getattr(model, name)(x)
        return model.fc(torch.flatten(model.avgpool(x), 1))

    return tail


def _resnet_tail_after(
    model: nn.Module, layer: nn.Module
) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
    """The tail after any residual block of a ResNet (or after a whole stage ``layerK``, whose
    output is its last block's): the stage's remaining blocks, the later stages, then pooling
    and ``fc``, as ResNet._forward_impl runs them. None for a layer inside a block or in the
    stem (the library's AblationCAM is used there)."""
    for k, stage_name in enumerate(_RESNET_STAGES):
        blocks = list(getattr(model, stage_name))
        if layer is getattr(model, stage_name):
            return _resnet_rest(stage_name, len(blocks), _RESNET_STAGES[k + 1 :])
        for i, block in enumerate(blocks):
            if layer is block:
                return _resnet_rest(stage_name, i + 1, _RESNET_STAGES[k + 1 :])
    return None


@dataclass(frozen=True)
class CamFamily:
    """How CAMs are taken for one architecture family.

    target: model -> the module whose output is the CAM's activation map.
    tail:   (model, activations of target) -> logits; must reproduce the model's forward
            after ``target`` exactly (used by the fast, exact AblationCAM). None: no fast path.
    why:    the reason for the choice (documentation).
    tail_after: (model, another layer chosen by a run) -> its tail, like ``tail``, or None
            where none is known; None: no fast path for any other layer.
    """

    target: Callable[[nn.Module], nn.Module]
    tail: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None
    why: str
    tail_after: (
        Callable[[nn.Module, nn.Module], Callable[[nn.Module, torch.Tensor], torch.Tensor] | None]
        | None
    ) = None


_RESNET = CamFamily(
    lambda m: m.layer4[-1],
    _pool_flatten("fc"),
    "output of the last residual block (post-ReLU, last spatial layer before global pooling)",
    _resnet_tail_after,
)

#: THE registry: model-name prefix -> target layer + tail. The longest matching prefix wins.
CAM_FAMILIES: dict[str, CamFamily] = {
    "resnet": _RESNET,
    "resnext": _RESNET,
    "wide_resnet": _RESNET,
    "densenet": CamFamily(
        _densenet_relu5,
        _densenet_tail,
        "features.relu5, an explicit post-ReLU rectifier appended after norm5 (see "
        "_densenet_relu5): norm5 gives device-dependent CAMs because of DenseNet's in-place ReLU",
    ),
    "vgg": CamFamily(
        _vgg_target,
        _vgg_tail,
        "last ReLU of features (features[-1] is a max-pool; the ReLU has 2x the resolution)",
    ),
    "efficientnet": CamFamily(
        lambda m: m.features[-1],
        _pool_flatten("classifier"),
        "features[-1]: the final 1x1 conv-BN-SiLU block before global pooling",
    ),
    "mobilenet_v2": CamFamily(
        lambda m: m.features[-1],
        _mobilenet_v2_tail,
        "features[-1]: the final 1x1 conv-BN-ReLU6 block before global pooling",
    ),
    "mobilenet_v3": CamFamily(
        lambda m: m.features[-1],
        _pool_flatten("classifier"),
        "features[-1]: the final 1x1 conv-BN-Hardswish block before global pooling",
    ),
    "convnext": CamFamily(
        lambda m: m.features[-1],
        _convnext_tail,
        "features[-1]: the last stage of CNBlocks before global pooling",
    ),
    "regnet": CamFamily(
        lambda m: m.trunk_output[-1],
        _pool_flatten("fc"),
        "trunk_output[-1]: the last stage (post-ReLU) before global pooling",
    ),
}


def cam_family(name: str) -> CamFamily:
    """The registry entry for model ``name`` (longest matching prefix)."""
    matches = [prefix for prefix in CAM_FAMILIES if name.startswith(prefix)]
    if not matches:
        raise NotImplementedError(
            f"no CAM target layer is registered for model {name!r}; add its family "
            f"(name prefix -> target layer and tail) to CAM_FAMILIES in {__name__} "
            f"({__file__}). Registered prefixes: {', '.join(sorted(CAM_FAMILIES))}"
        )
    return CAM_FAMILIES[max(matches, key=len)]


def module_names(model: nn.Module, depth: int | None = None) -> list[str]:
    """Dotted paths of ``model``'s submodules (``layer4``, ``layer4.2``, ``layer4.2.conv3``,
    ...), in registration order; with ``depth``, only those of at most that many parts."""
    names = [name for name, _ in model.named_modules() if name]
    return [n for n in names if depth is None or n.count(".") < depth]


def _layer_at(model: nn.Module, name: str, path: str) -> nn.Module:
    """The submodule of ``model`` at the dotted ``path``, else a ValueError that names the
    model, the path and the modules there are."""
    try:
        layer = model.get_submodule(path) if path else None
    except AttributeError:
        layer = None
    if layer is None or layer is model:
        shown = module_names(model, depth=2)
        deeper = next((n for n in module_names(model) if n.count(".") >= 2), None)
        raise ValueError(
            f"CAM target layer {path!r} does not exist in model {name!r}; give the dotted path "
            f"of one of its modules: {', '.join(shown)}"
            + (f" (or a deeper one, e.g. {deeper!r})" if deeper else "")
        )
    return layer


def target_layer(model: nn.Module, name: str, path: str | None = None) -> nn.Module:
    """The CAM target layer of ``model`` (a torchvision ``name``): the submodule at the dotted
    ``path`` (e.g. ``"layer3"``, ``"layer3.5"``; config ``explain.target_layers``) or, when
    ``path`` is None, the default of :data:`CAM_FAMILIES`.

    For DenseNet the default appends the output-preserving ``features.relu5`` if the model
    lacks it. An explicit ``path`` needs no registered family.
    """
    if path is not None:
        return _layer_at(model, name, path)
    family = cam_family(name)
    try:
        return family.target(model)
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(
            f"model {type(model).__name__} does not have the layout expected for {name!r}: {exc}"
        ) from exc


def cam_map_sizes(name: str, image_size: int) -> dict:
    """The spatial size of every module's output of model ``name`` at ``image_size`` px, from
    one forward on the meta device (no memory, no weights, milliseconds), as JSON-able data:
    ``sizes`` {dotted path: [h, w]} for modules with (N, C, H, W) outputs, ``order`` (every
    module in registration order), ``containers`` (modules with children: stages and blocks)
    and ``default`` (the path of the :data:`CAM_FAMILIES` layer; None where unregistered)."""
    sizes: dict[str, list[int]] = {}
    with torch.device("meta"):
        model = build_model(name, 2).eval()
        try:
            default = target_layer(model, name)
        except NotImplementedError:
            default = None
        paths = {module: path for path, module in model.named_modules() if path}

        def record(module: nn.Module, _: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4 and module in paths:
                sizes[paths[module]] = [int(output.shape[-2]), int(output.shape[-1])]

        hook = nn.modules.module.register_module_forward_hook(record)
        try:
            with torch.no_grad():
                model(torch.empty(1, 3, image_size, image_size))
        except RuntimeError:
            pass  # too small for a later layer (AlexNet at 48 px): the layers before it count
        finally:
            hook.remove()
    return {
        "sizes": sizes,
        "order": list(paths.values()),
        "containers": [path for module, path in paths.items() if any(module.children())],
        "default": paths.get(default) if default is not None else None,
    }


def finer_cam_layers(maps: dict, path: str, minimum: int = 4, count: int = 3) -> list[str]:
    """Up to ``count`` layers before ``path`` (in :func:`cam_map_sizes` ``maps``) whose maps
    are at least ``minimum`` on each side, nearest the output first: siblings of ``path``
    first, else of its parent, and so on; stages and blocks before single operations."""
    sizes, order = maps["sizes"], maps["order"]
    if path not in order:
        return []
    before = order[: order.index(path)]
    parts = path.split(".")
    while parts:
        parts.pop()
        prefix = ".".join(parts)
        siblings = [p for p in before if (p.rsplit(".", 1)[0] if "." in p else "") == prefix]
        fine = [p for p in siblings if p in sizes and min(sizes[p]) >= minimum]
        blocks = [p for p in fine if p in maps["containers"]] or fine
        if blocks:
            return blocks[::-1][:count]
    return []


def model_tail(
    model: nn.Module, name: str, path: str | None = None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``acts -> logits``: the part of ``model`` after :func:`target_layer` (``path`` as
    there), or None where that part is not known (the caller falls back to running the whole
    model)."""
    layer = target_layer(model, name, path)  # the layout fits (and DenseNet's relu5 exists)
    if path is not None and not any(name.startswith(prefix) for prefix in CAM_FAMILIES):
        return None  # an architecture without a registry entry: no known tail
    family = cam_family(name)
    if path is None or layer is target_layer(model, name):
        tail = family.tail
    elif family.tail_after is not None:
        tail = family.tail_after(model, layer)
    else:
        tail = None
    if tail is None:
        return None
    return lambda acts: tail(model, acts)


# --------------------------------------------------------------------------- precision

#: Families whose training step is slower under bfloat16 autocast on a CPU, where oneDNN's
#: bfloat16 backward pass of their many depthwise convolutions is slow: 0.5-0.9x against fp32
#: at 48 px (EfficientNet, MobileNetV2/V3, MNASNet, ShuffleNetV2), where ResNet, ResNeXt,
#: DenseNet, VGG, SqueezeNet, RegNet and ConvNeXt train 1.1-1.7x faster (bench/cpu_amp.py).
CPU_FLOAT32_FAMILIES = ("efficientnet", "mobilenet", "mnasnet", "shufflenet")


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX) that oneDNN uses;
    without it bfloat16 is emulated and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def trains_in_bfloat16(name: str, device: str | torch.device) -> bool:
    """Whether training model ``name`` on ``device`` runs under bfloat16 autocast when mixed
    precision is on (config ``training.amp``): always on CUDA; on a CPU only where it is
    faster, i.e. with native bfloat16 and outside :data:`CPU_FLOAT32_FAMILIES`."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_bfloat16() and not name.startswith(CPU_FLOAT32_FAMILIES)


# --------------------------------------------------------------------------- inputs


def to_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    """``model`` on ``device`` in channels-last memory format, where xaimed runs every model.

    Channels-last is what GPU tensor cores want, and on a CPU it avoids a trap: with one
    thread, PyTorch sends 1x1 convolutions of fewer than 16 images to its reference kernel,
    about 10x slower than oneDNN on small feature maps (a partial batch, 8 explained images,
    4 sanity images), while channels-last takes oneDNN at every batch size. The arithmetic is
    the same fp32; only the order of summation may differ (``bench/memory_format.py``).
    """
    return model.to(device=device, memory_format=torch.channels_last)


def normalize(
    images: torch.Tensor,
    mean: tuple[float, float, float] | list[float] = IMAGENET_MEAN,
    std: tuple[float, float, float] | list[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 (N, 3, H, W) in [0, 255] -> float32 ``(x / 255 - mean) / std``, same device."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.to(torch.float32) / 255.0 - m) / s


# --------------------------------------------------------------------------- checkpoints

_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"checkpoint meta key {where}[{key!r}] is not a str")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"checkpoint meta {where} is a {type(value).__name__}; only str/int/float/bool/None and "
        "lists/dicts of them load with weights_only=True (convert numpy values with .item())"
    )


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """``torch.save({"state_dict", "meta"})`` atomically (temp file + os.replace).

    meta must hold plain types only and at least ``model`` (name) and ``num_classes``; the
    usual keys are class_names, image_size, dataset, fold, mean, std, best_epoch.
    """
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    _check_plain(meta, "meta")
    missing = [k for k in ("model", "num_classes") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}; load_checkpoint needs them")
    # saved in the standard layout whatever memory format the model ran in
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # torch.load checks the zip layout, not the data: a checksum catches a flipped bit
    meta = {**meta, "state_sha256": state_sha256(state)}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save({"state_dict": state, "meta": meta}, fh)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Inverse of :func:`save_checkpoint`: (model in eval mode on ``device``, meta)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except RuntimeError as exc:
        if "PytorchStreamReader" in str(exc):  # a broken zip: truncated or overwritten
            raise quarantine(path, str(exc).splitlines()[0]) from None
        raise ValueError(
            f"{path} is not an xaimed checkpoint readable with weights_only=True: {exc}"
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"{path} is not an xaimed checkpoint readable with weights_only=True: {exc}"
        ) from exc
    if (
        not isinstance(obj, dict)
        or set(obj) != {"state_dict", "meta"}
        or not isinstance(obj["state_dict"], Mapping)
        or not all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values())
        or not isinstance(obj["meta"], dict)
        or not {"model", "num_classes"} <= set(obj["meta"])
    ):
        raise ValueError(
            f"{path} is not an xaimed checkpoint: expected {{'state_dict': mapping of tensors, "
            "'meta': dict with 'model' and 'num_classes'}"
        )
    meta = dict(obj["meta"])
    expected = meta.pop("state_sha256", None)  # integrity detail, not part of the meta
    if expected is not None and state_sha256(dict(obj["state_dict"])) != expected:
        raise quarantine(path, "the checksum of its weights does not match")
    with torch.random.fork_rng(devices=[]):  # random init is overwritten; keep caller's RNG
        model = build_model(meta["model"], int(meta["num_classes"]), "none")
    model.load_state_dict(obj["state_dict"])
    return to_device(model.eval(), device), meta
