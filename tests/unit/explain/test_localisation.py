"""xaimed.explain.metrics.localisation: each score on hand-made maps and masks with known
answers."""

from __future__ import annotations

import numpy as np
import pytest

from xaimed.explain.metrics.localisation import (
    CENTRE_SIGMA,
    baseline_maps,
    centre_gaussian,
    energy_pointing_game,
    image_seed,
    iou_top_k,
    localisation_scores,
    pixel_order,
    pointing_game,
    smooth_random_map,
)


def lesion(size: int = 10) -> np.ndarray:
    """A 2x2 lesion at rows 2-3, columns 2-3 (4 of the image's pixels)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[2:4, 2:4] = 1
    return mask


def peak_at(row: int, col: int, size: int = 10) -> np.ndarray:
    cam = np.zeros((size, size))
    cam[row, col] = 1
    return cam


def test_pointing_game_hits_misses_and_tolerance():
    masks = np.stack([lesion()] * 3)
    cams = np.stack([peak_at(3, 3), peak_at(3, 6), peak_at(6, 6)])
    # (3, 6) is 3 pixels from the lesion's pixel (3, 3); (6, 6) is sqrt(3^2 + 3^2) = 4.24 away
    np.testing.assert_array_equal(pointing_game(cams, masks, tolerance=0), [1, 0, 0])
    np.testing.assert_array_equal(pointing_game(cams, masks, tolerance=2.9), [1, 0, 0])
    np.testing.assert_array_equal(pointing_game(cams, masks, tolerance=3), [1, 1, 0])
    np.testing.assert_array_equal(pointing_game(cams, masks, tolerance=4.3), [1, 1, 1])


def test_pointing_game_ties_empty_masks_and_flat_maps():
    two_peaks = peak_at(2, 2) + peak_at(8, 8)  # one maximum inside, one outside
    flat = np.full((10, 10), 0.3)  # every pixel is a maximum: the lesion's area share
    cams = np.stack([two_peaks, flat, peak_at(2, 2)])
    masks = np.stack([lesion(), lesion(), np.zeros((10, 10))])
    got = pointing_game(cams, masks)
    assert got[0] == 0.5 and got[1] == pytest.approx(4 / 100)
    assert np.isnan(got[2])  # no lesion, nothing to point at


def test_pointing_game_plateau_scores_its_share_of_hits():
    plateau = np.zeros((10, 10))
    plateau[0:4, 0:5] = 1  # 20 tied maxima; the lesion (rows 2-3, columns 2-3) is 4 of them
    masks = lesion()[None]
    assert pointing_game(plateau[None], masks)[0] == pytest.approx(4 / 20)
    # within 1 px: the lesion, row 1 above it, columns 1 and 4 beside it (row 4 is off the
    # plateau; diagonal neighbours are sqrt(2) away)
    assert pointing_game(plateau[None], masks, tolerance=1)[0] == pytest.approx(10 / 20)


def test_pointing_game_does_not_depend_on_orientation():
    # The plateau's first pixel in row order, (2, 2), is on the lesion; turned upside down and
    # left to right it is (4, 4), off the lesion: np.argmax would score 1 here and 0 there.
    cam = np.zeros((10, 10))
    cam[2:6, 2:6] = 1
    mask = lesion()
    turns = [lambda a: a, np.flipud, np.fliplr, lambda a: np.flipud(np.fliplr(a)), np.transpose]
    got = [pointing_game(t(cam)[None], t(mask)[None])[0] for t in turns]
    assert got == pytest.approx([4 / 16] * len(turns))


def test_pointing_game_ties_within_float_rounding():
    # one peak on the lesion, one off it, equal but for rounding: a tie, whatever the device
    rounded = peak_at(2, 2) + peak_at(8, 8) * (1 - 1e-9)
    clearly_lower = peak_at(2, 2) + peak_at(8, 8) * (1 - 1e-3)
    got = pointing_game(np.stack([rounded, clearly_lower]), np.stack([lesion()] * 2))
    np.testing.assert_allclose(got, [0.5, 1])


def test_pointing_game_of_an_upsampled_coarse_map():
    # pytorch-grad-cam resizes a 2x2 map (ResNet50's layer4 at 48 px) bilinearly with edge
    # clamping: the strongest cell's value fills a 12x12 plateau in the image CORNER, although
    # the cell's centre is at pixel (11.5, 11.5).
    from pytorch_grad_cam.utils.image import scale_cam_image

    cam = scale_cam_image(np.float32([[[1.0, 0.5], [0.2, 0.0]]]), (48, 48))
    peaks = np.argwhere(cam[0] == cam[0].max())
    assert len(peaks) == 144 and peaks.min() == 0 and peaks.max() == 11
    centre = np.zeros((1, 48, 48), dtype=np.uint8)
    centre[0, 11:13, 11:13] = 1  # a lesion on the cell's centre: only (11, 11) of 144 hits
    corner = np.zeros((1, 48, 48), dtype=np.uint8)
    corner[0, 0:4, 0:4] = 1  # a lesion in the corner: 16 of 144
    assert pointing_game(cam, centre)[0] == pytest.approx(1 / 144)
    assert pointing_game(cam, corner)[0] == pytest.approx(16 / 144)
    # within 2 px of the centre lesion: (11, 11), (11, 10), (10, 11), (10, 10), (11, 9), (9, 11)
    assert pointing_game(cam, centre, tolerance=2)[0] == pytest.approx(6 / 144)


def test_energy_pointing_game():
    cam = lesion().astype(float)  # 1 on the 4 lesion pixels
    cam[7, 0:4] = 0.5  # mass 2 outside
    cams = np.stack([cam, np.zeros((10, 10)), cam])
    masks = np.stack([lesion(), lesion(), np.zeros((10, 10))])
    got = energy_pointing_game(cams, masks)
    assert got[0] == pytest.approx(4 / 6)
    assert np.isnan(got[1]) and np.isnan(got[2])  # all-zero map; no lesion
    with pytest.raises(ValueError, match="non-negative"):
        energy_pointing_game(-cams, masks)


def test_iou_of_the_top_k_percent():
    perfect = lesion() * 1.0 + np.linspace(0, 0.1, 100).reshape(10, 10)  # no ties
    half = perfect.copy()
    half[3, 2:4] = -1  # two lesion pixels now the least relevant
    masks = np.stack([lesion()] * 2)
    cams = np.stack([perfect, half])
    # 4 % of 100 pixels = the 4 most relevant: all of the lesion, or 2 of it + 2 outside
    np.testing.assert_allclose(iou_top_k(cams, masks, top_k=4), [1, 2 / 6])
    # 8 %: the lesion and 4 more pixels; 3.5 % rounds up to 4 pixels
    np.testing.assert_allclose(iou_top_k(cams, masks, top_k=8)[0], 4 / 8)
    np.testing.assert_allclose(iou_top_k(cams, masks, top_k=3.5), [1, 2 / 6])
    assert np.isnan(iou_top_k(cams[:1], np.zeros((1, 10, 10)), top_k=4)[0])
    with pytest.raises(ValueError, match="top_k"):
        iou_top_k(cams, masks, top_k=0)


def test_localisation_scores_and_shape_errors():
    cams, masks = np.stack([peak_at(3, 3)]), np.stack([lesion()])
    scores = localisation_scores(cams, masks, tolerance=0, top_k=1)
    assert set(scores) == {"pointing_game", "energy_pointing_game", "iou_top_k"}
    assert scores["pointing_game"][0] == 1 and scores["energy_pointing_game"][0] == 1
    assert scores["iou_top_k"][0] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="cams"):
        pointing_game(cams, masks[:, :5])


def test_pixel_order_sorts_and_breaks_ties_by_seed():
    cam = np.array([[0.1, 0.9], [0.5, 0.3]])
    assert list(pixel_order(cam)) == [1, 2, 3, 0]
    flat = np.zeros((8, 8))
    assert list(pixel_order(flat, 1)) == list(pixel_order(flat, 1))
    assert list(pixel_order(flat, 1)) != list(pixel_order(flat, 2))
    assert list(pixel_order(flat, 1)) != list(range(64))  # not row by row


def test_baseline_maps():
    masks = np.stack([lesion(), np.zeros((10, 10), dtype=np.uint8)])
    maps = baseline_maps(masks, ["a", "b"], seed=3, grid=(2, 3))
    assert set(maps) == {"random", "smooth_random", "centre", "mask"}
    np.testing.assert_array_equal(maps["mask"], masks)
    # the random maps of an image do not depend on the other images of the job
    alone = baseline_maps(masks[1:], ["b"], seed=3, grid=(2, 3))
    for name in ("random", "smooth_random"):
        np.testing.assert_array_equal(alone[name][0], maps[name][1])
        assert not np.array_equal(maps[name][0], maps[name][1])
    assert image_seed(3, "a") != image_seed(4, "a")
    assert (maps["random"] >= 0).all() and (maps["random"] < 1).all()
    np.testing.assert_array_equal(
        maps["smooth_random"][0], smooth_random_map((10, 10), (2, 3), image_seed(3, "a"))
    )


def test_smooth_random_map_is_grid_noise_resized_as_a_cam():
    """Noise on the layer's grid, then exactly what pytorch-grad-cam does to a CAM of that
    grid (scale_cam_image: min-max, cv2.resize to (width, height))."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    smooth = smooth_random_map((48, 40), (3, 5), seed=7)
    noise = np.random.default_rng([7, 1]).random((3, 5))
    expected = scale_cam_image(noise[None].astype(np.float32), (40, 48))[0]
    assert smooth.shape == (48, 40)
    np.testing.assert_allclose(smooth, expected, atol=1e-6)
    assert smooth.min() >= 0 and smooth.max() <= 1 and smooth.std() > 0.1  # not constant
    # another seed, another map
    assert not np.allclose(smooth, smooth_random_map((48, 40), (3, 5), seed=8))
    with pytest.raises(ValueError, match="at least 1x1"):
        smooth_random_map((8, 8), (0, 2), seed=0)


def test_centre_gaussian_values():
    gauss = centre_gaussian((9, 9))
    assert gauss[4, 4] == 1 and gauss.argmax() == 40
    sigma = CENTRE_SIGMA * 9
    assert gauss[4, 6] == pytest.approx(np.exp(-((2 / sigma) ** 2) / 2))
    np.testing.assert_allclose(gauss, gauss.T)
    even = centre_gaussian((4, 4))  # centre between pixels: four equal maxima
    assert even[1, 1] == even[2, 2] == even[1, 2] == even.max()
