"""Corruptions and acquisition sites against hand-computed values."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from xaimed.data.phantoms import generate
from xaimed.shift.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    SiteProfile,
    acquire_at_site,
    bias_field,
    blur,
    contrast,
    corrupt,
    corruption_rng,
    ramp,
    resolution,
    site_profile,
)


def grey(value: int, size: int = 8, n: int = 1) -> np.ndarray:
    return np.full((n, 3, size, size), value, dtype=np.uint8)


def test_severity_zero_is_an_unchanged_copy():
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    for corruption in CORRUPTIONS:
        out = corrupt(images, corruption, 0)
        assert np.array_equal(out, images) and out is not images


def test_gaussian_noise_adds_the_seeded_noise_scaled_by_severity():
    images = grey(128)
    z = corruption_rng("gaussian_noise", seed=3).standard_normal(images.shape)
    for severity in (1, 5):
        sigma = SEVERITIES["gaussian_noise"][severity - 1]
        expected = np.round(np.clip(128 / 255 + sigma * z, 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(corrupt(images, "gaussian_noise", severity, seed=3), expected)
    assert not np.array_equal(
        corrupt(images, "gaussian_noise", 3, seed=3), corrupt(images, "gaussian_noise", 3, seed=4)
    )


def test_blur_of_a_point_is_the_normalised_gaussian_kernel():
    delta = np.zeros((1, 1, 15, 15))
    delta[0, 0, 7, 7] = 1.0
    x = np.arange(-3, 4)
    kernel = np.exp(-(x**2) / 2.0)
    kernel /= kernel.sum()
    expected = np.zeros((15, 15))
    expected[4:11, 4:11] = np.outer(kernel, kernel)
    np.testing.assert_allclose(blur(delta, 1.0)[0, 0], expected, atol=1e-12)
    # A flat image stays flat; at 48 px severity 1 is sigma 0.48 px.
    assert np.array_equal(corrupt(grey(77, 48), "blur", 5), grey(77, 48))
    assert SEVERITIES["blur"][0] * 48 == pytest.approx(0.48)


def test_contrast_shrinks_intensities_towards_the_image_mean():
    images = np.zeros((1, 3, 4, 4), dtype=np.uint8)
    images[..., 2:] = 255  # mean 0.5
    out = corrupt(images, "contrast", 1)  # factor 0.85: 0.5 -+ 0.425
    assert (out[..., :2] == 19).all()  # round(0.075 * 255 = 19.125)
    assert (out[..., 2:] == 236).all()  # round(0.925 * 255 = 235.875)
    np.testing.assert_allclose(contrast(np.array([[[[0.2, 0.6]]]]), 0.5), [[[[0.3, 0.5]]]])


def test_bias_field_is_a_linear_ramp_in_the_drawn_direction():
    np.testing.assert_allclose(ramp(4, 0.0)[0], [-1, -1 / 3, 1 / 3, 1])  # across
    np.testing.assert_allclose(ramp(4, np.pi / 2)[:, 0], [-1, -1 / 3, 1 / 3, 1], atol=1e-12)
    out = bias_field(np.full((1, 3, 4, 4), 0.5), 0.3, np.array([0.0]))
    np.testing.assert_allclose(out[0, 1, 2], 0.5 * (1 + 0.3 * np.array([-1, -1 / 3, 1 / 3, 1])))
    angle = corruption_rng("bias_field", seed=0).uniform(0, 2 * np.pi, 1)
    expected = np.round(128 / 255 * (1 + 0.8 * ramp(8, angle[0])) * 255)
    assert np.array_equal(corrupt(grey(128), "bias_field", 5)[0, 0], expected)


def test_jpeg_is_pillows_encode_and_decode():
    images = np.random.default_rng(1).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    out = corrupt(images, "jpeg", 2)
    for image, got in zip(images, out, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(image.transpose(1, 2, 0)).save(buffer, format="JPEG", quality=18)
        expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        assert np.array_equal(got, expected.transpose(2, 0, 1))


def test_resolution_averages_blocks_then_interpolates_bilinearly():
    images = np.zeros((1, 1, 4, 4))
    images[..., 2:] = 1.0
    images[..., 0, 0] = 0.4  # block (0, 0) averages to 0.1
    out = resolution(images, 2.0)[0, 0]
    # Down: [[0.1, 1], [0, 1]]; up (align_corners=False): weights 1, 3/4-1/4, 1/4-3/4, 1.
    w = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_allclose(out, w @ np.array([[0.1, 1.0], [0.0, 1.0]]) @ w.T, atol=1e-12)
    assert np.array_equal(corrupt(grey(200, 48), "resolution", 5), grey(200, 48))


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_phantom_degrades_monotonically_with_severity(corruption):
    image, _ = generate.render(
        "brain_mri", "glioma", generate.phantom_rng("brain_mri", "glioma", 0), 48
    )
    images = np.repeat(image[None, None], 3, axis=1)
    change = [
        np.abs(corrupt(images, corruption, s).astype(float) - images).mean() for s in range(6)
    ]
    assert change[0] == 0
    assert all(a < b for a, b in zip(change, change[1:], strict=False)), change


def test_unknown_corruption_or_severity_is_refused():
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(grey(0), "fog", 1)
    with pytest.raises(ValueError, match="severity must be an integer 0..5"):
        corrupt(grey(0), "blur", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(grey(0).astype(float), "blur", 1)


def test_site_zero_is_the_reference_scanner_and_other_sites_are_fixed_and_mild():
    assert site_profile(0) == SiteProfile() and site_profile(0).is_reference
    assert site_profile(2) == site_profile(2) and site_profile(1) != site_profile(2)
    rng = generate.phantom_rng("chest_xray", "normal", 0)
    image, _ = generate.render("chest_xray", "normal", rng, 64)
    assert acquire_at_site(image, site_profile(0), np.random.default_rng(0)) is image
    for site in (1, 2, 3):
        shifted = acquire_at_site(image, site_profile(site), np.random.default_rng(0))
        assert shifted.shape == image.shape and shifted.dtype == np.uint8
        assert 0 < np.abs(shifted.astype(float) - image).mean() < 40  # of 255
    rgb = np.stack([image] * 3, axis=-1)
    assert acquire_at_site(rgb, site_profile(1), np.random.default_rng(0)).shape == rgb.shape
