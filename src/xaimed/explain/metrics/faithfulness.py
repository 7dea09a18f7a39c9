"""Does the model need what the map highlights? Deletion and insertion curves (Petsiuk et al.
2018, RISE).

Deletion replaces the pixels in map order, most relevant first, with a substrate (the mean
colour: zero in normalised input space) and follows the softmax probability of the explained
class; a faithful map makes it fall fast (low AUC). Insertion starts from a blurred image and
reveals the original pixels in the same order; a faithful map makes it rise fast (high AUC).
Both are areas under the probability curve over the share of pixels changed, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from xaimed.explain.metrics.confidence import check_maps
from xaimed.explain.metrics.localisation import pixel_order

__all__ = [
    "BLUR_SIGMA",
    "blurred",
    "curves",
    "faithfulness_scores",
    "mean_colour",
]

#: the insertion start's Gaussian blur, as a share of the image side: enough to wash out a
#: lesion of a few percent of the image while keeping the image's coarse layout
BLUR_SIGMA = 1 / 16

Substrate = Callable[[torch.Tensor], torch.Tensor]


def mean_colour(image: torch.Tensor) -> torch.Tensor:
    """Zero in normalised input space: the normalisation's mean colour (RISE's deletion)."""
    return torch.zeros_like(image)


def blurred(image: torch.Tensor) -> torch.Tensor:
    """The image under a Gaussian blur of BLUR_SIGMA x its side (RISE's insertion start)."""
    array = image.detach().cpu().float().numpy()
    sigma = BLUR_SIGMA * max(array.shape[-2:])
    out = ndimage.gaussian_filter(array, sigma=(0, sigma, sigma), mode="nearest")
    return torch.from_numpy(out).to(image.device, image.dtype)


def _steps(n_pixels: int, steps: int) -> np.ndarray:
    """Pixels changed after each of the steps (0 first, all last)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return np.round(np.linspace(0, n_pixels, steps + 1)).astype(np.int64)


def _perturbed(
    image: torch.Tensor, start: torch.Tensor, end: torch.Tensor, order: np.ndarray, counts
) -> torch.Tensor:
    """(len(counts), C, H, W): ``start`` with its ``counts[s]`` first pixels of ``order``
    replaced by those of ``end``."""
    height, width = image.shape[-2:]
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    changed = torch.from_numpy(rank[None, :] < counts[:, None]).to(image.device)
    changed = changed.view(len(counts), 1, height, width)
    return torch.where(changed, end.unsqueeze(0), start.unsqueeze(0))


def _curve_images(
    image: torch.Tensor,
    order: np.ndarray,
    counts: np.ndarray,
    deletion_substrate: Substrate,
    insertion_substrate: Substrate,
) -> torch.Tensor:
    """(2 * len(counts) - 1, C, H, W): the distinct images of one image's two curves: the image
    itself (deletion's start and insertion's end), the deletion steps after it, the insertion
    steps before it."""
    deletion = _perturbed(image, image, deletion_substrate(image), order, counts[1:])
    insertion = _perturbed(image, insertion_substrate(image), image, order, counts[:-1])
    return torch.cat([image.unsqueeze(0), deletion, insertion])


def _probabilities(
    model: nn.Module, stacks: Iterable[torch.Tensor], batch_size: int
) -> torch.Tensor:
    """Softmax probabilities (rows, classes) of every image of the stacks, in order. The model
    sees full batches of ``batch_size`` across stacks: a stack of 21 images alone would leave
    a part-filled batch, which costs nearly as much as a full one."""
    out: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    waiting = 0
    for stack in stacks:
        pending.append(stack)
        waiting += len(stack)
        if waiting < batch_size:
            continue
        images = torch.cat(pending)
        full = waiting - waiting % batch_size
        for start in range(0, full, batch_size):
            out.append(torch.softmax(model(images[start : start + batch_size]).float(), 1))
        pending, waiting = [images[full:]], waiting - full
    if waiting:
        out.append(torch.softmax(model(torch.cat(pending)).float(), 1))
    return torch.cat(out)


def curves(
    model: nn.Module,
    inputs: torch.Tensor,
    cams: np.ndarray,
    targets: Sequence[int],
    *,
    steps: int = 10,
    seeds: Sequence[int] | None = None,
    batch_size: int = 16,
    deletion_substrate: Substrate = mean_colour,
    insertion_substrate: Substrate = blurred,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fractions (steps+1,), deletion (N, steps+1), insertion (N, steps+1)): the softmax
    probability of ``targets[i]`` after each step. Pixel order: :func:`pixel_order` of each
    map with ``seeds[i]`` (default 0) breaking ties. The model sees the perturbed images of all
    ``inputs`` in batches of ``batch_size``, the unperturbed image once per curve pair."""
    cams, targets = check_maps(inputs, cams, targets)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = inputs.shape[0]
    seeds = [0] * n if seeds is None else list(seeds)
    counts = _steps(cams[0].size if n else 1, steps)
    k = len(counts)
    model.eval()
    device = next(model.parameters()).device
    if n == 0:
        return counts / counts[-1], np.zeros((0, k)), np.zeros((0, k))
    stacks = (
        _curve_images(
            inputs[i].to(device),
            pixel_order(cams[i], seeds[i]),
            counts,
            deletion_substrate,
            insertion_substrate,
        )
        for i in range(n)
    )
    with torch.no_grad():
        probs = _probabilities(model, stacks, batch_size).cpu().double().numpy()
    probs = probs.reshape(n, 2 * k - 1, -1)[np.arange(n), :, targets]  # (n, 2k - 1)
    deletion = probs[:, :k]
    insertion = np.concatenate([probs[:, k:], probs[:, :1]], axis=1)
    return counts / counts[-1], deletion, insertion


def faithfulness_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    cams: np.ndarray,
    targets: Sequence[int],
    **kwargs,
) -> dict[str, np.ndarray]:
    """``deletion_auc`` (lower is better) and ``insertion_auc`` (higher is better) per image:
    trapezoidal areas under :func:`curves` (same keyword arguments)."""
    fractions, deletion, insertion = curves(model, inputs, cams, targets, **kwargs)
    return {
        "deletion_auc": np.trapezoid(deletion, fractions, axis=1),
        "insertion_auc": np.trapezoid(insertion, fractions, axis=1),
    }
