"""Brain MRI phantoms: a head, and glioma, meningioma, pituitary lesions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

# --- Difficulty knobs (intensities on a 0-1 scale; sizes are radii as a fraction of width) ---
# Brain MRI: brightening of each tumour over brain tissue (~0.42) and its mean radius.
GLIOMA_CONTRAST = 0.40

GLIOMA_RADIUS = (0.10, 0.17)

MENINGIOMA_CONTRAST = 0.45

MENINGIOMA_RADIUS = (0.12, 0.18)

PITUITARY_CONTRAST = 0.45

PITUITARY_RADIUS = (0.07, 0.10)

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
