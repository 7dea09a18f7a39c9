"""The blur-bias control (baseline ``smooth_random``) on a real torchvision model's CAMs: its
spatial scale is a CAM's of the same layer, far from the per-pixel random map's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaimed.explain.cams import cam_grid, compute_cams
from xaimed.explain.metrics.localisation import baseline_maps
from xaimed.models.build import build_model


def varying(maps: np.ndarray) -> np.ndarray:
    """The maps that are not constant (a randomly initialised model's Grad-CAM can be all
    zero: no scale to measure)."""
    maps = np.asarray(maps, dtype=np.float64)
    return maps[maps.reshape(len(maps), -1).std(axis=1) > 0]


def autocorrelation_length(maps: np.ndarray) -> float:
    """Mean over maps of the first lag (pixels, along rows and columns averaged) at which the
    map's autocorrelation falls below one half: the size of its blobs."""
    lengths = []
    for m in varying(maps):
        m = m - m.mean()
        power = np.abs(np.fft.rfft2(m, s=(2 * m.shape[0], 2 * m.shape[1]))) ** 2
        auto = np.fft.irfft2(power)[: m.shape[0], : m.shape[1]]  # zero-padded: not circular
        profile = (auto[0, :] + auto[:, 0]) / (2 * auto[0, 0])
        below = np.nonzero(profile < 0.5)[0]
        lengths.append(below[0] if len(below) else m.shape[0])
    return float(np.mean(lengths))


def high_frequency_share(maps: np.ndarray, grid: tuple[int, int]) -> float:
    """Mean share of a map's variance at spatial frequencies the layer's grid cannot hold
    (above grid / 2 cycles per image along rows or columns)."""
    shares = []
    for m in varying(maps):
        power = np.abs(np.fft.fft2(m - m.mean())) ** 2
        rows = np.abs(np.fft.fftfreq(m.shape[0])) * m.shape[0]  # cycles per image
        cols = np.abs(np.fft.fftfreq(m.shape[1])) * m.shape[1]
        high = (rows[:, None] > grid[0] / 2) | (cols[None, :] > grid[1] / 2)
        shares.append(power[high].sum() / power.sum())
    return float(np.mean(shares))


@pytest.mark.parametrize(("size", "layer"), [(128, None), (64, "layer3")])
def test_smooth_random_map_has_the_spatial_scale_of_a_cam(size, layer):
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    x = torch.randn(6, 3, size, size)
    grid = cam_grid(model, "resnet18", x, layer)
    assert grid == (4, 4)  # layer4 at 128 px, layer3 at 64 px: stride 32 and 16
    maps = baseline_maps(np.zeros((6, size, size)), list("abcdef"), seed=0, grid=grid)
    smooth, random = maps["smooth_random"], maps["random"]
    assert len(varying(smooth)) == 6 and smooth.min() >= 0 and smooth.max() <= 1
    assert autocorrelation_length(random) == 1  # independent pixels
    assert high_frequency_share(random, grid) > 0.9
    assert high_frequency_share(smooth, grid) < 0.25
    for method in ("gradcam", "eigencam", "layercam"):
        cams = compute_cams(model, "resnet18", method, x, [0, 1, 2, 0, 1, 2], layer_path=layer)
        assert len(varying(cams)) >= 3, method
        assert high_frequency_share(cams, grid) < 0.25, method
        # blobs of the same size within a factor 2 (neighbouring cells of a CAM correlate, the
        # noise's do not, so a CAM's blobs are somewhat wider), over 8 times the random map's
        ratio = autocorrelation_length(cams) / autocorrelation_length(smooth)
        assert 0.5 < ratio < 2, (method, ratio)
        assert autocorrelation_length(smooth) > 8 * autocorrelation_length(random)
