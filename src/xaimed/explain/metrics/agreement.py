"""How alike two maps of the same image are: Spearman rank correlation, SSIM and the IoU of
their top-k % pixels, one value per pair of maps. Used where two maps of one image should
agree: by independently trained models (:mod:`xaimed.stats.repeatability`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xaimed.explain.metrics.confidence import constant_maps
from xaimed.explain.metrics.localisation import top_k_pixels
from xaimed.explain.metrics.sanity import spearman, ssim

__all__ = ["AGREEMENT_METRICS", "map_agreement", "top_k_iou"]

AGREEMENT_METRICS = ["spearman", "ssim", "iou_top_k"]


def top_k_iou(
    a: np.ndarray,
    b: np.ndarray,
    top_k: float = 10,
    seeds_a: Sequence[int] | None = None,
    seeds_b: Sequence[int] | None = None,
) -> np.ndarray:
    """IoU of the ``top_k`` % most relevant pixels of each pair of maps (N, H, W) -> (N,)
    (rounded up, at least one pixel). Ties are broken as in
    :func:`~xaimed.explain.metrics.localisation.pixel_order`, each map with its own seed, so a
    plateau two maps share is not counted as agreement."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"maps {a.shape} and {b.shape} must both be (N, H, W)")
    if not 0 < top_k <= 100:
        raise ValueError(f"top_k is a percentage in (0, 100], got {top_k}")
    n = len(a)
    seeds_a = [0] * n if seeds_a is None else list(seeds_a)
    seeds_b = [1] * n if seeds_b is None else list(seeds_b)
    out = np.empty(n)
    for i in range(n):
        top_a = top_k_pixels(a[i], top_k, seeds_a[i])
        top_b = top_k_pixels(b[i], top_k, seeds_b[i])
        out[i] = (top_a & top_b).sum() / (top_a | top_b).sum()
    return out


def map_agreement(
    a: np.ndarray,
    b: np.ndarray,
    top_k: float = 10,
    seeds_a: Sequence[int] | None = None,
    seeds_b: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """:data:`AGREEMENT_METRICS` of each pair of maps (N, H, W) in [0, 1], by name, and
    ``constant``: where either map is constant every metric is NaN (two all-zero maps would
    otherwise have an SSIM of 1)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    constant = constant_maps(a) | constant_maps(b)
    scores = {
        "spearman": spearman(a, b),
        "ssim": ssim(a, b, data_range=1.0),
        "iou_top_k": top_k_iou(a, b, top_k, seeds_a, seeds_b),
    }
    for values in scores.values():
        values[constant] = np.nan
    return {**scores, "constant": constant}
