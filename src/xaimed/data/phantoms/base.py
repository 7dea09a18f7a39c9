"""Shared drawing helpers of the phantoms: grids, noise, edges, blobs, acquisition."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage

# Nuisance shared by all kinds: +- relative gain jitter and the range of the noise std.
GAIN_JITTER = 0.12

NOISE_STD = (0.012, 0.035)

Array = np.ndarray

Renderer = Callable[[str, np.random.Generator, int], tuple[Array, Array]]

# ----------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[Array, Array]:
    """Normalised pixel-centre coordinates (y, x) in [-1, 1]; cached, read-only."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    yy, xx = np.meshgrid(c, c, indexing="ij")
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _streams(rng: np.random.Generator, n: int = 4) -> list[np.random.Generator]:
    """Independent child generators, so anatomy does not depend on the lesion drawn."""
    return [np.random.default_rng(int(s)) for s in rng.integers(0, 2**62, size=n)]


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> Array:
    """Zero-mean unit-std Gaussian-filtered noise; `scale` is the blur sigma / image width."""
    sigma = max(scale * size, 0.3)
    # Wide blurs are cheap on a coarse grid and look the same after bilinear upsampling.
    step = max(1, int(sigma // 3))
    field = rng.standard_normal((-(-size // step),) * 2, dtype=np.float32)
    field = ndimage.gaussian_filter(field, sigma=sigma / step, mode="wrap")
    if step > 1:
        field = ndimage.zoom(field, step, order=1, mode="grid-wrap", grid_mode=True)
        field = field[:size, :size]
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def _sigmoid_edge(signed: Array, width: float) -> Array:
    """0.5 * (1 + tanh(signed / width)): 1 inside (signed > 0), exactly 0.5 on the border."""
    return 0.5 * (1.0 + np.tanh(signed / max(width, 1e-6)))


def _smoothstep(x: Array, lo: float, hi: float) -> Array:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _lerp(a: Array, b: Array | float, t: Array) -> Array:
    return a + (b - a) * t


def _border(
    rng: np.random.Generator, n_harmonics: int, amplitude: float, first: int = 2
) -> Callable[[Array], Array]:
    """Random smooth star-shaped border r(theta) = 1 + sum_k a_k cos(k theta + phi_k).

    The coefficients sum to `amplitude`, so r stays within 1 +- amplitude. `first=1` adds an
    off-centre (asymmetric) term; higher harmonics make notches.
    """
    ks = np.arange(first, first + n_harmonics, dtype=np.float32)
    weights = rng.uniform(0.3, 1.0, n_harmonics) / np.sqrt(ks - first + 1)
    amps = (amplitude * weights / weights.sum()).astype(np.float32)
    phases = rng.uniform(0.0, 2 * np.pi, n_harmonics).astype(np.float32)
    # Tabulate once and interpolate: far cheaper than cosines per pixel and harmonic.
    table_theta = np.linspace(-np.pi, np.pi, 1025, dtype=np.float32)
    table = 1.0 + np.cos(table_theta[:, None] * ks + phases) @ amps

    def radius(theta: Array) -> Array:
        return np.interp(theta, table_theta, table).astype(np.float32)

    return radius


def _blob_distance(
    yy: Array,
    xx: Array,
    centre: tuple[float, float],
    radius: float,
    border: Callable[[Array], Array] | None = None,
    aspect: float = 1.0,
    angle: float = 0.0,
) -> Array:
    """Distance from `centre` normalised by the (irregular) border: < 1 inside, 1 on it.

    `aspect` < 1 squeezes the blob across `angle` and stretches it along, keeping its area.
    """
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u = (dx * c + dy * s) * np.sqrt(aspect)
    v = (dy * c - dx * s) / np.sqrt(aspect)
    r = np.hypot(u, v)
    scale = radius if border is None else radius * border(np.arctan2(v, u))
    return r / scale


def _blob_alpha(dist: Array, radius: float, edge: float) -> Array:
    """Opacity of a blob whose border is blurred over +-`edge`; >= 0.5 exactly where dist <= 1.

    The ramp has compact support, so nothing is drawn further than `edge` outside the mask.
    """
    return _smoothstep((1.0 - dist) * radius, -edge, edge)


def _acquire(
    img: Array, rng: np.random.Generator, blur_px: float = 0.0, rician: bool = False
) -> Array:
    """Scanner/camera nuisance: gain, offset, gamma, optional blur and noise, clipped to [0, 1]."""
    gain = rng.uniform(1.0 - GAIN_JITTER, 1.0 + GAIN_JITTER)
    offset = rng.uniform(-0.04, 0.04)
    gamma = rng.uniform(0.85, 1.15)
    noise_std = rng.uniform(*NOISE_STD)
    img = np.clip(img, 0.0, 1.0) ** gamma * gain + offset
    if blur_px > 0:  # optics / detector blur, spatial axes only
        img = ndimage.gaussian_filter(img, sigma=(blur_px, blur_px, 0.0)[: img.ndim])
    noise = rng.standard_normal(img.shape, dtype=np.float32) * noise_std
    if rician:
        # Magnitude MR images: noise in two quadrature channels keeps the background above 0.
        quad = rng.standard_normal(img.shape, dtype=np.float32) * noise_std
        img = np.sqrt((img + noise) ** 2 + quad**2)
    else:
        img = img + noise
    return np.clip(img, 0.0, 1.0)


def _to_uint8(img: Array) -> Array:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
