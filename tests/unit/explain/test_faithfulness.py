"""xaimed.explain.metrics.faithfulness: deletion and insertion curves with a model whose answer is
known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from xaimed.explain.metrics.faithfulness import (
    BLUR_SIGMA,
    blurred,
    curves,
    faithfulness_scores,
    mean_colour,
)


class RegionFraction(nn.Module):
    """p(class 0) = the mean of channel 0 over a fixed region R of the image, exactly:
    logits (log f, log(1 - f)) give softmax (f, 1 - f)."""

    def __init__(self, region: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("weights", torch.from_numpy(region / region.sum()).float())
        self.unused = nn.Parameter(torch.zeros(1))  # the device is read from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = (x[:, 0] * self.weights).sum(dim=(1, 2)).clamp(1e-12, 1 - 1e-12)
        return torch.stack([torch.log(f), torch.log1p(-f)], dim=1)


@pytest.fixture
def setup():
    """4x4 image of ones; R = the 4 pixels of the top row; maps that rank R first or last."""
    region = np.zeros((4, 4))
    region[0] = 1
    ramp = np.arange(16, dtype=float).reshape(4, 4) / 100  # no ties
    best = region * 10 + ramp  # R first, the rest in a fixed order
    worst = -region * 10 + ramp + 1  # R last
    return RegionFraction(region), torch.ones(2, 3, 4, 4), np.stack([best, worst])


def test_deletion_and_insertion_curves_have_the_known_values(setup):
    model, images, cams = setup
    # steps=4: 0, 4, 8, 12, 16 pixels changed
    fractions, deletion, insertion = curves(
        model, images, cams, [0, 0], steps=4, insertion_substrate=mean_colour
    )
    np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1])
    # deleting R first: f = 1 then 0; R last: f = 1 until the last step
    np.testing.assert_allclose(deletion, [[1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], atol=1e-6)
    # inserting R first into the mean colour (zeros): f = 0 then 1
    np.testing.assert_allclose(insertion, [[0, 1, 1, 1, 1], [0, 0, 0, 0, 1]], atol=1e-6)
    scores = faithfulness_scores(
        model, images, cams, [0, 0], steps=4, insertion_substrate=mean_colour
    )
    # trapezoids: 0.25 * (1 + 0) / 2 = 0.125; 0.75 + 0.125 = 0.875
    np.testing.assert_allclose(scores["deletion_auc"], [0.125, 0.875], atol=1e-6)
    np.testing.assert_allclose(scores["insertion_auc"], [0.875, 0.125], atol=1e-6)
    # the other class's probability is 1 - f
    other = faithfulness_scores(model, images, cams, [1, 1], steps=4)
    np.testing.assert_allclose(other["deletion_auc"], [0.875, 0.125], atol=1e-6)


def test_steps_that_do_not_divide_the_pixels_and_batch_size(setup):
    model, images, cams = setup
    # steps=3: round(0, 5.33, 10.67, 16) = 0, 5, 11, 16 pixels; R first -> f = 1, 0, 0, 0
    fractions, deletion, _ = curves(model, images, cams, [0, 0], steps=3, batch_size=1)
    np.testing.assert_allclose(fractions, [0, 5 / 16, 11 / 16, 1])
    np.testing.assert_allclose(deletion[0], [1, 0, 0, 0], atol=1e-6)
    batched = curves(model, images, cams, [0, 0], steps=3, batch_size=16)
    np.testing.assert_allclose(batched[1], deletion)
    with pytest.raises(ValueError, match="steps"):
        curves(model, images, cams, [0, 0], steps=0)
    with pytest.raises(ValueError, match="targets"):
        curves(model, images, cams, [0], steps=2)
    with pytest.raises(ValueError, match="batch_size"):
        curves(model, images, cams, [0, 0], steps=2, batch_size=0)


def test_substrates():
    torch.manual_seed(0)
    image = torch.rand(3, 32, 32)
    assert torch.equal(mean_colour(image), torch.zeros_like(image))
    expected = np.stack(
        [
            ndimage.gaussian_filter(channel, BLUR_SIGMA * 32, mode="nearest")
            for channel in image.numpy()
        ]
    )
    np.testing.assert_allclose(blurred(image).numpy(), expected, atol=1e-6)
    assert blurred(image).std() < image.std() / 2


def test_flat_maps_remove_pixels_in_a_seeded_random_order(setup):
    model, images, _ = setup
    flat = np.zeros((2, 4, 4))
    one = curves(model, images, flat, [0, 0], steps=16, seeds=[1, 1])[1]
    np.testing.assert_allclose(one[0], one[1])  # same seed, same order
    other = curves(model, images, flat, [0, 0], steps=16, seeds=[1, 2])[1]
    assert not np.allclose(other[0], other[1])
    # row by row would delete R (the top row) first; a random order rarely does
    assert one[0][4] > 0


class Recording(nn.Module):
    """A model that records the size of every batch it sees."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.batches = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return self.inner(x)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
def test_curves_of_several_images_share_full_batches(setup, batch_size):
    model, images, cams = setup
    images = torch.cat([images[:1], images[:1] * 0.5, images[:1] * 0.25])  # three images
    cams = np.concatenate([cams, cams[:1]])
    targets = [0, 1, 0]
    recording = Recording(model)
    _, deletion, insertion = curves(
        recording, images, cams, targets, steps=4, batch_size=batch_size
    )
    # each image alone, one perturbed image at a time, gives the curves of all three batched
    for i in range(3):
        part = slice(i, i + 1)
        alone = curves(model, images[part], cams[part], targets[part], steps=4, batch_size=1)
        np.testing.assert_allclose(deletion[i], alone[1][0], atol=1e-7)
        np.testing.assert_allclose(insertion[i], alone[2][0], atol=1e-7)
    # the unperturbed image is deletion's start and insertion's end, and runs once: 2 x 5 - 1
    # images per image, in full batches but the last
    assert sum(recording.batches) == 3 * 9
    assert all(size == batch_size for size in recording.batches[:-1])
    assert deletion[:, 0] == pytest.approx(insertion[:, -1])
