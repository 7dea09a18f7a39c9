"""The CAM layer registry: each model family's target layer and the part of the network after
it.

Everything architecture specific that the CAM code needs lives in ONE registry,
:data:`CAM_FAMILIES`: model-name prefix -> (target layer, tail after that layer, and for the
transformers the reshape of a layer's output into the (N, C, h, w) maps CAMs are made of). Add
a new architecture family there, nowhere else. A run may explain another layer of a model (config
``explain.target_layers``): :func:`target_layer` and :func:`model_tail` take that layer's dotted
module path, and the registry's default applies when it is None.
"""

from __future__ import annotations

import math
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
    "reshape_transform",
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


def _vit_tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 1 + h*w, C) ViT tokens -> (N, C, h, w): the class token dropped (it has no place in
    the image), the patch tokens laid out row by row as ``VisionTransformer._process_input``
    flattened them."""
    patches = tokens[:, 1:, :]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a square grid")
    return patches.reshape(patches.shape[0], side, side, patches.shape[2]).permute(0, 3, 1, 2)


def _channels_last_to_map(x: torch.Tensor) -> torch.Tensor:
    """(N, h, w, C), torchvision's Swin layout -> (N, C, h, w)."""
    return x.permute(0, 3, 1, 2)


def _vit_reshape(path: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    # everything in the encoder is (N, tokens, C); conv_proj (the patch embedding) is NCHW
    return _vit_tokens_to_map if path == "encoder" or path.startswith("encoder.") else None


def _swin_reshape(path: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    # channels-last from the patch embedding's Permute (features.0.1) to norm; its conv
    # (features.0.0) and permute, avgpool after norm are NCHW
    nchw = path.startswith("features.0.0") or path in ("permute", "avgpool")
    channels_last = path.startswith("features") or path == "norm"
    return _channels_last_to_map if channels_last and not nchw else None


def _vit_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.heads(model.encoder.ln(x)[:, 0])  # the class token, as VisionTransformer.forward


def _vit_tail_after(
    model: nn.Module, layer: nn.Module
) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
    """After a whole encoder block: the later blocks, the final LayerNorm, the class token's
    head. None inside a block (its residual needs the block's input, not only the layer's)."""
    blocks = list(model.encoder.layers)
    if not any(layer is block for block in blocks):
        return None
    rest = blocks[[id(block) for block in blocks].index(id(layer)) + 1 :]

    def tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for block in rest:
            x = block(x)
        return _vit_head(model, x)

    return tail


def _swin_tail(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.head(model.flatten(model.avgpool(model.permute(x))))  # SwinTransformer.forward


def _swin_tail_after(
    model: nn.Module, layer: nn.Module
) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
    """After a stage or patch merging (``features.k``) or a block of a stage
    (``features.k.j``): the rest of the stage, the later ``features``, ``norm``, then the
    head. None elsewhere (inside a block, the patch embedding's parts)."""
    stages = list(model.features)
    for k, stage in enumerate(stages):
        later = stages[k + 1 :]
        blocks = list(stage) if isinstance(stage, nn.Sequential) and k > 0 else []
        if layer is stage:
            rest = later
        elif any(layer is block for block in blocks):
            rest = blocks[[id(b) for b in blocks].index(id(layer)) + 1 :] + later
        else:
            continue

        def tail(model: nn.Module, x: torch.Tensor, rest: list = rest) -> torch.Tensor:
            for module in rest:
                x = module(x)
            return _swin_tail(model, model.norm(x))

        return tail
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
    reshape: dotted path of a layer -> pytorch-grad-cam's ``reshape_transform`` turning that
            layer's output into (N, C, h, w), or None where it already is; None: every layer's
            output is (N, C, H, W). Every reshape here reads a channels-last output (tokens or
            (N, h, w, C)), whose channels pytorch-grad-cam's AblationLayerVit ablates.
    """

    target: Callable[[nn.Module], nn.Module]
    tail: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None
    why: str
    tail_after: (
        Callable[[nn.Module, nn.Module], Callable[[nn.Module, torch.Tensor], torch.Tensor] | None]
        | None
    ) = None
    reshape: Callable[[str], Callable[[torch.Tensor], torch.Tensor] | None] | None = None


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
    # AblationCAM: the library's, with AblationLayerVit (ln_1 sits inside the last block's
    # residual, so what follows it needs the block's input too: no tail from ln_1 alone).
    "vit_": CamFamily(
        lambda m: m.encoder.layers[-1].ln_1,
        None,
        "encoder.layers[-1].ln_1: the tokens entering the last block's attention (after it only "
        "the class token reaches the head: the patch tokens of the last block's output have "
        "zero gradients); the class token is dropped and the patch tokens reshaped to "
        "(N, C, image_size/16, image_size/16)",
        _vit_tail_after,
        _vit_reshape,
    ),
    # AblationCAM: the fast tail (permute, pooling, head after norm) is exact.
    "swin": CamFamily(
        lambda m: m.norm,
        _swin_tail,
        "norm: the last stage's LayerNorm output before global pooling, channels-last "
        "(N, h, w, C) in torchvision, permuted to (N, C, h, w); h = image_size/32",
        _swin_tail_after,
        _swin_reshape,
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


def reshape_transform(
    model: nn.Module, name: str, path: str | None = None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """pytorch-grad-cam's ``reshape_transform`` for the CAM target layer of ``model`` (``path``
    as in :func:`target_layer`): its output -> (N, C, h, w) maps, for the transformers of
    :data:`CAM_FAMILIES`; None where that output already is (N, C, H, W) (every CNN)."""
    if not any(name.startswith(prefix) for prefix in CAM_FAMILIES):
        return None  # an architecture without a registry entry: its layer is taken as it is
    family = cam_family(name)
    if family.reshape is None:
        return None
    if path is None:
        layer = target_layer(model, name)
        path = next(p for p, module in model.named_modules() if module is layer)
    return family.reshape(path)


def cam_map_sizes(name: str, image_size: int) -> dict:
    """The spatial size of every module's output of model ``name`` at ``image_size`` px, from
    one forward on the meta device (no memory, no weights, milliseconds), as JSON-able data:
    ``sizes`` {dotted path: [h, w]} for modules with (N, C, H, W) outputs (a transformer's
    tokens or channels-last outputs after its family's reshape), ``order`` (every module in
    registration order), ``containers`` (modules with children: stages and blocks) and
    ``default`` (the path of the :data:`CAM_FAMILIES` layer; None where unregistered)."""
    sizes: dict[str, list[int]] = {}
    registered = any(name.startswith(prefix) for prefix in CAM_FAMILIES)
    reshape = cam_family(name).reshape if registered else None
    with torch.device("meta"):
        model = build_model(name, 2, image_size=image_size).eval()
        try:
            default = target_layer(model, name)
        except NotImplementedError:
            default = None
        paths = {module: path for path, module in model.named_modules() if path}

        def record(module: nn.Module, _: Any, output: Any) -> None:
            path = paths.get(module)
            if path is None or not isinstance(output, torch.Tensor):
                return
            to_map = reshape(path) if reshape is not None else None
            if to_map is not None:
                try:
                    output = to_map(output)
                except (IndexError, RuntimeError, ValueError):
                    return  # not a map of this layout (a tuple's part, a pooled vector)
            if output.ndim == 4:
                sizes[path] = [int(output.shape[-2]), int(output.shape[-1])]

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
    first, else of its parent, and so on; stages and blocks before single operations. Where
    no level has one (Swin's ``norm``, whose only sibling before it is all of ``features``),
    the parts of the coarse top-level containers before ``path`` are searched, level by
    level."""
    sizes, order = maps["sizes"], maps["order"]
    if path not in order:
        return []
    before = order[: order.index(path)]

    def parent(p: str) -> str:
        return p.rsplit(".", 1)[0] if "." in p else ""

    def nearest_fine(candidates: list[str]) -> list[str]:
        fine = [p for p in candidates if p in sizes and min(sizes[p]) >= minimum]
        blocks = [p for p in fine if p in maps["containers"]] or fine
        return blocks[::-1][:count]

    parts = path.split(".")
    while parts:
        parts.pop()
        found = nearest_fine([p for p in before if parent(p) == ".".join(parts)])
        if found:
            return found
    candidates = [p for p in before if "." not in p]
    while candidates:
        coarse = {p for p in candidates if p in maps["containers"]}
        candidates = [p for p in before if parent(p) in coarse]
        found = nearest_fine(candidates)
        if found:
            return found
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
