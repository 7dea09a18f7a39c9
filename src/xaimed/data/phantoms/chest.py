"""Chest X-ray phantoms: a thorax and consolidations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xaimed.data.phantoms.base import (
    Array,
    _acquire,
    _blob_alpha,
    _blob_distance,
    _grid,
    _lerp,
    _sigmoid_edge,
    _smooth_noise,
    _smoothstep,
    _streams,
)

# Chest X-ray: brightening of the consolidation over the dark lung and its blob size (sigma).
CONSOLIDATION_CONTRAST = 0.6

CONSOLIDATION_BLOB_SIGMA = (0.09, 0.13)

# ----------------------------------------------------------------------------- chest X-ray


@dataclass(frozen=True)
class _Thorax:
    """Patient geometry: spine position, body scale, lung apex and diaphragm heights."""

    spine_x: float
    scale: float
    top: float
    bottom: float


def _lung_alpha(yy: Array, xx: Array, thorax: _Thorax, side: float, width: float) -> Array:
    """One lung field (side -1: image left): a boxy egg, narrow at the apex, wide at the base."""
    s = thorax.scale
    bottom = thorax.bottom - (0.04 if side < 0 else 0.0)  # right hemidiaphragm sits higher
    cy, half_h = (thorax.top + bottom) / 2, (bottom - thorax.top) / 2
    cx = thorax.spine_x + side * 0.44 * s
    v = (yy - cy) / half_h
    half_w = width * s * (0.62 + 0.38 * np.clip((v + 1) / 2, 0, 1) ** 0.5)
    u = (xx - cx) / half_w
    level = np.abs(u) ** 2.4 + np.abs(v) ** 2.4
    return _sigmoid_edge(1.0 - level, 0.08)


def _chest_anatomy(rng: np.random.Generator, size: int) -> tuple[Array, _Thorax, list[Array]]:
    """Body, lungs with vascular markings, ribs, clavicles, spine and heart.

    Returns the image, the geometry and the visible (not behind the heart) lung alphas.
    """
    yy, xx = _grid(size)
    s = rng.uniform(0.9, 1.06)
    thorax = _Thorax(
        spine_x=float(np.clip(rng.normal(0.0, 0.02), -0.05, 0.05)),
        scale=s,
        top=-0.72 * s + rng.uniform(-0.04, 0.04),
        bottom=0.50 * s + rng.uniform(-0.05, 0.05),
    )
    x_rel = np.abs(xx - thorax.spine_x)
    # Soft tissue, brighter below the diaphragm (liver, bowel); air outside the body.
    body = _sigmoid_edge(1.0 - (xx / (0.95 * s)) ** 4 - ((yy - 0.2) / 1.3) ** 4, 0.1)
    tissue = 0.46 + 0.12 * _sigmoid_edge(yy - thorax.bottom, 0.06)
    img = 0.06 + (tissue - 0.06) * body + 0.02 * _smooth_noise(rng, size, 0.08)

    markings = 0.04 * _smooth_noise(rng, size, 0.012) + 0.025 * _smooth_noise(rng, size, 0.05)
    lungs = [_lung_alpha(yy, xx, thorax, side, rng.uniform(0.28, 0.33)) for side in (-1.0, 1.0)]
    lung_value = 0.17 + markings + 0.08 * _sigmoid_edge(0.25 - x_rel, 0.08)  # hila are denser
    img = _lerp(img, lung_value, np.maximum(*lungs))

    # Posterior ribs: periodic bright bands sloping down laterally, within the rib cage.
    spacing = (thorax.bottom - thorax.top) / rng.uniform(8.0, 9.5)
    phase = (yy - thorax.top - 0.25 * x_rel - 0.3 * x_rel**2) / spacing + rng.uniform(0, 1)
    ribs = np.maximum(np.cos(2 * np.pi * phase), 0.0) ** 3
    cage = _sigmoid_edge(x_rel - 0.08, 0.02) * _sigmoid_edge(0.88 * s - x_rel, 0.04)
    cage = (
        cage * _sigmoid_edge(yy - thorax.top + 0.1, 0.03) * _sigmoid_edge(thorax.bottom - yy, 0.05)
    )
    img = img + rng.uniform(0.08, 0.13) * ribs * cage
    clavicle = np.abs(yy - (thorax.top + 0.1 - 0.2 * x_rel)) < 0.03
    img = img + 0.12 * (clavicle & (x_rel > 0.06) & (x_rel < 0.62 * s))

    # Mediastinum and spine (vertebrae as a faint periodic pattern), then the heart shadow.
    mediastinum = _sigmoid_edge(0.11 * s - x_rel, 0.03)
    img = _lerp(img, 0.68, mediastinum)
    img = img + 0.04 * np.cos(2 * np.pi * yy / 0.11) * _sigmoid_edge(0.05 - x_rel, 0.01)
    # The heart bulges mostly into the left hemithorax (image right).
    heart_centre = (thorax.bottom - 0.2 * s, thorax.spine_x + 0.14 * s)
    heart_radius = 0.26 * s * rng.uniform(0.9, 1.12)
    heart_dist = _blob_distance(yy, xx, heart_centre, heart_radius, aspect=0.6, angle=-0.45)
    heart = _blob_alpha(heart_dist, heart_radius, edge=0.02)
    img = _lerp(img, 0.66, heart)
    visible = [lung * (1.0 - heart) * (1.0 - mediastinum) for lung in lungs]
    return img, thorax, visible


def _consolidation(
    rng: np.random.Generator, size: int, thorax: _Thorax, visible: list[Array]
) -> tuple[Array, Array]:
    """Patchy opacity of a few merged blobs in one lung, mostly in the lower zone.

    Returns the added brightness and the mask (the half-maximum region of the opacity).
    """
    yy, xx = _grid(size)
    lung = visible[int(rng.integers(2))]
    zone = rng.choice(3, p=[0.15, 0.3, 0.55])  # upper, middle, lower third of the lung
    height = thorax.bottom - thorax.top
    lo, hi = thorax.top + zone * height / 3, thorax.top + (zone + 1) * height / 3
    candidates = np.flatnonzero((lung > 0.8) & (yy >= lo) & (yy < hi))
    if candidates.size == 0:
        candidates = np.flatnonzero(lung >= lung.max() * 0.9)
    seed_pixel = rng.choice(candidates)
    centre = np.array([yy.flat[seed_pixel], xx.flat[seed_pixel]])

    density = np.zeros_like(yy)
    for k in range(rng.integers(3, 7)):
        c = centre if k == 0 else centre + rng.normal(0.0, 0.14 * thorax.scale, 2)
        sigma = 2.0 * rng.uniform(*CONSOLIDATION_BLOB_SIGMA)
        density = density + np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * sigma**2))
    # Patchy, and confined to the visible lung; the first blob's peak always reaches >= 0.5.
    density = density * (1.0 + 0.25 * np.clip(_smooth_noise(rng, size, 0.03), -1.5, 1.5)) * lung
    mottling = 0.8 + 0.2 * np.clip(_smooth_noise(rng, size, 0.015), -1.0, 1.0)
    opacity = CONSOLIDATION_CONTRAST * _smoothstep(density, 0.4, 0.6) * mottling
    return opacity, density >= 0.5


def _render_chest(class_name: str, rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    anatomy_rng, lesion_rng, _, acquisition_rng = _streams(rng)
    img, thorax, visible = _chest_anatomy(anatomy_rng, size)
    mask = np.zeros((size, size), dtype=bool)
    if class_name == "pneumonia":
        opacity, mask = _consolidation(lesion_rng, size, thorax, visible)
        img = img + opacity
    return _acquire(img, acquisition_rng, blur_px=0.5), mask
