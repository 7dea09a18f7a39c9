"""Synthetic "phantom" datasets that stand in for the study's medical images.

With no real data configured, the workflow trains and explains on three deterministic
synthetic tasks that mimic the study's ones:

* ``brain_mri``   axial MRI-like slices (skull ring, textured brain, ventricles) with a glioma
  (irregular, blurry, heterogeneous, intra-axial), a meningioma (round, bright, sharp, against
  the inner skull), a pituitary mass (small, midline, lower-central) or no tumour;
* ``skin_lesion`` dermoscopy-like RGB images with a benign (round, symmetric, even brown) or a
  malignant (asymmetric, notched, several colours) lesion;
* ``chest_xray``  radiograph-like images (lungs, ribs, heart, spine) that are normal or show a
  patchy pneumonic consolidation in one lung.

Every image comes with a boolean ground-truth mask of the rendered abnormality (all False for
healthy images), so CAMs can be scored against it. The renderers draw anatomy, lesion, hair and
acquisition nuisance from separate random streams: the same generator gives the same patient
with or without the lesion, which the tests use to check that the mask covers what was drawn.

Intensities are built in [0, 1] on a grid of normalised coordinates (x, y in [-1, 1], y pointing
down) so that shapes do not depend on the image size. The module-level constants below are the
difficulty knobs; they are read at render time, so they can be changed before generating.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from xaimed.datasets import METADATA_FILE
from xaimed.shift import acquire_at_site, site_profile

PHANTOM_CLASSES: dict[str, tuple[str, ...]] = {
    "brain_mri": ("glioma", "meningioma", "no_tumor", "pituitary"),
    "skin_lesion": ("benign", "malignant"),
    "chest_xray": ("normal", "pneumonia"),
}
HEALTHY_CLASSES: frozenset[str] = frozenset({"no_tumor", "normal"})
MASK_SUFFIX = "_mask"
MIN_IMAGE_SIZE = 32

# --- Difficulty knobs (intensities on a 0-1 scale; sizes are radii as a fraction of width) ---
# Brain MRI: brightening of each tumour over brain tissue (~0.42) and its mean radius.
GLIOMA_CONTRAST = 0.40
GLIOMA_RADIUS = (0.10, 0.17)
MENINGIOMA_CONTRAST = 0.45
MENINGIOMA_RADIUS = (0.12, 0.18)
PITUITARY_CONTRAST = 0.45
PITUITARY_RADIUS = (0.07, 0.10)
# Skin: mean lesion radius; the chance of hair strands (a class-independent nuisance).
SKIN_LESION_RADIUS = (0.17, 0.26)
HAIR_PROBABILITY = 0.35
# Chest X-ray: brightening of the consolidation over the dark lung and its blob size (sigma).
CONSOLIDATION_CONTRAST = 0.6
CONSOLIDATION_BLOB_SIGMA = (0.09, 0.13)
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


# ----------------------------------------------------------------------------- brain MRI

_BRAIN_LEVEL = 0.42  # mean brain-tissue intensity before acquisition nuisance
_BRAIN_RHO = 0.85  # brain surface, in units of the head's elliptic radius
_SKULL_RHO = 0.88  # inner table of the skull; a thin dark CSF rim lies in between


@dataclass(frozen=True)
class _Head:
    """Elliptic head outline: centre, semi-axes (a across, b down) and in-plane rotation."""

    cy: float
    cx: float
    a: float
    b: float
    angle: float

    def to_local(self, yy: Array, xx: Array) -> tuple[Array, Array]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        dy, dx = yy - self.cy, xx - self.cx
        return dx * c + dy * s, dy * c - dx * s

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return self.cy + u * s + v * c, self.cx + u * c - v * s

    def rho(self, yy: Array, xx: Array) -> Array:
        u, v = self.to_local(yy, xx)
        return np.hypot(u / self.a, v / self.b)


def _random_head(rng: np.random.Generator) -> _Head:
    a = rng.uniform(0.72, 0.80)
    return _Head(
        cy=rng.uniform(-0.04, 0.04),
        cx=rng.uniform(-0.04, 0.04),
        a=a,
        b=a * rng.uniform(1.08, 1.18),
        angle=rng.normal(0.0, 0.06),
    )


def _brain_anatomy(rng: np.random.Generator, head: _Head, size: int) -> tuple[Array, Array]:
    """Skull ring, CSF rim, grey/white matter texture and lateral ventricles; plus brain alpha."""
    yy, xx = _grid(size)
    rho = head.rho(yy, xx)
    edge = 0.012
    skull = 0.80 + 0.04 * _smooth_noise(rng, size, 0.02)
    img = skull * _sigmoid_edge(1.0 - rho, edge)
    img = _lerp(img, 0.10, _sigmoid_edge(_SKULL_RHO - rho, edge))

    # White matter is brighter than cortex on T1; an irregular inner boundary looks gyral.
    wm_edge = 0.58 + 0.06 * _smooth_noise(rng, size, 0.04)
    white = _sigmoid_edge(wm_edge - rho, 0.04)
    tissue = (
        _BRAIN_LEVEL
        - 0.04
        + 0.08 * white
        + 0.035 * _smooth_noise(rng, size, 0.025)
        + 0.02 * _smooth_noise(rng, size, 0.008)
    )
    brain = _sigmoid_edge(_BRAIN_RHO - rho, edge)
    img = _lerp(img, tissue, brain)

    # Two elongated lateral ventricles either side of the midline, converging anteriorly (up).
    scale = rng.uniform(0.8, 1.25)
    spread = rng.uniform(0.14, 0.18)
    for side in (-1.0, 1.0):
        centre = head.to_image(side * spread * head.a, -0.08 * head.b)
        radius = 0.10 * scale
        dist = _blob_distance(
            yy,
            xx,
            centre,
            radius,
            aspect=rng.uniform(0.2, 0.3),
            angle=head.angle + np.pi / 2 - side * rng.uniform(0.2, 0.4),
        )
        img = _lerp(img, 0.12, _blob_alpha(dist, radius, 0.012))
    return img, brain


def _glioma(rng: np.random.Generator, head: _Head, size: int) -> tuple[Array, Array, Array]:
    """Irregular, heterogeneous, blurry intra-axial mass; returns (value, alpha, mask region)."""
    yy, xx = _grid(size)
    radius = 2.0 * rng.uniform(*GLIOMA_RADIUS)
    amplitude = rng.uniform(0.15, 0.28)
    # Keep the whole mass inside the brain: the offset shrinks as the tumour grows.
    room = max(0.0, 0.92 * _BRAIN_RHO * min(head.a, head.b) - radius * (1 + amplitude))
    phi, t = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform()) * room
    centre = head.to_image(t * np.cos(phi), t * np.sin(phi))
    border = _border(rng, 6, amplitude, first=2)
    dist = _blob_distance(
        yy, xx, centre, radius, border, rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
    )
    value = _BRAIN_LEVEL + GLIOMA_CONTRAST * (1.0 + 0.45 * _smooth_noise(rng, size, 0.03))
    if rng.uniform() < 0.5:  # necrotic core, darker than the enhancing rim
        core = _sigmoid_edge(rng.uniform(0.3, 0.5) - dist, 0.08)
        value = _lerp(value, _BRAIN_LEVEL - 0.05, 0.8 * core)
    return value, _blob_alpha(dist, radius, edge=0.05), dist <= 1.0


def _meningioma(rng: np.random.Generator, head: _Head, size: int) -> tuple[Array, Array, Array]:
    """Round, bright, homogeneous, sharply bordered mass based on the inner skull."""
    yy, xx = _grid(size)
    radius = 2.0 * rng.uniform(*MENINGIOMA_RADIUS)
    phi = rng.uniform(0, 2 * np.pi)
    # Point on the inner skull and the inward normal of the head ellipse there.
    bu, bv = _SKULL_RHO * head.a * np.cos(phi), _SKULL_RHO * head.b * np.sin(phi)
    nu, nv = np.cos(phi) / head.a, np.sin(phi) / head.b
    norm = np.hypot(nu, nv)
    depth = radius * rng.uniform(0.25, 0.6)  # the part beyond the skull is cut off: broad base
    centre = head.to_image(bu - depth * nu / norm, bv - depth * nv / norm)
    border = _border(rng, 3, rng.uniform(0.03, 0.08), first=2)
    dist = _blob_distance(yy, xx, centre, radius, border)
    value = _BRAIN_LEVEL + MENINGIOMA_CONTRAST + 0.03 * _smooth_noise(rng, size, 0.02)
    return value, _blob_alpha(dist, radius, edge=0.006), dist <= 1.0


def _pituitary(rng: np.random.Generator, head: _Head, size: int) -> tuple[Array, Array, Array]:
    """Small, fairly round mass on the midline in the lower-central (sellar) region."""
    yy, xx = _grid(size)
    radius = 2.0 * rng.uniform(*PITUITARY_RADIUS)
    v = rng.uniform(0.30, 0.45) * _BRAIN_RHO * head.b
    centre = head.to_image(rng.normal(0.0, 0.015), v)
    border = _border(rng, 3, rng.uniform(0.04, 0.10), first=2)
    dist = _blob_distance(yy, xx, centre, radius, border, rng.uniform(0.75, 1.0), head.angle)
    value = _BRAIN_LEVEL + PITUITARY_CONTRAST + 0.04 * _smooth_noise(rng, size, 0.02)
    return value, _blob_alpha(dist, radius, edge=0.012), dist <= 1.0


_BRAIN_LESIONS = {"glioma": _glioma, "meningioma": _meningioma, "pituitary": _pituitary}


def _render_brain(class_name: str, rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    anatomy_rng, lesion_rng, _, acquisition_rng = _streams(rng)
    head = _random_head(anatomy_rng)
    img, brain = _brain_anatomy(anatomy_rng, head, size)
    mask = np.zeros((size, size), dtype=bool)
    if class_name in _BRAIN_LESIONS:
        value, alpha, region = _BRAIN_LESIONS[class_name](lesion_rng, head, size)
        yy, xx = _grid(size)
        # Intra-axial tumours stay in the brain; a meningioma also fills the CSF rim up to bone.
        limit = head.rho(yy, xx) <= (_SKULL_RHO if class_name == "meningioma" else _BRAIN_RHO)
        img = _lerp(img, value, alpha * limit)
        mask = region & limit
    # Smooth coil bias field, then the usual acquisition nuisance with Rician noise.
    img = img * (1.0 + 0.08 * _smooth_noise(acquisition_rng, size, 0.25))
    return _acquire(img, acquisition_rng, rician=True), mask


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


# ----------------------------------------------------------------------------- public API

_RENDERERS: dict[str, Renderer] = {
    "brain_mri": _render_brain,
    "skin_lesion": _render_skin,
    "chest_xray": _render_chest,
}


def _check_kind(kind: str) -> tuple[str, ...]:
    if kind not in PHANTOM_CLASSES:
        known = ", ".join(PHANTOM_CLASSES)
        raise ValueError(f"unknown phantom kind {kind!r}; known kinds: {known}")
    return PHANTOM_CLASSES[kind]


def _check_size(value: int, name: str) -> int:
    if int(value) != value or value < MIN_IMAGE_SIZE:
        raise ValueError(f"{name} must be an integer >= {MIN_IMAGE_SIZE}, got {value!r}")
    return int(value)


def render(
    kind: str, class_name: str, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom: image uint8 (size,size) for grayscale kinds or (size,size,3) for
    skin_lesion, and mask bool (size,size) of the rendered abnormality (empty if healthy).

    The generator is split into anatomy, lesion, hair and acquisition streams, so the same
    generator state gives the same patient whatever the class.
    """
    classes = _check_kind(kind)
    if class_name not in classes:
        raise ValueError(f"unknown class {class_name!r} for {kind!r}; known: {', '.join(classes)}")
    size = _check_size(size, "size")
    image, mask = _RENDERERS[kind](class_name, rng, size)
    return _to_uint8(image), np.asarray(mask, dtype=bool)


def phantom_rng(kind: str, class_name: str, index: int, seed: int = 0) -> np.random.Generator:
    """The generator of image `index` of a class: depends only on (seed, kind, class, index)."""
    classes = _check_kind(kind)
    kind_index = list(PHANTOM_CLASSES).index(kind)
    return np.random.default_rng([seed, kind_index, classes.index(class_name), index])


def write_phantom_dataset(
    kind: str,
    out_dir: str | Path,
    n_per_class: int,
    image_size: int = 128,
    seed: int = 0,
    sites: int = 1,
    copies: bool = False,
) -> pd.DataFrame:
    """Write out_dir/<class>/<kind>_<class>_<i:04d>.png and ..._mask.png (mask as 0/255
    grayscale PNG) for every class; returns a table with columns path, mask_path, class_name
    (and copy_of with ``copies``).

    Deterministic: same arguments -> byte-identical files, and image i of a class does not
    depend on n_per_class. Creates out_dir. Unknown kind -> ValueError naming the kind and the
    known ones; n_per_class < 1, image_size < 32 or seed < 0 -> ValueError naming the argument.
    Image i of a class is rendered from phantom_rng(kind, class_name, i, seed).

    Image i of every class is acquired at site i % `sites` (:func:`xaimed.shift.site_profile`:
    intensity curve, noise, blur, bias field, resolution); site 0 changes nothing, so
    `sites=1` writes the same bytes as before sites existed. With several sites,
    `metadata.csv` in out_dir lists each image_id with its site, for the manifest.

    ``copies`` plants the kinds of copies public sets carry (:func:`_plant_copies`), so the
    leakage guard (duplicates.parquet, grouped folds) has something to find.
    """
    classes = _check_kind(kind)
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    image_size = _check_size(image_size, "image_size")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(sites) != sites or sites < 1:
        raise ValueError(f"sites must be an integer >= 1, got {sites!r}")
    profiles = [site_profile(k) for k in range(int(sites))]
    out_dir = Path(out_dir)
    rows, metadata = [], []
    for class_name in classes:
        class_dir = out_dir / class_name
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(int(n_per_class)):
            rng = phantom_rng(kind, class_name, i, int(seed))
            image, mask = render(kind, class_name, rng, image_size)
            site = i % int(sites)
            # A stream of its own, so the site never changes what the renderer draws.
            site_rng = np.random.default_rng([int(seed), *rng.integers(0, 2**62, size=2)])
            image = acquire_at_site(image, profiles[site], site_rng)
            stem = f"{kind}_{class_name}_{i:04d}"
            metadata.append({"image_id": f"{class_name}/{stem}", "site": f"site{site}"})
            path = class_dir / f"{stem}.png"
            mask_path = class_dir / f"{stem}{MASK_SUFFIX}.png"
            # Fast zlib level: generation time matters more than a few kB per file.
            Image.fromarray(image).save(path, compress_level=1)
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, compress_level=1)
            rows.append({"path": str(path), "mask_path": str(mask_path), "class_name": class_name})
    columns = ["path", "mask_path", "class_name"]
    if copies:
        planted = _plant_copies(kind, out_dir, int(n_per_class))
        for copy in planted:
            site = {m["image_id"]: m["site"] for m in metadata}[copy.pop("source_id")]
            metadata.append({"image_id": copy.pop("image_id"), "site": site})
        rows += planted
        columns.append("copy_of")
    if sites > 1:  # a single-site dataset stays exactly as it was, folder and manifest
        pd.DataFrame(metadata).to_csv(out_dir / METADATA_FILE, index=False)
    return pd.DataFrame(rows, columns=columns)


def _plant_copies(kind: str, out_dir: Path, n_per_class: int) -> list[dict]:
    """Three copies of written phantoms, as public sets carry them: one resized to 3/4 and one
    JPEG-recompressed in their own class, and one exact copy of a lesion image filed under
    another class (a label error: duplicates.parquet shows label_a != label_b). Each keeps
    its source's mask, resized with it."""
    classes = PHANTOM_CLASSES[kind]
    lesion = next(c for c in classes if c not in HEALTHY_CLASSES)
    relabel_to = next((c for c in classes if c in HEALTHY_CLASSES), classes[-1])
    if relabel_to == lesion:
        relabel_to = next(c for c in classes if c != lesion)
    plan = [  # (source class, index, target class, how)
        (classes[0], 0, classes[0], "resized"),
        (classes[-1], 1, classes[-1], "recompressed"),
        (lesion, 2, relabel_to, "relabelled"),
    ]
    rows = []
    for k, (source_class, index, target_class, how) in enumerate(plan):
        stem = f"{kind}_{source_class}_{min(index, n_per_class - 1):04d}"
        source = out_dir / source_class / f"{stem}.png"
        with Image.open(source) as opened:
            image = opened.copy()
        with Image.open(out_dir / source_class / f"{stem}{MASK_SUFFIX}.png") as opened:
            mask = opened.copy()
        name = f"{kind}_{target_class}_copy{k}_{how}"
        path = out_dir / target_class / f"{name}{'.jpg' if how == 'recompressed' else '.png'}"
        if how == "resized":
            side = image.width * 3 // 4
            image = image.resize((side, side), Image.Resampling.LANCZOS)
            mask = mask.resize((side, side), Image.Resampling.NEAREST)
        if how == "relabelled":
            shutil.copyfile(source, path)  # byte for byte: an exact duplicate
        elif how == "recompressed":
            image.save(path, quality=90)
        else:
            image.save(path, compress_level=1)
        mask_path = out_dir / target_class / f"{name}{MASK_SUFFIX}.png"
        mask.save(mask_path, compress_level=1)
        rows.append(
            {
                "path": str(path),
                "mask_path": str(mask_path),
                "class_name": target_class,
                "copy_of": str(source),
                "image_id": f"{target_class}/{name}",
                "source_id": f"{source_class}/{stem}",
            }
        )
    return rows
