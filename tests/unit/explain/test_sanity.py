"""xaimed.explain.metrics.sanity: similarity measures against independent computations, the cascade
of re-initialised blocks, and the randomisation check on a real network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from xaimed.explain.cams import compute_cams
from xaimed.explain.metrics.localisation import BASELINES
from xaimed.explain.metrics.sanity import (
    SSIM_K1,
    SSIM_K2,
    cascade_blocks,
    randomised_cascade,
    sanity_check,
    spearman,
    ssim,
)
from xaimed.models.build import build_model
from xaimed.stats.quality import sanity_table


def test_spearman_equals_scipy_and_is_nan_for_constant_maps():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (3, 6, 7)).astype(float)  # many ties
    b = rng.random((3, 6, 7))
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(spearman(a, b), expected)
    np.testing.assert_allclose(spearman(b, b), 1)
    np.testing.assert_allclose(spearman(b, -b), -1)
    assert np.isnan(spearman(np.zeros((1, 4, 4)), b[:1, :4, :4])[0])


def brute_force_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. (2004) pixel by pixel: an 11x11 normalised Gaussian window (sigma 1.5),
    borders mirrored (d c b a | a b c d), population statistics, data range 1."""
    sigma, radius = 1.5, 5
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    window = np.outer(taps, taps) / taps.sum() ** 2
    pa, pb = np.pad(a, radius, mode="symmetric"), np.pad(b, radius, mode="symmetric")
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    values = []
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            wa = pa[i : i + 2 * radius + 1, j : j + 2 * radius + 1]
            wb = pb[i : i + 2 * radius + 1, j : j + 2 * radius + 1]
            ma, mb = (window * wa).sum(), (window * wb).sum()
            va = (window * (wa - ma) ** 2).sum()
            vb = (window * (wb - mb) ** 2).sum()
            cov = (window * (wa - ma) * (wb - mb)).sum()
            values.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(values))


def test_ssim_known_values_and_brute_force():
    rng = np.random.default_rng(1)
    a = rng.random((2, 12, 14))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    np.testing.assert_allclose(ssim(a, a), 1)
    got = ssim(a, b)
    np.testing.assert_allclose(
        got, [brute_force_ssim(x, y) for x, y in zip(a, b, strict=True)], atol=1e-10
    )
    assert 0 < got.max() < 0.9
    # constant maps: zero variances, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    c1 = SSIM_K1**2
    got = ssim(np.full((1, 8, 8), 0.2), np.full((1, 8, 8), 0.6))[0]
    assert got == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1))


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("resnet18", ["fc", "layer4.1", "layer4.0", "layer3.1"]),
        ("vgg16", ["classifier.6", "classifier.3", "classifier.0", "features.28"]),
        ("densenet121", ["classifier", "features.norm5", "features.denseblock4"]),
        ("efficientnet_b0", ["classifier.1", "features.8", "features.7"]),
    ],
)
def test_cascade_blocks_run_from_the_output_down(name, first):
    blocks = [block for block, _ in cascade_blocks(build_model(name, 2))]
    assert blocks[: len(first)] == first
    assert blocks[-1] in ("conv1", "features.0", "features.conv0")


def test_randomised_cascade_reinitialises_exactly_the_top_blocks():
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    with torch.no_grad():  # "trained": batch norms away from their initial values too
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}
    for depth, name, randomised in randomised_cascade(model, [2, 1, 99], seed=5):
        seen[depth] = (name, {k: v.clone() for k, v in randomised.state_dict().items()})
    assert [(d, seen[d][0]) for d in sorted(seen)] == [(1, "fc"), (2, "layer4.1"), (11, "conv1")]
    for key, value in model.state_dict().items():  # the trained model is untouched
        assert torch.equal(value, before[key])

    def changed(state):
        return {
            k for k, v in state.items() if v.is_floating_point() and not torch.equal(v, before[k])
        }

    assert changed(seen[1][1]) == {"fc.weight", "fc.bias"}
    layer = {k for k in before if k.startswith("layer4.1.") and before[k].is_floating_point()}
    assert changed(seen[2][1]) == {"fc.weight", "fc.bias"} | layer
    # cascade: the top block keeps the same random weights at every depth, and a seed
    assert torch.equal(seen[1][1]["fc.weight"], seen[2][1]["fc.weight"])
    _, _, again = next(randomised_cascade(model, [1], seed=5))
    assert torch.equal(again.state_dict()["fc.weight"], seen[1][1]["fc.weight"])
    with pytest.raises(ValueError, match="depths"):
        next(randomised_cascade(model, [0]))


@pytest.mark.parametrize("name", ["vit_b_16", "swin_t"])
def test_randomising_every_block_of_a_transformer_leaves_no_trained_weight(name):
    """Attention in-projections (nn.MultiheadAttention has no reset_parameters), position
    embeddings and relative position biases (parameters of modules without one) included."""
    torch.manual_seed(0)
    model = build_model(name, 2, image_size=64).eval()
    with torch.no_grad():  # "trained": away from every initial value (LayerNorm's 1 and 0 too)
        for value in model.parameters():
            value.add_(torch.rand_like(value))
    trained = {k: v.clone() for k, v in model.named_parameters()}
    (_, _, randomised), *_ = randomised_cascade(model, ["all"], seed=5)
    blocks = [prefix for prefix, _ in cascade_blocks(model)]
    kept = [
        k
        for k, v in randomised.named_parameters()
        if any(k.startswith(f"{b}.") for b in blocks) and torch.equal(v, trained[k])
    ]
    assert kept == []


def test_sanity_check_on_a_real_network():
    """EigenCAM ignores gradients, so re-initialising only the classifier cannot change its
    maps (similarity exactly 1: it fails at that stage) while Grad-CAM's change; randomising
    every block changes EigenCAM's maps too. (On an untrained network many maps follow the
    input more than the weights, so no stronger claim is checked here.)"""
    torch.manual_seed(1)
    model = build_model("resnet18", 3).eval()
    x = torch.randn(3, 3, 96, 96)
    targets = [0, 1, 2]
    ids = ["a", "b", "c"]
    rows = {}
    for method in ("eigencam", "gradcam"):
        trained = compute_cams(model, "resnet18", method, x, targets)
        result = sanity_check(
            model, "resnet18", method, x, targets, trained, ids, depths=[1, "all"], seed=0
        )
        assert list(result["stage"]) == [1, 1, 1, 11, 11, 11]
        assert list(result["randomised"]) == ["fc"] * 3 + ["conv1"] * 3
        rows[method] = result.assign(method=method)
    eigen = rows["eigencam"]
    np.testing.assert_allclose(eigen.loc[eigen["stage"] == 1, ["spearman", "ssim"]], 1)
    assert (eigen.loc[eigen["stage"] == 11, "spearman"] < 0.95).all()
    gradcam = rows["gradcam"]
    assert (gradcam.loc[gradcam["stage"] == 1, "spearman"].dropna() < 0.9).all()

    # the table's verdict
    sanity = pd.concat(rows.values()).assign(
        dataset="toy", model="resnet18", fold=0, pred_name="x", pred=0
    )
    for column in ("spearman", "ssim"):
        for baseline in BASELINES:
            sanity[f"{column}_{baseline}"] = 0.1
    table = sanity_table(sanity, max_similarity=0.5)
    verdict = table[table["metric"] == "spearman"].set_index(["method", "stage"])["passes"]
    assert not verdict[("eigencam", 1)]
    assert np.allclose(table["baseline_random"], 0.1)
    assert table.loc[table["method"] == "eigencam", "n_images"].eq(3).all()
    expected = eigen.groupby("stage")["spearman"].mean()
    got = table[(table["method"] == "eigencam") & (table["metric"] == "spearman")]
    np.testing.assert_allclose(got["mean"], expected.to_numpy())
