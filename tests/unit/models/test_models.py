"""xaimed.models: building (no network), CAM registry, normalisation, checkpoints."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from xaimed.models import layers
from xaimed.models.build import build_model, classifier_names
from xaimed.models.checkpoint import load_checkpoint, save_checkpoint
from xaimed.models.inputs import IMAGENET_MEAN, IMAGENET_STD, normalize, to_device
from xaimed.models.layers import CAM_FAMILIES, model_tail, target_layer
from xaimed.models.precision import cpu_has_bfloat16, trains_in_bfloat16


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt of torch hub to fetch something fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def _hub_file(torch_home: Path, name: str) -> Path:
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return torch_home / "hub" / "checkpoints" / os.path.basename(urlparse(url).path)


def _states_equal(a: dict, b: dict, skip: str | None = None) -> bool:
    keys = [k for k in b if skip is None or not k.startswith(skip)]
    return all(torch.equal(a[k], b[k]) for k in keys)


# --------------------------------------------------------------------------- build_model


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "vgg16", "efficientnet_b0"])
def test_build_matches_torchvision_and_runs_at_64px(name):
    torch.manual_seed(0)
    model = build_model(name, 3).eval()
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None, num_classes=3).eval()
    assert model.state_dict().keys() == reference.state_dict().keys()
    # the same backbone; only the head is re-initialised (fan-in default, see build_model)
    head = [n for n, m in reference.named_modules() if isinstance(m, nn.Linear)][-1]
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith(head + ".")}
    reference_backbone = {
        k: v for k, v in reference.state_dict().items() if not k.startswith(head + ".")
    }
    assert _states_equal(backbone, reference_backbone)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 3)
        # DenseNet gains a parameter-free relu5: the logits must not change
        torch.testing.assert_close(out, reference(x), rtol=0, atol=0)


def test_unknown_model_lists_available_names():
    with pytest.raises(ValueError, match="not_a_net") as info:
        build_model("not_a_net", 3)
    assert "resnet18" in str(info.value) and "densenet121" in str(info.value)
    assert "resnet50" in classifier_names() and "fasterrcnn_resnet50_fpn" not in classifier_names()


def test_imagenet_weights_come_from_local_torch_home(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = torchvision.models.resnet18().eval()
    path = _hub_file(tmp_path, "resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    model = build_model("resnet18", 3, "imagenet")
    assert model.fc.out_features == 3 and model.fc.in_features == 512
    assert _states_equal(model.state_dict(), reference.state_dict(), skip="fc.")

    full = build_model("resnet18", 1000, "imagenet").eval()
    assert _states_equal(full.state_dict(), reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(full(x), reference(x), rtol=0, atol=0)


def test_imagenet_densenet_legacy_keys_are_renamed(tmp_path, monkeypatch, no_network):
    """torchvision's DenseNet files use old keys ('norm.1.weight'); its loader renames them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    reference = torchvision.models.densenet121()
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")  # as in the old files torchvision serves
    }
    assert any(".norm.1." in k for k in legacy)
    path = _hub_file(tmp_path, "densenet121")
    path.parent.mkdir(parents=True)
    torch.save(legacy, path)
    model = build_model("densenet121", 2, "imagenet")
    assert model.classifier.out_features == 2
    assert _states_equal(model.state_dict(), reference.state_dict(), skip="classifier.")


def test_imagenet_squeezenet_conv_head(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.squeezenet1_1()
    path = _hub_file(tmp_path, "squeezenet1_1")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = build_model("squeezenet1_1", 4, "imagenet").eval()
    assert _states_equal(model.state_dict(), reference.state_dict(), skip="classifier.1.")
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_imagenet_missing_file_names_the_path(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = _hub_file(tmp_path, "resnet18")
    with pytest.raises(FileNotFoundError) as info:
        build_model("resnet18", 3, "imagenet")
    assert str(expected) in str(info.value) and "TORCH_HOME" in str(info.value)


def test_weights_path_state_dicts(tmp_path, no_network):
    torch.manual_seed(3)
    imagenet_like = torchvision.models.resnet18()
    torch.save(imagenet_like.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", 3, str(tmp_path / "r18.pth"))
    assert model.fc.out_features == 3
    assert _states_equal(model.state_dict(), imagenet_like.state_dict(), skip="fc.")

    small = torchvision.models.resnet18(num_classes=3)  # a num_classes state dict loads as is
    torch.save(small.state_dict(), tmp_path / "r18_3.pth")
    assert _states_equal(
        build_model("resnet18", 3, tmp_path / "r18_3.pth").state_dict(), small.state_dict()
    )

    with pytest.raises(FileNotFoundError, match="no_such_file"):
        build_model("resnet18", 3, str(tmp_path / "no_such_file.pth"))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda: torchvision.models.resnet18(), id="pickled-module"),
        pytest.param(lambda: {"a": 1}, id="dict-of-int"),
        pytest.param(lambda: [torch.zeros(2)], id="list"),
        pytest.param(lambda: {"state_dict": {}, "meta": {}}, id="checkpoint"),
    ],
)
def test_weights_path_refuses_non_state_dicts(tmp_path, payload):
    path = tmp_path / "weights.pth"
    torch.save(payload(), path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        build_model("resnet18", 3, str(path))


# --------------------------------------------------------------------------- registry


def test_target_layers_of_default_architectures():
    resnet = build_model("resnet50", 3)
    assert target_layer(resnet, "resnet50") is resnet.layer4[-1]
    densenet = build_model("densenet121", 3)
    layer = target_layer(densenet, "densenet121")
    assert layer is densenet.features.relu5 and isinstance(layer, nn.Threshold)
    vgg = build_model("vgg16", 3)
    layer = target_layer(vgg, "vgg16")
    assert isinstance(layer, nn.ReLU) and layer is vgg.features[-2]
    assert isinstance(vgg.features[-1], nn.MaxPool2d)
    effnet = build_model("efficientnet_b0", 3)
    assert target_layer(effnet, "efficientnet_b0") is effnet.features[-1]


def test_densenet_relu5_added_to_plain_torchvision_model_once():
    model = torchvision.models.densenet121(num_classes=2)
    first = target_layer(model, "densenet121")
    assert target_layer(model, "densenet121") is first
    assert sum(isinstance(m, nn.Threshold) for m in model.features) == 1


def test_unregistered_family_says_where_to_add_it():
    with pytest.raises(NotImplementedError, match="alexnet") as info:
        target_layer(torchvision.models.alexnet(num_classes=2), "alexnet")
    assert "CAM_FAMILIES" in str(info.value)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("resnet18", 64),
        ("resnext50_32x4d", 64),
        ("densenet121", 64),
        ("vgg11", 64),
        ("efficientnet_b0", 64),
        ("mobilenet_v2", 64),
        ("mobilenet_v3_small", 64),
        ("convnext_tiny", 64),
        ("regnet_x_400mf", 64),
        ("swin_t", 64),
    ],
)
def test_registered_tails_reproduce_the_forward(name, size):
    """tail(target-layer activations) == model(x): what the fast AblationCAM relies on."""
    assert any(name.startswith(prefix) for prefix in CAM_FAMILIES)
    torch.manual_seed(0)
    model = build_model(name, 3).eval()
    with torch.no_grad():  # random-init activations can be ~1e-13: keep the bias from hiding them
        [m for m in model.modules() if isinstance(m, nn.Linear)][-1].bias.zero_()
    captured = {}
    handle = target_layer(model, name).register_forward_hook(
        lambda m, i, o: captured.__setitem__("a", o.detach().clone())
    )
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        handle.remove()
        got = model_tail(model, name)(captured["a"])
    scale = expected.abs().max().item()  # random-init logits can be ~1e-10: compare relatively
    assert scale > 0 and not torch.allclose(expected[0], expected[1], rtol=1e-3, atol=0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * scale)


def test_a_chosen_target_layer_is_found_by_its_dotted_path():
    resnet = build_model("resnet50", 3)
    assert target_layer(resnet, "resnet50", "layer3") is resnet.layer3
    assert target_layer(resnet, "resnet50", "layer3.5") is resnet.layer3[5]
    assert target_layer(resnet, "resnet50", "layer4.2") is target_layer(resnet, "resnet50")
    densenet = build_model("densenet121", 3)
    layer = target_layer(densenet, "densenet121", "features.denseblock3")
    assert layer is densenet.features.denseblock3
    # an explicit path needs no registry entry; without one there is no known tail
    alexnet = build_model("alexnet", 2)
    assert target_layer(alexnet, "alexnet", "features.11") is alexnet.features[11]
    assert model_tail(alexnet, "alexnet", "features.11") is None


@pytest.mark.parametrize("path", ["layer5", "layer3.9", "layer3.conv1", "", "fc.weight"])
def test_a_missing_target_layer_names_the_model_the_path_and_the_modules(path):
    resnet = build_model("resnet18", 3)
    with pytest.raises(ValueError, match="does not exist in model 'resnet18'") as info:
        target_layer(resnet, "resnet18", path)
    message = str(info.value)
    assert repr(path) in message
    assert "layer1, layer1.0, layer1.1, layer2" in message and "fc" in message


@pytest.mark.parametrize(
    "path", ["layer1", "layer2.0", "layer2", "layer3.0", "layer3", "layer4.0", "layer4.1"]
)
def test_resnet_tails_after_any_residual_block_reproduce_the_forward(path):
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    captured = {}
    handle = target_layer(model, "resnet18", path).register_forward_hook(
        lambda m, i, o: captured.__setitem__("a", o.detach().clone())
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        handle.remove()
        got = model_tail(model, "resnet18", path)(captured["a"])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_no_tail_inside_a_block_or_in_the_stem():
    model = build_model("resnet18", 3)
    for path in ("conv1", "maxpool", "layer2.0.conv1", "layer2.0.downsample"):
        assert model_tail(model, "resnet18", path) is None
    registry_tail = model_tail(model, "resnet18")
    assert registry_tail is not None and model_tail(model, "resnet18", "layer4.1") is not None


# --------------------------------------------------------------------------- normalize


def test_normalize_matches_hand_computation():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 3, 5, 4), dtype=np.uint8)
    expected = (images / 255.0 - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[
        :, None, None
    ]
    got = normalize(torch.from_numpy(images))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)
    custom = normalize(torch.from_numpy(images), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    np.testing.assert_allclose(custom.numpy(), (images / 255.0 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        normalize(torch.zeros(1, 3, 4, 4))


# --------------------------------------------------------------------------- checkpoints


def _meta(**extra):
    meta = {
        "model": "resnet18",
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "image_size": 32,
        "dataset": "toy",
        "fold": 0,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "best_epoch": 4,
    }
    meta.update(extra)
    return meta


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(4)
    model = build_model("resnet18", 3)
    model.train()(torch.randn(4, 3, 32, 32))  # move BN running stats away from init
    model.eval()
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, to_device(model, "cpu"), _meta())  # as training leaves it
    assert sorted(os.listdir(path.parent)) == ["model.pt"]  # no temp file left behind
    before = torch.get_rng_state()
    loaded, meta = load_checkpoint(path)
    assert torch.equal(before, torch.get_rng_state())
    assert meta == _meta() and not loaded.training
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # runs channels-last (oneDNN at any batch size on the CPU), saved in the standard layout
    assert loaded.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not loaded.conv1.weight.is_contiguous()
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert all(tensor.is_contiguous() for tensor in saved.values())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_refuses_pickled_objects_and_wrong_layouts(tmp_path):
    model = build_model("resnet18", 3)
    torch.save(model, tmp_path / "full.pt")
    with pytest.raises(ValueError, match="full.pt"):
        load_checkpoint(tmp_path / "full.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare.pt"):
        load_checkpoint(tmp_path / "bare.pt")
    torch.save({"state_dict": model.state_dict(), "meta": {"model": "resnet18"}}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="m.pt"):
        load_checkpoint(tmp_path / "m.pt")


def test_save_checkpoint_rejects_meta_that_would_not_load(tmp_path):
    model = build_model("resnet18", 3)
    with pytest.raises(TypeError, match="best_epoch"):
        save_checkpoint(tmp_path / "x.pt", model, _meta(best_epoch=np.int64(3)))
    with pytest.raises(ValueError, match="num_classes"):
        save_checkpoint(tmp_path / "x.pt", model, {"model": "resnet18"})
    assert not os.listdir(tmp_path)


def test_models_module_exports_registry():
    assert set(layers.CAM_FAMILIES) >= {"resnet", "densenet", "vgg", "efficientnet"}


@pytest.mark.parametrize("name", ["efficientnet_b0", "resnet18", "vgg11"])
def test_random_heads_start_near_zero_whatever_the_class_count(name):
    """torchvision sizes EfficientNet's head init by its outputs (1/sqrt(2) for 2 classes)."""
    torch.manual_seed(0)
    model = build_model(name, 2)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert head.weight.abs().max() <= 1 / head.in_features**0.5 + 1e-7


def test_bfloat16_training_always_on_cuda_and_on_the_cpu_where_it_is_faster():
    assert trains_in_bfloat16("efficientnet_b0", "cuda")
    for slower_on_the_cpu in ("efficientnet_b0", "mobilenet_v3_small", "shufflenet_v2_x0_5"):
        assert not trains_in_bfloat16(slower_on_the_cpu, "cpu")
    assert trains_in_bfloat16("resnet50", "cpu") == cpu_has_bfloat16()
