"""Class activation maps with pytorch-grad-cam, plus an exact, fast AblationCAM.

:data:`CAM_METHODS` is the one registry from method name to how it is computed.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytorch_grad_cam.ablation_cam
import pytorch_grad_cam.score_cam
import torch
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayerVit
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

from xaimed.models.layers import model_tail, reshape_transform, target_layer

# The library's AblationCAM and ScoreCAM draw a tqdm bar per image, which would fill the rule's
# log (the explain stage logs its own progress). TQDM_DISABLE cannot stop them: tqdm reads it
# when first imported, and torch imports tqdm before this module can set it.
_QUIET_TQDM = types.SimpleNamespace(
    tqdm=functools.partial(pytorch_grad_cam.ablation_cam.tqdm.tqdm, disable=True)
)
pytorch_grad_cam.ablation_cam.tqdm = _QUIET_TQDM
pytorch_grad_cam.score_cam.tqdm = _QUIET_TQDM

__all__ = [
    "CAM_METHODS",
    "METHODS",
    "CamMethod",
    "FastAblationCAM",
    "SignedEigenCAM",
    "SignedEigenGradCAM",
    "cam_grid",
    "compute_cams",
    "compute_cams_and_signs",
]

#: the library's ablation constant (pytorch_grad_cam.ablation_layer.AblationLayer.__call__)
_LIBRARY_ABLATION_VALUE = 1e7
#: ablated copies of one image's activations pushed through the tail at once
ABLATION_CHUNK = 256


class FastAblationCAM(AblationCAM):
    """pytorch-grad-cam's AblationCAM with the same weights, computed from the tail only.

    The library replaces the target layer by an AblationLayer and re-runs the WHOLE network
    once per channel. Everything before the target layer is wasted work: the ablated network
    is ``tail(ablate_k(activations))``. This class computes the target-layer activations once,
    builds the ablated copies exactly as ``AblationLayer.__call__`` does, and runs only
    ``tail`` (the registered part of the model after the target layer) on them. Only
    :meth:`get_cam_weights` is overridden; the CAM assembly, ReLU, scaling and resizing are the
    library's own code.

    Ablation value, as in the library: per image, if the minimum activation is exactly 0 the
    channel is set to 0. Otherwise (e.g. SiLU/BN outputs) the library sets the channel of the
    i-th copy in each batch of ``self.batch_size`` (32) to ``min(batch) - 1e7`` where the batch
    already holds copies 0..i-1, i.e. ``m - (i + 1) * 1e7`` computed by repeated float32
    subtraction; this is reproduced value for value (it is a quirk of the library that the
    value depends on the channel's position in its batch; we keep it to stay identical).

    With a ``reshape_transform`` (a transformer's layer; see
    :func:`xaimed.models.layers.reshape_transform`) the activations are channels-last: channel
    k is ablated along the last dimension, at every token or position, as the library's
    AblationLayerVit does.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: list[nn.Module],
        tail: Callable[[torch.Tensor], torch.Tensor],
        chunk: int = ABLATION_CHUNK,
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(model, target_layers, reshape_transform=reshape_transform)
        self.tail = tail
        self.chunk = int(chunk)

    def _ablation_values(self, acts: torch.Tensor) -> torch.Tensor:
        """(C,) value that channel k of this image's activations is set to."""
        lowest = torch.min(acts)
        n_channels = acts.shape[0]
        if lowest == 0:
            return torch.zeros(n_channels, dtype=acts.dtype, device=acts.device)
        position_values = []
        value = lowest
        for _ in range(self.batch_size):
            value = value - _LIBRARY_ABLATION_VALUE  # float32, same op as the library
            position_values.append(value)
        per_position = torch.stack(position_values)
        positions = torch.arange(n_channels, device=acts.device) % self.batch_size
        return per_position[positions]

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Callable],
        activations: np.ndarray,
        grads: np.ndarray,
    ) -> np.ndarray:
        captured: dict[str, torch.Tensor] = {}

        def keep(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            captured["acts"] = output.detach().clone()

        handle = target_layer.register_forward_hook(keep)
        try:
            with torch.no_grad():
                outputs = self.model(input_tensor)
        finally:
            handle.remove()
        original_scores = np.float32(
            [target(output).cpu().item() for target, output in zip(targets, outputs, strict=True)]
        )
        acts = captured["acts"]
        if self.reshape_transform is not None:  # channels-last: the channel dimension to 1
            acts = acts.movedim(-1, 1)
        n_images, n_channels = acts.shape[:2]
        new_scores = np.empty((n_images, n_channels), dtype=np.float32)
        with torch.no_grad():
            for b, target in enumerate(targets):
                values = self._ablation_values(acts[b])
                scores = []
                for start in range(0, n_channels, self.chunk):
                    stop = min(start + self.chunk, n_channels)
                    count = stop - start
                    batch = acts[b].unsqueeze(0).repeat(count, *([1] * (acts.ndim - 1)))
                    rows = torch.arange(count, device=acts.device)
                    batch[rows, rows + start] = values[start:stop].view(
                        count, *([1] * (acts.ndim - 2))
                    )
                    if self.reshape_transform is not None:
                        batch = batch.movedim(1, -1)
                    logits = self.tail(batch)
                    if isinstance(target, ClassifierOutputTarget):
                        scores.append(logits[:, target.category])
                    else:  # any other target: one row at a time, as the library does
                        scores.append(torch.stack([target(o) for o in logits]))
                new_scores[b] = torch.cat(scores).float().cpu().numpy()
        original_scores = original_scores[:, None]
        return (original_scores - new_scores) / original_scores


def _fast_ablation(
    model: nn.Module, layer: nn.Module, model_name: str, layer_path: str | None = None
) -> BaseCAM | None:
    tail = model_tail(model, model_name, layer_path)
    if tail is None:
        return None  # no known tail after this layer: the library's (slow) AblationCAM
    reshape = reshape_transform(model, model_name, layer_path)
    return FastAblationCAM(model=model, target_layers=[layer], tail=tail, reshape_transform=reshape)


def _sign_corrected(projection: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip each image's principal-component projection whose spatial Pearson correlation with
    ``reference`` is negative -> (projections, flipped flags). Both arrays are (N, h, w)."""
    p = projection.reshape(len(projection), -1).astype(np.float64)
    r = reference.reshape(len(reference), -1).astype(np.float64)
    p = p - p.mean(axis=1, keepdims=True)
    r = r - r.mean(axis=1, keepdims=True)
    flipped = (p * r).sum(axis=1) < 0  # sign of the covariance = sign of the correlation
    out = projection.copy()
    out[flipped] *= -1
    return out, flipped


class _SignedEigen:
    """EigenCAM/EigenGradCAM with the sign of the first principal component fixed.

    The SVD's component has an arbitrary sign, and the library's ReLU then keeps either the
    region the component points at or its complement. Here the sign is the one under which the
    projection correlates positively (over the target layer's positions) with the channel sum
    of the very matrix whose component is taken: the activations for EigenCAM (where the layer
    fires), gradients x activations for EigenGradCAM (each position's first-order contribution
    to the class score). ``flipped`` collects, per image, whether the library's sign was
    reversed. Otherwise the library's code: ReLU, per-image min-max scaling, resizing.
    """

    flipped: list[bool]

    def __init__(
        self,
        model: nn.Module,
        target_layers: list[nn.Module],
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(model, target_layers, reshape_transform)
        self.flipped = []

    def _matrix(self, activations: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        target_category: object,
        activations: np.ndarray,
        grads: np.ndarray | None,
        eigen_smooth: bool,
    ) -> np.ndarray:
        matrix = self._matrix(activations, grads)
        projection = get_2d_projection(matrix)
        projection, flipped = _sign_corrected(projection, np.nan_to_num(matrix).sum(axis=1))
        self.flipped.extend(bool(f) for f in flipped)
        return projection


class SignedEigenGradCAM(_SignedEigen, EigenGradCAM):
    def _matrix(self, activations: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        return grads * activations


class SignedEigenCAM(_SignedEigen, EigenCAM):
    def _matrix(self, activations: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        return activations


@dataclass(frozen=True)
class CamMethod:
    """library_class: the pytorch-grad-cam class whose output this method reproduces (or our
    subclass of it, for the sign-corrected Eigen variants).
    fast: optional (model, layer, model_name, layer_path) -> an equivalent, faster CAM object
    (or None to use the library class); layer_path is the dotted path ``layer`` was chosen by
    (None: the registry's default layer). The library class gets the layer's reshape
    transform (a transformer's; see :func:`xaimed.models.layers.reshape_transform`)."""

    library_class: type[BaseCAM]
    fast: Callable[[nn.Module, nn.Module, str, str | None], BaseCAM | None] | None = None

    def make(
        self, model: nn.Module, layer: nn.Module, model_name: str, layer_path: str | None = None
    ) -> BaseCAM:
        cam = self.fast(model, layer, model_name, layer_path) if self.fast is not None else None
        if cam is not None:
            return cam
        reshape = reshape_transform(model, model_name, layer_path)
        extra = {}
        if reshape is not None and issubclass(self.library_class, AblationCAM):
            # its default AblationLayer ablates dimension 1; a reshaped layer is channels-last
            extra["ablation_layer"] = AblationLayerVit()
        return self.library_class(
            model=model, target_layers=[layer], reshape_transform=reshape, **extra
        )


#: THE registry: method name -> how it is computed.
CAM_METHODS: dict[str, CamMethod] = {
    "gradcam": CamMethod(GradCAM),
    "gradcampp": CamMethod(GradCAMPlusPlus),
    "xgradcam": CamMethod(XGradCAM),
    "eigengradcam": CamMethod(EigenGradCAM),
    "layercam": CamMethod(LayerCAM),
    "ablationcam": CamMethod(AblationCAM, fast=_fast_ablation),  # exact, tail-only
    "scorecam": CamMethod(ScoreCAM),
    "eigencam": CamMethod(EigenCAM),
    # The first principal component's sign is arbitrary; these fix it (see _SignedEigen).
    "eigengradcam_signed": CamMethod(SignedEigenGradCAM),
    "eigencam_signed": CamMethod(SignedEigenCAM),
}
METHODS: tuple[str, ...] = tuple(CAM_METHODS)


def compute_cams(
    model: nn.Module,
    model_name: str,
    method: str,
    inputs: torch.Tensor,
    targets: Sequence[int],
    batch_size: int = 16,
    layer_path: str | None = None,
) -> np.ndarray:
    """float32 (N, H, W) CAMs in [0, 1] at the input resolution, one per (image, target class).

    Exactly what ``Cam(model, [target_layer])(input_tensor, [ClassifierOutputTarget(c)...])``
    returns (per-image min-max scaling and resizing by the library), in batches of
    ``batch_size``. ``inputs`` are normalised float images; ``model`` is put in eval mode.
    The target layer is the module at the dotted ``layer_path`` (config
    ``explain.target_layers``), or the registry's default
    (:data:`xaimed.models.layers.CAM_FAMILIES`).
    """
    return compute_cams_and_signs(
        model, model_name, method, inputs, targets, batch_size, layer_path
    )[0]


def compute_cams_and_signs(
    model: nn.Module,
    model_name: str,
    method: str,
    inputs: torch.Tensor,
    targets: Sequence[int],
    batch_size: int = 16,
    layer_path: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`compute_cams` and, per image, whether a sign-corrected Eigen method flipped the
    library's sign: float (N,) of 1.0/0.0, NaN for every other method."""
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; supported: {', '.join(METHODS)}")
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (N, C, H, W), got {tuple(inputs.shape)}")
    targets = [int(t) for t in targets]
    n = inputs.shape[0]
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    result = np.empty((n, *inputs.shape[-2:]), dtype=np.float32)
    flipped = np.full(n, np.nan)
    if n == 0:
        return result, flipped
    model.eval()
    layer = target_layer(model, model_name, layer_path)
    device = next(model.parameters()).device
    done = 0
    make = CAM_METHODS[method].make
    # torch.enable_grad: gradient methods must work even under a caller's no_grad
    with torch.enable_grad(), make(model, layer, model_name, layer_path) as cam:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            chunk_targets = [ClassifierOutputTarget(c) for c in targets[start:stop]]
            try:
                maps = cam(input_tensor=inputs[start:stop].to(device), targets=chunk_targets)
            except IndexError as exc:  # BaseCAM.__exit__ would swallow an IndexError
                raise ValueError(
                    f"CAM failed for images {start}..{stop - 1} (targets "
                    f"{targets[start:stop]}): {exc}"
                ) from exc
            result[start:stop] = maps
            done = stop
        if isinstance(cam, _SignedEigen):
            flipped[:] = cam.flipped
    if done != n:
        raise RuntimeError(f"CAM computation stopped after {done} of {n} images")
    return result, flipped


def cam_grid(
    model: nn.Module, model_name: str, inputs: torch.Tensor, layer_path: str | None = None
) -> tuple[int, int]:
    """(rows, cols) of the target layer's map for ``inputs`` (one forward of the first image):
    the native resolution of every CAM of this model, before pytorch-grad-cam resizes it. The
    layer is chosen as in :func:`compute_cams`."""
    layer = target_layer(model, model_name, layer_path)
    reshape = reshape_transform(model, model_name, layer_path) or (lambda output: output)
    shapes: list[tuple[int, ...]] = []

    def keep(module: nn.Module, args: object, output: object) -> None:
        # a tuple (ViT's self_attention) is no map: () is refused below with the layer named
        shapes.append(tuple(reshape(output).shape) if isinstance(output, torch.Tensor) else ())

    model.eval()
    handle = layer.register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(inputs[:1].to(next(model.parameters()).device))
    finally:
        handle.remove()
    if not shapes or len(shapes[0]) != 4:
        raise ValueError(
            f"the target layer {layer_path or 'default'} of {model_name} gives no (N, C, H, W) "
            f"map: {(shapes[0] or 'not a tensor') if shapes else 'no output'}"
        )
    return int(shapes[0][-2]), int(shapes[0][-1])
