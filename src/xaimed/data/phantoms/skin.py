"""Dermoscopy phantoms: skin, benign and malignant lesions, hair."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from xaimed.data.phantoms.base import (
    Array,
    _acquire,
    _blob_alpha,
    _blob_distance,
    _border,
    _grid,
    _lerp,
    _sigmoid_edge,
    _smooth_noise,
    _streams,
)

# Skin: mean lesion radius; the chance of hair strands (a class-independent nuisance).
SKIN_LESION_RADIUS = (0.17, 0.26)

HAIR_PROBABILITY = 0.35

# ----------------------------------------------------------------------------- skin lesion

_BROWN_LIGHT = np.array([0.62, 0.42, 0.28], dtype=np.float32)

_BROWN_DARK = np.array([0.36, 0.22, 0.13], dtype=np.float32)

_BLACK = np.array([0.12, 0.08, 0.07], dtype=np.float32)

_BLUE_GREY = np.array([0.42, 0.47, 0.56], dtype=np.float32)

_RED = np.array([0.72, 0.30, 0.28], dtype=np.float32)


def _skin_background(rng: np.random.Generator, size: int) -> Array:
    """Skin tone with fine (pores) and coarse (blotchy redness) texture, shape (size, size, 3)."""
    light = np.array([0.93, 0.78, 0.70], dtype=np.float32)
    dark = np.array([0.76, 0.55, 0.43], dtype=np.float32)
    base = _lerp(light, dark, np.float32(rng.uniform()))
    luminance = (
        1.0 + 0.03 * _smooth_noise(rng, size, 0.012) + 0.035 * _smooth_noise(rng, size, 0.12)
    )
    redness = 0.035 * _smooth_noise(rng, size, 0.1)
    img = base * luminance[..., None]
    img += redness[..., None] * np.array([1.0, -0.5, -0.4], dtype=np.float32)
    return img


def _skin_placement(rng: np.random.Generator) -> tuple[tuple[float, float], float]:
    centre = tuple(np.clip(rng.normal(0.0, 0.06, 2), -0.12, 0.12))
    return (float(centre[0]), float(centre[1])), 2.0 * rng.uniform(*SKIN_LESION_RADIUS)


def _benign_lesion(rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    """Round symmetric naevus, even brown, smooth fading border; returns (rgb, alpha, mask)."""
    yy, xx = _grid(size)
    centre, radius = _skin_placement(rng)
    border = _border(rng, 3, rng.uniform(0.02, 0.06), first=2)
    dist = _blob_distance(
        yy, xx, centre, radius, border, rng.uniform(0.85, 1.0), rng.uniform(0, np.pi)
    )
    brown = _lerp(_BROWN_LIGHT, _BROWN_DARK, np.float32(rng.uniform()))
    # Slightly darker centre, symmetric, with faint even texture.
    shade = 1.0 - 0.10 * np.clip(1.0 - dist, 0.0, 1.0) + 0.04 * _smooth_noise(rng, size, 0.03)
    rgb = brown * shade[..., None]
    return rgb, _blob_alpha(dist, radius, edge=0.025), dist <= 1.0


def _colour_patch(
    rng: np.random.Generator, size: int, inside: Array, gradient: Array, coverage: float
) -> Array:
    """Soft weight of a colour patch covering about `coverage` of the lesion, lopsided."""
    field = _smooth_noise(rng, size, 0.05) + 1.2 * gradient
    threshold = np.quantile(field[inside], 1.0 - coverage) if inside.any() else np.inf
    return _sigmoid_edge(field - threshold, 0.25)


def _malignant_lesion(rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    """Asymmetric, notched melanoma-like lesion with black, blue-grey and red areas."""
    yy, xx = _grid(size)
    centre, radius = _skin_placement(rng)
    lopsided = _border(rng, 3, rng.uniform(0.18, 0.30), first=1)
    notches = _border(rng, 6, rng.uniform(0.06, 0.12), first=5)
    dist = _blob_distance(
        yy,
        xx,
        centre,
        radius,
        lambda theta: lopsided(theta) * notches(theta),
        rng.uniform(0.7, 1.0),
        rng.uniform(0, np.pi),
    )
    inside = dist <= 1.0
    brown = _lerp(_BROWN_LIGHT, _BROWN_DARK, np.float32(rng.uniform(0.2, 1.0)))
    rgb = brown * (1.0 + 0.08 * _smooth_noise(rng, size, 0.02))[..., None]

    def gradient() -> Array:
        # A random direction across the lesion: colours pile up on one side (asymmetry).
        psi = rng.uniform(0, 2 * np.pi)
        return ((xx - centre[1]) * np.cos(psi) + (yy - centre[0]) * np.sin(psi)) / radius

    colours = [(_BLACK, 1.0, (0.18, 0.40)), (_BLUE_GREY, 0.85, (0.12, 0.28))]
    colours.append((_RED, 0.6, (0.06, 0.18)))
    for colour, probability, coverage in colours:
        weight = _colour_patch(rng, size, inside, gradient(), rng.uniform(*coverage))
        if rng.uniform() < probability:
            rgb = _lerp(rgb, colour, weight[..., None])
    return rgb, _blob_alpha(dist, radius, edge=0.01), inside


def _hair(rng: np.random.Generator, size: int) -> Array:
    """Opacity of 0-4 thin dark curved hairs (quadratic Bezier curves), class-independent."""
    canvas = np.zeros((size, size), dtype=np.float32)
    if rng.uniform() >= HAIR_PROBABILITY:
        return canvas
    t = np.linspace(0.0, 1.0, 6 * size, dtype=np.float32)[:, None]
    for _ in range(rng.integers(1, 5)):
        angle = rng.uniform(0, 2 * np.pi)
        p0 = 1.3 * np.array([np.sin(angle), np.cos(angle)])
        p2 = 1.3 * np.array([np.sin(angle + np.pi), np.cos(angle + np.pi)]) + rng.normal(0, 0.5, 2)
        p1 = rng.uniform(-0.8, 0.8, 2)
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        idx = np.floor((pts + 1.0) / 2.0 * size).astype(int)
        keep = ((idx >= 0) & (idx < size)).all(axis=1)
        canvas[idx[keep, 0], idx[keep, 1]] = 1.0
    blurred = ndimage.gaussian_filter(canvas, sigma=max(0.004 * size, 0.4))
    return np.clip(blurred * 2.5, 0.0, 0.85)


def _render_skin(class_name: str, rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    anatomy_rng, lesion_rng, hair_rng, acquisition_rng = _streams(rng)
    img = _skin_background(anatomy_rng, size)
    lesion = _benign_lesion if class_name == "benign" else _malignant_lesion
    rgb, alpha, mask = lesion(lesion_rng, size)
    img = _lerp(img, rgb, alpha[..., None])
    hair_colour = np.array([0.20, 0.13, 0.10], dtype=np.float32) * hair_rng.uniform(0.5, 1.2)
    img = _lerp(img, hair_colour, _hair(hair_rng, size)[..., None])
    # Dermatoscope: slightly tinted white balance and a dark circular vignette.
    yy, xx = _grid(size)
    r0 = acquisition_rng.uniform(0.75, 1.0)
    ramp = np.clip((np.hypot(yy, xx) - r0) / (1.45 - r0), 0.0, 1.0)
    img = img * (1.0 - acquisition_rng.uniform(0.2, 0.9) * ramp**1.5)[..., None]
    img = img * acquisition_rng.uniform(0.95, 1.05, 3).astype(np.float32)
    return _acquire(img, acquisition_rng, blur_px=0.4), mask
