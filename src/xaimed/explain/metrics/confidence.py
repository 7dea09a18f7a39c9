"""Explanation scores, one value per image, computed with pytorch-grad-cam's own metrics.

All scores share the signature ``(model, inputs, cams, targets, ...) -> float32 (N,)`` where
``inputs`` are the normalised images the CAMs were computed on, ``cams`` the (N, H, W) maps in
[0, 1] and ``targets`` the explained class per image. The model is put in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

__all__ = ["CONSTANT_RANGE", "check_maps", "confidence_increase", "constant_maps", "road"]

#: a map whose values span at most this much (of [0, 1]) is constant: all zero (a 1x1 target
#: layer, a dead ReLU) or flat; it points nowhere, and float16 storage keeps 1e-3 steps
CONSTANT_RANGE = 1e-3


def constant_maps(cams: np.ndarray) -> np.ndarray:
    """bool (N,): which of the (N, H, W) maps are constant (see :data:`CONSTANT_RANGE`)."""
    cams = np.asarray(cams, dtype=np.float32)
    if cams.size == 0:
        return np.ones(len(cams), bool)  # no images, or maps without pixels
    flat = cams.reshape(len(cams), -1)
    return (flat.max(axis=1) - flat.min(axis=1)) <= CONSTANT_RANGE


def check_maps(
    inputs: torch.Tensor, cams: np.ndarray, targets: Sequence[int]
) -> tuple[np.ndarray, list[int]]:
    """float32 maps and int targets, after checking they match the (N, C, H, W) inputs."""
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
    cams, targets = check_maps(inputs, cams, targets)
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


# The library's eight-neighbour weights (pytorch_grad_cam.metrics.road.neighbors_weights).
_NEIGHBOURS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)
_ROAD_NOISE = 0.01  # NoisyLinearImputer's default


def _linear_infill(image: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The library's noiseless linear imputation of the pixels where ``keep`` is 0.

    Each missing pixel equals the weighted mean of its neighbours, a sparse linear system
    solved exactly. The same system as ``NoisyLinearImputer.setup_sparse_system``, built in
    one pass of coordinate arrays instead of element-wise ``lil_matrix`` writes, with the
    right-hand side accumulated in the library's neighbour order so the solution is
    bit-identical. Returns the flat indices of the missing pixels and their values (N, C).
    """
    height, width = keep.shape
    flat_keep = keep.reshape(-1) > 0.5
    flat_image = image.reshape(image.shape[0], -1)
    missing = np.flatnonzero(~flat_keep)
    variable = np.zeros(flat_keep.size, dtype=np.int64)
    variable[missing] = np.arange(len(missing))
    n = len(missing)
    rhs = np.zeros((n, image.shape[0]))
    diagonal = np.ones(n)
    rows, cols, data = [], [], []
    row0, col0 = missing // width, missing % width
    for (d0, d1), weight in _NEIGHBOURS:
        r, c = row0 + d0, col0 + d1
        inside = (r >= 0) & (c >= 0) & (r < height) & (c < width)
        ids = np.flatnonzero(inside)
        neighbour = r[inside] * width + c[inside]
        known = flat_keep[neighbour]
        rhs[ids[known], :] -= weight * flat_image[:, neighbour[known]].T
        rows.append(ids[~known])
        cols.append(variable[neighbour[~known]])
        data.append(np.full(int((~known).sum()), weight))
        diagonal[~inside] -= weight
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    data.append(-diagonal)
    system = coo_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsc()
    solution = spsolve(system, rhs).reshape(n, -1)
    return missing, solution


def _road_perturbations(
    image: torch.Tensor, cam: np.ndarray, percentiles: Sequence[float], seed: int
) -> torch.Tensor:
    """The 2 x P images ROAD feeds the model for one image: least-relevant-first removal at
    each percentile, then most-relevant-first, with the library's noise drawn in the library's
    order from a generator seeded with ``seed`` (so one image's score never depends on the
    others in its batch)."""
    pixels = image.detach().cpu().float()
    array = pixels.numpy()
    keeps = [
        np.float32(relevance < np.percentile(relevance, percentile))
        # LeRF removes the least relevant: threshold on 1 - cam
        for relevance in (1 - cam, cam)
        for percentile in percentiles
    ]
    # The solves are independent and SuperLU lets go of the GIL, so they share the job's
    # threads (on a GPU they are most of ROAD); the noise is drawn afterwards, in order.
    with ThreadPoolExecutor(min(len(keeps), torch.get_num_threads())) as pool:
        infills = list(pool.map(lambda keep: _linear_infill(array, keep), keeps))
    generator = torch.Generator().manual_seed(int(seed))
    out = []
    for missing, values in infills:
        filled = torch.tensor(values, dtype=torch.float).t()
        # Drawn like the library's randn_like, which follows the memory layout that
        # torch.tensor gives spsolve's result: same numbers in the same places.
        noise = torch.empty_like(filled).normal_(generator=generator)
        infill = pixels.reshape(pixels.shape[0], -1).clone()
        infill[:, missing] = filled + _ROAD_NOISE * noise
        out.append(infill.reshape_as(pixels))
    return torch.stack(out)


def road(
    model: nn.Module,
    inputs: torch.Tensor,
    cams: np.ndarray,
    targets: Sequence[int],
    percentiles: Sequence[float] = (20, 40, 60, 80),
    seed: int = 0,
    batch_size: int = 16,
) -> np.ndarray:
    """ROAD (Rong et al. 2022) as pytorch-grad-cam's ``ROADCombined(percentiles)`` with
    ``ClassifierOutputSoftmaxTarget`` computes it: the mean over percentiles of the confidence
    change when the least relevant pixels are imputed, minus the change when the most relevant
    are imputed, halved. Higher is better.

    Same imputations and noise as the library called on each image alone with torch's
    generator seeded to ``seed``, but the system is built vectorised and the model sees the
    perturbed images in batches of ``batch_size`` rather than one at a time (the library's
    per-image calls made ROAD 95 % of the explain stage's time).
    """
    cams, targets = check_maps(inputs, cams, targets)
    model.eval()
    device = next(model.parameters()).device
    n_percentiles = len(percentiles)
    out = np.empty(len(targets), dtype=np.float32)
    with torch.no_grad():
        original = torch.softmax(_forward(model, inputs, device, batch_size), 1)
        for i, target in enumerate(targets):
            perturbed = _road_perturbations(inputs[i], cams[i], percentiles, seed)
            probs = torch.softmax(_forward(model, perturbed, device, batch_size), 1)
            change = np.float32(probs[:, target].numpy()) - np.float32(original[i, target].item())
            lerf = np.mean(change[:n_percentiles], dtype=np.float32)
            morf = np.mean(change[n_percentiles:], dtype=np.float32)
            out[i] = (lerf - morf) / 2
    return out


def _forward(model: nn.Module, images: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    """Logits on the CPU, computed in batches."""
    return torch.cat(
        [
            model(images[start : start + batch_size].to(device)).float().cpu()
            for start in range(0, len(images), batch_size)
        ]
    )
