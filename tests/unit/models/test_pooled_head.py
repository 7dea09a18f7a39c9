"""Training a replicated head collapsed gives the weights training it whole gives."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from xaimed.models.pooled_head import PooledHead
from xaimed.train.trainer import Trainer, TrainSettings, make_scheduler


class SmallVGG(nn.Module):
    """torchvision's VGG layout with a few channels: features, a 7x7 pool, classifier."""

    def __init__(self, pool: int = 7, pool_before: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1 if pool == 7 else 2)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        head = [nn.Linear(6 * pool * pool, 10), nn.ReLU(), nn.Linear(10, 3)]
        self.classifier = nn.Sequential(*([nn.Dropout(0.5)] if pool_before else []), *head)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def train(model, head, steps, batches):
    settings = TrainSettings.with_defaults(
        model="small", lr=0.05, weight_decay=0.3, optimizer="adamw"
    )
    params = model.parameters()
    if head:
        params = head.parameter_groups(model, settings.lr, settings.weight_decay)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = make_scheduler(settings, optimizer, steps)
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if head:
            head.track(model, optimizer)
        scheduler.step()
    return model


@pytest.mark.parametrize("pool", [7, 6])  # a 1x1 map copied 49 times; 2x2 copied 9 times
def test_collapsed_training_reaches_the_weights_of_whole_training(pool):
    torch.manual_seed(0)
    whole = SmallVGG(pool)
    collapsed = copy.deepcopy(whole)
    head = PooledHead.find(collapsed, image_size=8)
    assert head is not None and head.replicas == (49 if pool == 7 else 9)
    head.collapse(collapsed)
    assert collapsed.classifier[0].in_features == 6 * (1 if pool == 7 else 4)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(30, 8, 3, 8, 8, generator=generator)
    targets = torch.randint(0, 3, (30, 8), generator=generator)
    batches = list(zip(inputs, targets, strict=True))
    train(whole, None, len(batches), batches)
    train(collapsed, head, len(batches), batches)

    expanded = head.expand(collapsed.state_dict())
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(expanded[name], value, atol=2e-5, rtol=1e-4, msg=name)
    # weight decay made the copies differ from each other: their initial values persist
    first = whole.classifier[0].weight
    assert not torch.allclose(first[:, 0], first[:, 1])
    head.restore(collapsed, collapsed.state_dict())
    assert isinstance(collapsed.avgpool, nn.AdaptiveAvgPool2d)
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(collapsed(x), whole(x), atol=1e-5, rtol=1e-4)


def test_heads_that_do_not_only_copy_are_left_alone():
    assert PooledHead.find(SmallVGG(7, pool_before=True), image_size=8) is None  # dropout first
    assert PooledHead.find(SmallVGG(7), image_size=8) is not None
    # 7x7 from 2x2 averages neighbouring cells: not a copy
    model = SmallVGG(7)
    model.features[-1] = nn.AdaptiveMaxPool2d(2)
    assert PooledHead.find(model, image_size=8) is None
    resnet = torchvision.models.resnet18(num_classes=2)
    assert PooledHead.find(resnet, image_size=32) is None


def test_trainer_collapses_vgg_at_small_sizes_and_saves_torchvision_weights():
    """The real VGG11 at 32 px (a 1x1 map under a 7x7 pool): two steps collapsed and whole,
    in float32 (bfloat16 rounds the two sums differently)."""
    settings = TrainSettings.with_defaults(
        model="vgg11", lr=1e-3, batch_size=4, epochs=1, augment={}, amp=False
    )
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.tensor([0, 1] * 4)
    states = {}
    for image_size in (32, None):
        torch.manual_seed(0)
        trainer = Trainer(settings, num_classes=2, steps=2, image_size=image_size)
        assert (trainer.head is not None) == (image_size == 32)
        trainer.generator.manual_seed(0)
        trainer.train_epoch(images, labels)
        model = trainer.finish(copy.deepcopy(trainer.model.state_dict()))
        states[image_size] = model.state_dict()
    reference = torchvision.models.vgg11(num_classes=2).state_dict()
    assert states[32].keys() == reference.keys()
    # Equal up to rounding, which Adam's normalised step can lift to ~1e-5 where a gradient
    # is nearly zero; a different dropout mask or a wrong step size would differ by ~lr.
    for name, value in states[None].items():
        torch.testing.assert_close(states[32][name], value, atol=1e-4, rtol=0, msg=name)
