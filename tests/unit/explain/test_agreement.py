"""xaimed.explain.metrics.agreement on hand-made maps: identical maps agree, a map and its
inverse disagree, top-k IoU by hand, shared plateaus and constant maps are no agreement."""

from __future__ import annotations

import numpy as np
import pytest

from xaimed.explain.metrics.agreement import map_agreement, top_k_iou

S = 16  # map side


def ramp(n: int = 1) -> np.ndarray:
    """n copies of a 16x16 map with 256 distinct values in [0, 1]."""
    return np.broadcast_to(np.arange(S * S).reshape(S, S) / (S * S - 1), (n, S, S)).copy()


def test_identical_maps_agree_perfectly():
    maps = np.random.default_rng(0).random((3, S, S))
    agreement = map_agreement(maps, maps.copy(), top_k=10)
    for metric in ("spearman", "ssim", "iou_top_k"):
        np.testing.assert_allclose(agreement[metric], 1.0)
    assert not agreement["constant"].any()


def test_a_map_and_its_inverse_disagree():
    a = ramp()
    agreement = map_agreement(a, 1 - a, top_k=10)
    assert agreement["spearman"][0] == pytest.approx(-1.0)
    assert agreement["iou_top_k"][0] == 0.0  # the top 10 % of one is the bottom of the other
    assert agreement["ssim"][0] < 0


def test_top_k_iou_by_hand():
    # 16x16 = 256 pixels, top 10 % -> ceil(25.6) = 26 pixels
    a = ramp()[0]
    b = a.copy()
    top_a = np.argsort(-a.ravel())[:26]
    # move 6 of b's top pixels to the bottom: 20 shared, union 26 + 6 = 32
    flat = b.ravel()
    flat[top_a[:6]] = -1 - np.arange(6)
    b = (flat - flat.min()).reshape(S, S)
    assert top_k_iou(a[None], b[None], top_k=10)[0] == pytest.approx(20 / 32)
    # and top 50 %: 128 pixels each, b's moved 6 replaced by 6 others: 122 / 134
    assert top_k_iou(a[None], b[None], top_k=50)[0] == pytest.approx(122 / 134)


def test_a_shared_plateau_is_not_agreement():
    """Two maps whose top is one flat plateau of 64 pixels: their top 10 % (26 pixels) is a
    draw from it, with each map's own tie-break, so the IoU is far from 1."""
    plateau = np.zeros((1, S, S))
    plateau[0, :4, :] = 1.0
    plateau[0, 4:, :] = np.linspace(0, 0.5, (S - 4) * S).reshape(S - 4, S)
    iou = top_k_iou(plateau, plateau.copy(), top_k=10, seeds_a=[1], seeds_b=[2])[0]
    assert iou < 0.6


def test_a_constant_map_has_no_agreement():
    a = np.random.default_rng(1).random((2, S, S))
    b = a.copy()
    b[1] = 0.0  # all zero: pytorch-grad-cam's map of a class with no positive evidence
    agreement = map_agreement(a, b)
    assert agreement["constant"].tolist() == [False, True]
    for metric in ("spearman", "ssim", "iou_top_k"):
        assert agreement[metric][0] == pytest.approx(1.0)
        assert np.isnan(agreement[metric][1])
    both_zero = map_agreement(np.zeros((1, S, S)), np.zeros((1, S, S)))
    assert np.isnan(both_zero["ssim"][0])  # two blank maps would otherwise have SSIM 1
