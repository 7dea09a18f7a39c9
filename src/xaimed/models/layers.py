"""The CAM layer registry: each model family's target layer and the part of the network after
it.

Everything architecture specific that the CAM code needs lives in ONE registry,
:data:`CAM_FAMILIES`: model-name prefix -> (target layer, tail after that layer). Add a new
architecture family there, nowhere else. A run may explain another layer of a model (config
``explain.target_layers``): :func:`target_layer` and :func:`model_tail` take that layer's dotted
module path, and the registry's default applies when it is None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xaimed.models.build import _densenet_relu5, build_model

__all__ = [
    "CAM_FAMILIES",
    "CamFamily",
    "cam_family",
    "cam_map_sizes",
    "finer_cam_layers",
    "model_tail",
    "module_names",
    "target_layer",
]


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
