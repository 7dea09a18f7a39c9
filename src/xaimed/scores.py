"""Explanation scores, one value per image, computed with pytorch-grad-cam's own metrics.

All scores share the signature ``(model, inputs, cams, targets, ...) -> float32 (N,)`` where
``inputs`` are the normalised images the CAMs were computed on, ``cams`` the (N, H, W) maps in
[0, 1] and ``targets`` the explained class per image. The model is put in eval mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

__all__ = ["confidence_increase", "road"]


def _check(
    inputs: torch.Tensor, cams: np.ndarray, targets: Sequence[int]
) -> tuple[np.ndarray, list[int]]:
    cams = np.asarray(cams, dtype=np.float32)  # float16 maps from cams.npz are fine too
    targets = [int(t) for t in targets]
    n = inputs.shape[0]
    if inputs.ndim != 4 or cams.shape != (n, *inputs.shape[-2:]) or len(targets) != n:
        raise ValueError(
            f"inputs {tuple(inputs.shape)}, cams {cams.shape} and {len(targets)} targets do not "
            "match: expected (N, C, H, W), (N, H, W) and N"
        )
    return cams, targets


def confidence_increase(
    model: nn.Module,
    inputs: torch.Tensor,
    cams: np.ndarray,
    targets: Sequence[int],
    batch_size: int = 16,
) -> np.ndarray:
    """``softmax(model(x * cam))[c] - softmax(model(x))[c]`` per image (c = target class).

    Exactly pytorch-grad-cam's ``CamMultImageConfidenceChange`` with
    ``ClassifierOutputSoftmaxTarget``, in batches of ``batch_size``.
    """
    cams, targets = _check(inputs, cams, targets)
    model.eval()
    device = next(model.parameters()).device
    metric = CamMultImageConfidenceChange()
    out = np.empty(len(targets), dtype=np.float32)
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        out[start:stop] = metric(
            inputs[start:stop].to(device),
            cams[start:stop],
            [ClassifierOutputSoftmaxTarget(c) for c in targets[start:stop]],
            model,
        )
    return out


def road(
    model: nn.Module,
    inputs: torch.Tensor,
    cams: np.ndarray,
    targets: Sequence[int],
    percentiles: Sequence[float] = (20, 40, 60, 80),
    seed: int = 0,
    batch_size: int = 16,
) -> np.ndarray:
    """ROAD (Rong et al. 2022): pytorch-grad-cam's ``ROADCombined(percentiles)`` with
    ``ClassifierOutputSoftmaxTarget``: mean over percentiles of (confidence change when the
    LEAST relevant pixels are imputed - change when the MOST relevant are imputed) / 2.
    Higher is better.

    The library's NoisyLinearImputer adds ``torch.randn_like`` noise from torch's global CPU
    generator. Each image is scored on its own with that generator seeded to ``seed`` (inside
    ``torch.random.fork_rng``, so the caller's RNG state is untouched): an image's score
    depends only on (model, image, cam, target, percentiles, seed), not on the batch it came
    in, its position, or ``batch_size`` (accepted for the shared signature; the imputation is
    a per-image sparse solve, so batching would not speed it up).
    """
    cams, targets = _check(inputs, cams, targets)
    model.eval()
    device = next(model.parameters()).device
    metric = ROADCombined(percentiles=list(percentiles))
    out = np.empty(len(targets), dtype=np.float32)
    for i, target in enumerate(targets):
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # road.py hands torch tensors to numpy functions (NumPy 2 deprecation noise)
            warnings.filterwarnings("ignore", "__array_wrap__", DeprecationWarning)
            torch.default_generator.manual_seed(int(seed))
            out[i] = metric(
                inputs[i : i + 1].to(device),
                cams[i : i + 1],
                [ClassifierOutputSoftmaxTarget(target)],
                model,
            )[0]
    return out
