"""Domain shift: image corruptions at five severities, and scanner-like acquisition sites.

Corruptions act on a batch of preprocessed images (uint8, N x 3 x S x S, as in `images.npy`)
and return a batch of the same shape and dtype; internally intensities are floats in [0, 1],
clipped and rounded back at the end. Severity 0 is the clean image; 1-5 grow harsher. Sizes
(blur width, bias ramp) are fractions of the image side, so a severity means the same at 48 px
as at 224 px. Random corruptions draw from a generator seeded by (seed, corruption) alone, so
the same seed gives the same corrupted images, and a higher severity scales the same noise
pattern or bias direction rather than drawing a new one.

Sites model acquisition differences between scanners or cameras (intensity curve, gain, noise,
blur, bias field, resolution) with the same building blocks; site 0 is the reference scanner and
leaves images untouched.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

Array = np.ndarray

# Parameters of severities 1..5 (severity 0 is the clean image).
SEVERITIES: dict[str, tuple[float, ...]] = {
    # standard deviation of additive Gaussian noise (intensities in [0, 1])
    "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
    # Gaussian blur sigma as a fraction of the image side (48 px: 0.5 to 2.9 px)
    "blur": (0.01, 0.015, 0.025, 0.04, 0.06),
    # contrast kept around each image's mean intensity
    "contrast": (0.85, 0.7, 0.55, 0.4, 0.25),
    # amplitude a of a multiplicative linear bias field 1 + a * ramp, ramp in [-1, 1]
    "bias_field": (0.15, 0.3, 0.45, 0.6, 0.8),
    # JPEG quality (Pillow, 4:2:0 chroma subsampling)
    "jpeg": (30, 18, 12, 8, 4),
    # downsampling factor (area averaging, then bilinear back to the original size)
    "resolution": (1.5, 2.0, 3.0, 4.0, 6.0),
}
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITIES)
IN_DOMAIN = "none"  # the shift name of the clean held-out images (severity 0)
MAX_SEVERITY = 5


# ----------------------------------------------------------------------------- building blocks


def gaussian_noise(images: Array, sigma: float, rng: np.random.Generator) -> Array:
    """x + sigma * z, z standard normal per pixel and channel (float images in [0, 1])."""
    return images + sigma * rng.standard_normal(images.shape)


def blur(images: Array, sigma_px: float) -> Array:
    """Gaussian blur over the two spatial axes (scipy: kernel radius 3 sigma, reflected edges)."""
    if sigma_px <= 0:
        return images
    sigma = (0.0,) * (images.ndim - 2) + (sigma_px, sigma_px)
    return ndimage.gaussian_filter(images, sigma=sigma, truncate=3.0, mode="reflect")


def contrast(images: Array, factor: float) -> Array:
    """(x - m) * factor + m, m the mean of each image over channels and pixels."""
    mean = images.mean(axis=(-3, -2, -1), keepdims=True)
    return (images - mean) * factor + mean


def ramp(size: int, angle: float) -> Array:
    """Linear ramp cos(angle) * u + sin(angle) * v over pixel centres u, v in (-1, 1),
    scaled to [-1, 1] along its direction (u across, v down)."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    v, u = np.meshgrid(c, c, indexing="ij")
    field = np.cos(angle) * u + np.sin(angle) * v
    peak = np.abs(field).max()
    return field / peak if peak > 0 else field


def bias_field(images: Array, amplitude: float, angles: Array) -> Array:
    """x * (1 + amplitude * ramp(angle)): a smooth multiplicative field, one direction per image
    (a receive-coil or illumination gradient)."""
    size = images.shape[-1]
    fields = np.stack([1.0 + amplitude * ramp(size, a) for a in angles])
    return images * fields[:, None]


def jpeg(images: Array, quality: int) -> Array:
    """Encode and decode each image as JPEG at `quality` (Pillow defaults otherwise)."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        rgb = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255
    return out


def resolution(images: Array, factor: float) -> Array:
    """Average down to round(S / factor) pixels (a coarser detector), then bilinear back to S."""
    size = images.shape[-1]
    low = max(1, round(size / factor))
    if low >= size:
        return images
    # torch only here: the report jobs import this module for its names alone
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float64))
    x = F.interpolate(x, size=(low, low), mode="area")
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.numpy()


def intensity_curve(images: Array, gamma: float, gain: float, offset: float) -> Array:
    """gain * x ** gamma + offset: a scanner's or camera's response curve."""
    return gain * np.clip(images, 0.0, 1.0) ** gamma + offset


def to_float(images: Array) -> Array:
    return np.asarray(images, dtype=np.float64) / 255.0


def to_uint8(images: Array) -> Array:
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- corruptions


def _check(corruption: str, severity: int) -> None:
    if corruption not in SEVERITIES:
        raise ValueError(f"unknown corruption {corruption!r}; known: {', '.join(CORRUPTIONS)}")
    if int(severity) != severity or not 0 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be an integer 0..{MAX_SEVERITY}, got {severity!r}")


def corruption_rng(corruption: str, seed: int = 0) -> np.random.Generator:
    """The generator of one corruption: depends only on the corruption and the seed."""
    return np.random.default_rng([int(seed), CORRUPTIONS.index(corruption)])


def corrupt(images: Array, corruption: str, severity: int, seed: int = 0) -> Array:
    """uint8 images (N, 3, S, S) under `corruption` at `severity` (0: unchanged copy)."""
    _check(corruption, severity)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images (N, C, S, S), got {images.dtype} {images.shape}")
    if severity == 0 or len(images) == 0:
        return images.copy()
    level = SEVERITIES[corruption][severity - 1]
    rng = corruption_rng(corruption, seed)
    x = to_float(images)
    if corruption == "gaussian_noise":
        x = gaussian_noise(x, level, rng)
    elif corruption == "blur":
        x = blur(x, level * images.shape[-1])
    elif corruption == "contrast":
        x = contrast(x, level)
    elif corruption == "bias_field":
        x = bias_field(x, level, rng.uniform(0.0, 2 * np.pi, len(images)))
    elif corruption == "jpeg":
        x = jpeg(x, int(level))
    elif corruption == "resolution":
        x = resolution(x, level)
    return to_uint8(x)


# ----------------------------------------------------------------------------- sites


@dataclass(frozen=True)
class SiteProfile:
    """How one acquisition site renders images; the defaults change nothing."""

    gamma: float = 1.0  # intensity curve x ** gamma
    gain: float = 1.0
    offset: float = 0.0
    noise: float = 0.0  # std of added Gaussian noise
    blur: float = 0.0  # Gaussian blur sigma, fraction of the image side
    bias: float = 0.0  # amplitude of a linear bias field
    resolution: float = 1.0  # downsampling factor of the detector

    @property
    def is_reference(self) -> bool:
        return self == SiteProfile()


def site_profile(site: int) -> SiteProfile:
    """Site 0 is the reference scanner (no change); every other site's profile is drawn from a
    generator seeded by the site number alone, so site k is the same scanner in every dataset.

    The ranges are wide enough that an unseen site costs accuracy: a ResNet50 trained on one
    site of the chest phantom scored 0.57 on the other (0.88 in-site; config/sites.yaml). Half
    these ranges left no effect beyond the run-to-run noise of two folds. Phantoms are
    single-site unless `sites` is set, so the demo never sees these effects.
    """
    if int(site) != site or site < 0:
        raise ValueError(f"site must be a non-negative integer, got {site!r}")
    if site == 0:
        return SiteProfile()
    rng = np.random.default_rng([20_061, int(site)])
    return SiteProfile(
        gamma=float(np.exp(rng.uniform(-0.3, 0.3))),
        gain=float(rng.uniform(0.85, 1.15)),
        offset=float(rng.uniform(-0.04, 0.04)),
        noise=float(rng.uniform(0.0, 0.04)),
        blur=float(rng.uniform(0.0, 0.012)),
        bias=float(rng.uniform(0.0, 0.25)),
        resolution=float(rng.uniform(1.0, 2.0)),
    )


def acquire_at_site(image: Array, profile: SiteProfile, rng: np.random.Generator) -> Array:
    """One uint8 image (H, W) or (H, W, 3) as `profile`'s scanner would record it; the
    reference profile returns the image itself, byte for byte."""
    if profile.is_reference:
        return image
    x = to_float(image)
    x = x[None, None] if x.ndim == 2 else x.transpose(2, 0, 1)[None]
    x = resolution(x, profile.resolution)
    x = blur(x, profile.blur * x.shape[-1])
    x = intensity_curve(x, profile.gamma, profile.gain, profile.offset)
    x = bias_field(x, profile.bias, rng.uniform(0.0, 2 * np.pi, 1))
    x = gaussian_noise(x, profile.noise, rng)
    x = x[0, 0] if image.ndim == 2 else x[0].transpose(1, 2, 0)
    return to_uint8(x)
