"""Does a map point at the lesion? Localisation scores against ground-truth masks, and the
model-free baseline maps every explanation score is read against.

Every score takes ``(cams, masks)`` with cams (N, H, W) float maps (higher = more relevant)
and masks (N, H, W) with nonzero inside the lesion, and returns float64 (N,): NaN where the
mask is empty (no lesion to point at) or the score is undefined.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "BASELINES",
    "TIE_TOLERANCE",
    "baseline_maps",
    "centre_gaussian",
    "energy_pointing_game",
    "image_seed",
    "iou_top_k",
    "localisation_scores",
    "pixel_order",
    "pointing_game",
    "random_map",
    "smooth_random_map",
]

#: model-free maps scored beside every method: floors (random, centre), a ceiling (mask) and
#: a blur-bias control (smooth_random: noise as smooth as a CAM, see :func:`smooth_random_map`)
BASELINES: tuple[str, ...] = ("random", "smooth_random", "centre", "mask")
#: the centre Gaussian's standard deviation as a share of the image side
CENTRE_SIGMA = 0.25


def _check(cams: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks) > 0
    if cams.ndim != 3 or cams.shape != masks.shape:
        raise ValueError(f"cams {cams.shape} and masks {masks.shape} must both be (N, H, W)")
    return cams, masks


def image_seed(seed: int, image_id: str) -> int:
    """The seed of one image's random map and pixel tie-breaking: it does not depend on which
    other images are scored in the same job."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(image_id).encode())) % 2**32


def pixel_order(cam: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices from the most to the least relevant; ties in random order (seeded),
    so a flat map removes pixels at random instead of row by row from the top."""
    flat = np.asarray(cam, dtype=np.float64).reshape(-1)
    tie_break = np.random.default_rng(seed).permutation(flat.size)
    return np.lexsort((tie_break, -flat))


#: pixels within this share of the map's range (max - min) of its maximum tie with it: float
#: rounding (another device, another BLAS) must not turn a flat peak into a single pixel
TIE_TOLERANCE = 1e-6


def pointing_game(cams: np.ndarray, masks: np.ndarray, tolerance: float = 0) -> np.ndarray:
    """1 if the map's maximum lies within ``tolerance`` pixels (Euclidean) of the lesion, else 0
    (Zhang et al. 2018). When several pixels share the maximum (within :data:`TIE_TOLERANCE` of
    the map's range), the share of them that hit: the expected score of picking one at random
    (a flat map scores the share of pixels within ``tolerance`` of the lesion)."""
    # Why the share of tied maxima. Zhang et al. score "the maximum point", which a map with a
    # flat top does not have; such tops are common, since pytorch-grad-cam resizes a coarse
    # map bilinearly with edge clamping: a 2x2 map at 48 px has a 12x12 plateau of exactly
    # equal pixels in the image corner of its strongest cell. The alternatives fail:
    # * np.argmax takes the plateau's first pixel in row order: the score depends on the
    #   image's orientation (a map and mask flipped together score differently);
    # * a hit if ANY tied pixel hits rewards flat maps (a constant map always scores 1);
    # * the plateau's centroid need not be a maximum (two separate peaks: a point between
    #   them, possibly on the lesion when neither peak is).
    # The expected score of a uniformly random tie-break is deterministic, does not depend on
    # orientation, equals Zhang et al.'s score when the maximum is unique, and gives a map
    # without information exactly the chance level.
    cams, masks = _check(cams, masks)
    out = np.full(len(cams), np.nan)
    for i, (cam, mask) in enumerate(zip(cams, masks, strict=True)):
        if not mask.any():
            continue
        distance = ndimage.distance_transform_edt(~mask)  # 0 inside the lesion
        top, bottom = cam.max(), cam.min()
        peaks = cam >= top - TIE_TOLERANCE * (top - bottom)
        out[i] = np.mean(distance[peaks] <= tolerance)
    return out


def energy_pointing_game(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of the map's mass inside the lesion, sum(cam * mask) / sum(cam) (Wang et al.
    2020); NaN for an all-zero map. Maps must be non-negative."""
    cams, masks = _check(cams, masks)
    if (cams < 0).any():
        raise ValueError("energy pointing game needs non-negative maps")
    total = cams.sum(axis=(1, 2))
    inside = (cams * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, inside / total, np.nan)
    return np.where(masks.any(axis=(1, 2)), out, np.nan)


def top_k_pixels(cam: np.ndarray, top_k: float, seed: int) -> np.ndarray:
    """Flat mask of the map's ``top_k`` % most relevant pixels (rounded up, at least one),
    ties broken as in :func:`pixel_order` with ``seed``."""
    count = max(1, int(np.ceil(cam.size * top_k / 100 - 1e-9)))
    top = np.zeros(cam.size, dtype=bool)
    top[pixel_order(cam, seed)[:count]] = True
    return top


def iou_top_k(
    cams: np.ndarray, masks: np.ndarray, top_k: float = 10, seeds: Sequence[int] | None = None
) -> np.ndarray:
    """IoU of the lesion with the ``top_k`` % most relevant pixels (rounded up, at least one;
    ties broken as in :func:`pixel_order` with ``seeds[i]``, default 0)."""
    cams, masks = _check(cams, masks)
    if not 0 < top_k <= 100:
        raise ValueError(f"top_k is a percentage in (0, 100], got {top_k}")
    seeds = [0] * len(cams) if seeds is None else list(seeds)
    out = np.full(len(cams), np.nan)
    for i, (cam, mask) in enumerate(zip(cams, masks, strict=True)):
        if not mask.any():
            continue
        top = top_k_pixels(cam, top_k, seeds[i])
        lesion = mask.reshape(-1)
        out[i] = (top & lesion).sum() / (top | lesion).sum()
    return out


def localisation_scores(
    cams: np.ndarray,
    masks: np.ndarray,
    *,
    tolerance: float = 0,
    top_k: float = 10,
    seeds: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """The three localisation scores of each map, by column name."""
    return {
        "pointing_game": pointing_game(cams, masks, tolerance),
        "energy_pointing_game": energy_pointing_game(cams, masks),
        "iou_top_k": iou_top_k(cams, masks, top_k, seeds),
    }


def random_map(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Independent uniform [0, 1) noise per pixel."""
    return np.random.default_rng(seed).random(shape)


def smooth_random_map(shape: tuple[int, int], grid: tuple[int, int], seed: int) -> np.ndarray:
    """Uniform noise drawn on ``grid`` (the target layer's map size, a CAM's native resolution)
    and brought to ``shape`` as pytorch-grad-cam brings a CAM there (``scale_cam_image``:
    min-max scaled, then ``cv2.resize``, bilinear): a map as smooth as the CAMs of that layer
    that knows nothing. ROAD and deletion/insertion favour smooth maps (arXiv 2304.13836), so a
    method is read against this map, not only against per-pixel noise. In [0, 1]."""
    import cv2  # pytorch-grad-cam's own resize; imported here: the stats tables need no cv2

    rows, cols = (int(g) for g in grid)
    if rows < 1 or cols < 1:
        raise ValueError(f"the map grid must be at least 1x1, got {grid}")
    # its own stream: the plain random map of the same image seed starts with the same draws
    noise = np.random.default_rng([int(seed), 1]).random((rows, cols))
    noise = noise - noise.min()
    noise = noise / (1e-7 + noise.max())
    height, width = shape
    smooth = cv2.resize(noise.astype(np.float32), (int(width), int(height)))
    return np.clip(smooth.astype(np.float64), 0, 1)


def centre_gaussian(shape: tuple[int, int]) -> np.ndarray:
    """exp(-d^2 / 2 sigma^2) around the image centre, sigma = CENTRE_SIGMA x the side: the
    'lesions sit in the middle' prior a map should beat."""
    height, width = shape
    rows = (np.arange(height) - (height - 1) / 2) / (CENTRE_SIGMA * height)
    cols = (np.arange(width) - (width - 1) / 2) / (CENTRE_SIGMA * width)
    return np.exp(-(rows[:, None] ** 2 + cols[None, :] ** 2) / 2)


def baseline_maps(
    masks: np.ndarray, image_ids: Sequence[str], seed: int = 0, *, grid: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Baseline name -> (N, H, W) maps in [0, 1]: ``random`` and ``smooth_random`` (drawn on
    the CAMs' native ``grid``; both seeded per image id, so the same image gets the same map in
    every job and for every method), ``centre`` and ``mask`` (the lesion itself; all zero where
    there is none)."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or len(masks) != len(image_ids):
        raise ValueError(f"masks {masks.shape} must be (N, H, W) for {len(image_ids)} image ids")
    shape = masks.shape[1:]
    seeds = [image_seed(seed, i) for i in image_ids]
    return {
        "random": np.stack([random_map(shape, s) for s in seeds])
        if seeds
        else np.zeros(masks.shape),
        "smooth_random": np.stack([smooth_random_map(shape, grid, s) for s in seeds])
        if seeds
        else np.zeros(masks.shape),
        "centre": np.broadcast_to(centre_gaussian(shape), masks.shape).copy(),
        "mask": (masks > 0).astype(np.float64),
    }
