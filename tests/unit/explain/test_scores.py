"""xaimed.explain.metrics.confidence: equal to pytorch-grad-cam's metrics, to hand computations,
reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from xaimed.explain.metrics.confidence import confidence_increase, road
from xaimed.models.build import build_model


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    x = torch.randn(4, 3, 32, 32)
    rng = np.random.default_rng(0)
    cams = rng.random((4, 32, 32), dtype=np.float32)
    cams[1] = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    return model, x, cams, [0, 2, 1, 2]


def test_confidence_increase_equals_library(setup):
    model, x, cams, targets = setup
    got = confidence_increase(model, x, cams, targets, batch_size=3)
    expected = CamMultImageConfidenceChange()(
        x, cams, [ClassifierOutputSoftmaxTarget(c) for c in targets], model
    )
    assert got.dtype == np.float32 and got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.abs(got).max() > 1e-4  # not trivially zero


def test_confidence_increase_by_hand(setup):
    model, x, cams, targets = setup
    i, c = 1, targets[1]
    with torch.no_grad():
        before = torch.softmax(model(x[i : i + 1]).double(), dim=1)[0, c]
        masked = x[i : i + 1] * torch.from_numpy(cams[i])[None, None]
        after = torch.softmax(model(masked).double(), dim=1)[0, c]
    got = confidence_increase(model, x[i : i + 1], cams[i : i + 1], [c])
    assert got[0] == pytest.approx(float(after - before), abs=1e-6)
    # float16 maps (as stored in cams.npz) are accepted
    half = confidence_increase(model, x[i : i + 1], cams[i : i + 1].astype(np.float16), [c])
    assert half[0] == pytest.approx(got[0], abs=1e-3)


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
def test_road_is_seeded_and_equals_library(setup):
    model, x, cams, targets = setup
    rng_before = torch.get_rng_state()
    first = road(model, x, cams, targets, percentiles=(20, 40, 60, 80), seed=0)
    assert torch.equal(rng_before, torch.get_rng_state())  # caller's RNG untouched
    again = road(model, x, cams, targets, percentiles=(20, 40, 60, 80), seed=0, batch_size=1)
    # batched forwards may differ from single-image ones in the last float bits
    np.testing.assert_allclose(first, again, rtol=0, atol=1e-6)
    other_seed = road(model, x, cams, targets, percentiles=(20, 40, 60, 80), seed=1)
    assert not np.array_equal(first, other_seed)  # the imputer's noise really is seeded

    metric = ROADCombined(percentiles=[20, 40, 60, 80])
    expected = []
    for i, c in enumerate(targets):  # the library, seeded the same way, image by image
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            expected.append(
                metric(x[i : i + 1], cams[i : i + 1], [ClassifierOutputSoftmaxTarget(c)], model)[0]
            )
    np.testing.assert_allclose(first, np.float32(expected), rtol=0, atol=1e-6)
    assert np.abs(first).max() > 1e-5


def test_road_on_a_subset_gives_the_same_values(setup):
    model, x, cams, targets = setup
    full = road(model, x, cams, targets, percentiles=(25, 75))
    part = road(model, x[2:], cams[2:], targets[2:], percentiles=(25, 75))
    np.testing.assert_allclose(full[2:], part, rtol=0, atol=1e-6)


@pytest.fixture
def threads():
    """Restores torch's thread count after a test that sets it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_road_threads_give_identical_scores(setup, threads):
    """An image's solves run on the job's threads; its perturbed images are bit-identical to
    one thread's (the noise is drawn afterwards, in the library's order)."""
    from xaimed.explain.metrics.confidence import _road_perturbations

    model, x, cams, targets = setup
    results = {}
    for n in (1, 4):
        threads(n)
        images = _road_perturbations(x[1], cams[1], (20, 40, 60, 80), seed=3)
        results[n] = images, road(model, x, cams, targets, percentiles=(20, 80), seed=0)
    assert torch.equal(results[1][0], results[4][0])
    # the model's own arithmetic may round differently on more threads
    np.testing.assert_allclose(results[1][1], results[4][1], rtol=0, atol=1e-6)
    # each percentile and order imputes a different set of pixels
    assert len({image.sum().item() for image in results[4][0]}) == 8


def test_shape_mismatch_is_an_error(setup):
    model, x, cams, targets = setup
    with pytest.raises(ValueError, match="do not match"):
        confidence_increase(model, x, cams[:2], targets)
    with pytest.raises(ValueError, match="do not match"):
        road(model, x, cams, targets[:3])


def test_linear_infill_solves_the_library_system_exactly():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from xaimed.explain.metrics.confidence import _linear_infill

    rng = np.random.default_rng(0)
    image = rng.random((3, 12, 10), dtype=np.float32)
    keep = np.float32(rng.random((12, 10)) > 0.4)
    keep[0, :] = 0  # missing pixels on the border exercise the out-of-image neighbours
    missing, values = _linear_infill(image, keep)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        expected = NoisyLinearImputer(noise=0.0)(torch.from_numpy(image), torch.from_numpy(keep))
    got = torch.from_numpy(image).reshape(3, -1).clone()
    got[:, missing] = torch.tensor(values, dtype=torch.float).t()
    assert torch.equal(got.reshape(3, 12, 10), expected)
    assert len(missing) == int((keep == 0).sum())
