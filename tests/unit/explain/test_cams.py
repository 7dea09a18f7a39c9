"""xaimed.explain.cams: maps equal pytorch-grad-cam's own, fast AblationCAM equals the library's."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xaimed.explain.cams import (
    CAM_METHODS,
    METHODS,
    FastAblationCAM,
    compute_cams,
    compute_cams_and_signs,
)
from xaimed.models import layers
from xaimed.models.build import build_model
from xaimed.models.layers import CamFamily, target_layer

#: maps computed by the same operations in the same batches agree bit for bit; this margin
#: only keeps a failure message readable
SAME_ARITHMETIC = 1e-6

LIBRARY_CLASS = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "eigengradcam": "EigenGradCAM",
    "layercam": "LayerCAM",
    "ablationcam": "AblationCAM",
    "scorecam": "ScoreCAM",
    "eigencam": "EigenCAM",
    "eigengradcam_signed": "EigenGradCAM",
    "eigencam_signed": "EigenCAM",
}


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    x = torch.randn(2, 3, 64, 96)  # layer4: 2x3, non-square to catch H/W mix-ups
    return model, x, [2, 0]


def library_cams(model, name, method, x, targets, layer_path=None, batch_size=None):
    """The library's own maps, in batches of ``batch_size`` (None: all at once).

    Compare against compute_cams in the batches it used: oneDNN's float32 convolutions are
    not bit-identical across batch sizes (DenseNet121's maps moved by 1.2e-5 between batches
    of 1 and 2 and failed a 1e-5 tolerance in CI), while the same batches give the same
    arithmetic, so the comparison can be tight and still hold on any CPU and under load."""
    cls = getattr(pytorch_grad_cam, LIBRARY_CLASS[method])
    step = batch_size or max(len(targets), 1)
    with cls(model=model, target_layers=[target_layer(model, name, layer_path)]) as cam:
        return np.concatenate(
            [
                cam(
                    input_tensor=x[i : i + step],
                    targets=[ClassifierOutputTarget(c) for c in targets[i : i + step]],
                )
                for i in range(0, len(targets), step)
            ]
        )


def test_registry_is_the_documented_mapping():
    assert tuple(LIBRARY_CLASS) == METHODS
    for method, cls_name in LIBRARY_CLASS.items():
        library = getattr(pytorch_grad_cam, cls_name)
        if method.endswith("_signed"):  # our sign-corrected subclass of the library's class
            assert issubclass(CAM_METHODS[method].library_class, library)
        else:
            assert CAM_METHODS[method].library_class is library


@pytest.mark.parametrize("method", [m for m in METHODS if not m.endswith("_signed")])
def test_every_method_equals_the_library_call_on_resnet18(resnet18, method):
    model, x, targets = resnet18
    if method in ("scorecam", "ablationcam"):  # one forward per channel in the library
        x, targets = x[:1], targets[:1]
    got = compute_cams(model, "resnet18", method, x, targets, batch_size=1)
    expected = library_cams(model, "resnet18", method, x, targets, batch_size=1)
    assert got.dtype == np.float32 and got.shape == (len(targets), 64, 96)
    assert expected.shape == got.shape
    for cam in got:  # not a vacuous comparison of flat maps
        assert cam.min() == pytest.approx(0, abs=1e-6) and cam.max() > 0.99
    # the same arithmetic but for AblationCAM, whose fast path runs only the model's tail
    tolerance = 1e-4 if method == "ablationcam" else SAME_ARITHMETIC
    assert np.abs(got - expected).max() <= tolerance


@pytest.mark.parametrize("method", ["eigengradcam", "eigencam"])
def test_signed_eigen_variant_fixes_the_sign_the_library_leaves_open(resnet18, method):
    """Independent computation: the first principal component of the centred (grads x)
    activations by numpy's SVD, its sign chosen to correlate positively with the channel sum
    (unique whatever sign the SVD returns), ReLU, the library's scaling and resizing. The
    signed map is that; the library's raw map is that or, where ``flipped``, its opposite."""
    model, _, _ = resnet18
    torch.manual_seed(7)
    x = torch.randn(6, 3, 96, 96)  # layer4: 3x3
    targets = [0, 1, 2, 0, 1, 2]
    raw = compute_cams(model, "resnet18", method, x, targets, batch_size=4)
    signed, flipped = compute_cams_and_signs(
        model, "resnet18", f"{method}_signed", x, targets, batch_size=4
    )
    assert np.isnan(compute_cams_and_signs(model, "resnet18", method, x, targets)[1]).all()

    captured = {}
    handle = target_layer(model, "resnet18").register_forward_hook(
        lambda m, i, o: captured.setdefault("acts", o)
    )
    logits = model(x)
    handle.remove()
    acts = captured["acts"]
    acts.retain_grad()
    logits[torch.arange(6), targets].sum().backward()
    matrix = acts.detach().numpy()
    if method == "eigengradcam":
        matrix = acts.grad.numpy() * matrix
    for i, m in enumerate(matrix):
        flat = m.reshape(m.shape[0], -1).T  # positions x channels
        centred = flat - flat.mean(axis=0)
        projection = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        if np.corrcoef(projection, flat.sum(axis=1))[0, 1] < 0:
            projection = -projection

        def as_map(p):
            return scale_cam_image(np.maximum(p, 0).reshape(1, 3, 3), (96, 96))[0]

        # float32 SVDs of batches of different sizes agree to ~1e-2; a wrong sign is off by ~1
        np.testing.assert_allclose(signed[i], as_map(projection), atol=2e-2)
        library_sign = -1 if flipped[i] == 1 else 1
        np.testing.assert_allclose(raw[i], as_map(library_sign * projection), atol=2e-2)
    assert set(np.unique(flipped)) <= {0.0, 1.0}
    if method == "eigengradcam":  # both cases occur on these images (EigenCAM: no flips)
        assert set(np.unique(flipped)) == {0.0, 1.0}


def test_batch_size_does_not_change_maps(resnet18):
    model, x, targets = resnet18
    one = compute_cams(model, "resnet18", "gradcampp", x, targets, batch_size=1)
    both = compute_cams(model, "resnet18", "gradcampp", x, targets, batch_size=16)
    np.testing.assert_allclose(one, both, atol=1e-6)
    assert not np.allclose(one[0], one[1], atol=1e-3)  # different images, different maps


def test_fast_ablation_on_efficientnet_equals_library():
    """EfficientNet's target is post-SiLU (negative minimum): the library then ablates with
    min - k*1e7 instead of 0; the fast path must reproduce that branch too."""
    torch.manual_seed(1)
    model = build_model("efficientnet_b0", 3).eval()
    x = torch.randn(1, 3, 33, 65)  # features[-1]: 2x3
    seen = {}
    handle = target_layer(model, "efficientnet_b0").register_forward_hook(
        lambda m, i, o: seen.__setitem__("min", float(o.detach().min()))
    )
    got = compute_cams(model, "efficientnet_b0", "ablationcam", x, [1])
    handle.remove()
    assert seen["min"] < 0
    expected = library_cams(model, "efficientnet_b0", "ablationcam", x, [1])
    assert got.max() > 0.99
    assert np.abs(got - expected).max() <= 1e-4


def test_fast_ablation_is_used_and_library_is_the_fallback(monkeypatch):
    torch.manual_seed(2)
    model = build_model("resnet18", 2).eval()
    x = torch.randn(1, 3, 32, 32)
    calls = []
    original = FastAblationCAM.get_cam_weights

    def spy(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FastAblationCAM, "get_cam_weights", spy)
    fast = compute_cams(model, "resnet18", "ablationcam", x, [1])
    assert calls == [1]
    no_tail = CamFamily(lambda m: m.layer4[-1], None, "test: no tail")
    monkeypatch.setitem(layers.CAM_FAMILIES, "resnet", no_tail)
    slow = compute_cams(model, "resnet18", "ablationcam", x, [1])
    assert calls == [1]  # library AblationCAM, not the fast path
    np.testing.assert_allclose(fast, slow, atol=1e-4)


@pytest.mark.parametrize(
    ("layer_path", "method"),
    [
        ("layer2", "xgradcam"),
        ("layer2", "layercam"),
        ("layer3.0", "layercam"),
        ("layer2", "ablationcam"),  # the fast path, through layer3, layer4, pooling and fc
        ("layer3.0", "ablationcam"),  # ... and through the rest of layer3
    ],
)
def test_a_chosen_layer_gives_the_library_maps_at_that_layer(resnet18, layer_path, method):
    model, x, targets = resnet18
    got = compute_cams(model, "resnet18", method, x, targets, layer_path=layer_path)
    expected = library_cams(model, "resnet18", method, x, targets, layer_path)
    assert np.abs(got - expected).max() <= 1e-4
    default = compute_cams(model, "resnet18", method, x, targets)
    assert np.abs(got - default).max() > 0.05  # another layer, other maps


def test_fast_ablation_at_a_chosen_layer_and_the_library_fallback(resnet18, monkeypatch):
    model, x, targets = resnet18
    made = []
    original = FastAblationCAM.__init__

    def spy(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(FastAblationCAM, "__init__", spy)
    compute_cams(model, "resnet18", "ablationcam", x[:1], targets[:1], layer_path="layer3")
    assert made == [1]
    # inside a block there is no known tail: the library's AblationCAM, same maps
    got = compute_cams(
        model, "resnet18", "ablationcam", x[:1], targets[:1], layer_path="layer4.1.bn2"
    )
    assert made == [1]
    expected = library_cams(model, "resnet18", "ablationcam", x[:1], targets[:1], "layer4.1.bn2")
    assert np.abs(got - expected).max() <= 1e-4


def test_a_missing_layer_is_refused_before_any_map(resnet18):
    model, x, targets = resnet18
    with pytest.raises(ValueError, match="'layer9' does not exist in model 'resnet18'"):
        compute_cams(model, "resnet18", "gradcam", x, targets, layer_path="layer9")


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "vgg16", "efficientnet_b0"])
def test_gradcam_on_default_architectures(name):
    torch.manual_seed(3)
    model = build_model(name, 3).eval()
    x = torch.randn(2, 3, 64, 64)
    maps = compute_cams(model, name, "gradcam", x, [0, 1], batch_size=1)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    # not all zero (a random model's CAM can be all negative; random EfficientNet activations
    # are ~1e-13, so the library's 1e-7 epsilon keeps its maxima below 1)
    assert maps.max() > 0.5
    expected = library_cams(model, name, "gradcam", x, [0, 1], batch_size=1)
    np.testing.assert_allclose(maps, expected, atol=SAME_ARITHMETIC)


def test_densenet_maps_use_post_relu_activations(monkeypatch):
    """Independent Grad-CAM: activations = relu(norm5), gradients of the logit through
    DenseNet's own forward, ReLU, per-image min-max, resize.

    The library keeps ``output.cpu().detach()``: on CPU an alias that DenseNet's in-place
    ReLU rectifies afterwards, on CUDA a copy. Store a copy here too (as on CUDA), so this
    test checks what a GPU run gives."""

    def save_copy(self, module, input, output):
        self.activations.append(output.detach().clone().cpu())

    monkeypatch.setattr(ActivationsAndGradients, "save_activation", save_copy)
    torch.manual_seed(5)
    model = build_model("densenet121", 3).eval()
    x = torch.randn(2, 3, 64, 64)
    targets = [1, 2]
    got = compute_cams(model, "densenet121", "gradcam", x, targets)

    norm5 = model.features[:-1](x)  # everything up to and including norm5
    acts = F.relu(norm5)
    acts.retain_grad()
    logits = model.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(acts), 1), 1))
    logits[torch.arange(2), targets].sum().backward()
    weights = acts.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * acts).sum(1)).detach().numpy()
    expected = scale_cam_image(scale_cam_image(cam, (64, 64)))
    assert (got.reshape(2, -1).max(axis=1) > 0.99).all()
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # the hazard that relu5 avoids: norm5 with copied activations keeps the negative parts
    with GradCAM(model=model, target_layers=[model.features.norm5]) as cam_norm5:
        at_norm5 = cam_norm5(x, [ClassifierOutputTarget(c) for c in targets])
    assert np.abs(at_norm5 - got).max() > 0.05


def test_works_under_no_grad_and_on_empty_input(resnet18):
    model, x, targets = resnet18
    with torch.no_grad():
        maps = compute_cams(model, "resnet18", "gradcam", x, targets)
    np.testing.assert_allclose(
        maps, library_cams(model, "resnet18", "gradcam", x, targets), atol=SAME_ARITHMETIC
    )
    assert compute_cams(model, "resnet18", "gradcam", x[:0], []).shape == (0, 64, 96)


def test_errors(resnet18):
    model, x, targets = resnet18
    with pytest.raises(ValueError, match="gradcam, gradcampp") as info:
        compute_cams(model, "resnet18", "fullgrad", x, targets)
    assert "ablationcam" in str(info.value)
    with pytest.raises(ValueError, match="targets"):
        compute_cams(model, "resnet18", "gradcam", x, targets[:1])
    with pytest.raises(ValueError, match="targets"):  # not swallowed by BaseCAM.__exit__
        compute_cams(model, "resnet18", "gradcam", x, [0, 7])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_cuda_maps_equal_cpu_maps(monkeypatch, name):
    """Same CAMs on CUDA as on CPU (TF32 off), incl. DenseNet (relu5: no aliasing effect),
    and the fast AblationCAM equals the library's on CUDA."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(5)
    model = build_model(name, 3).eval()
    x = torch.randn(2, 3, 64, 96)
    targets = [1, 2]
    on_cpu = compute_cams(model, name, "gradcam", x, targets)
    model_gpu = build_model(name, 3).eval()
    model_gpu.load_state_dict(model.state_dict())
    model_gpu.cuda()
    on_gpu = compute_cams(model_gpu, name, "gradcam", x.cuda(), targets)
    assert on_gpu.max() > 0.99
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
    fast = compute_cams(model_gpu, name, "ablationcam", x.cuda(), targets)
    expected = library_cams(model_gpu, name, "ablationcam", x.cuda(), targets)
    assert np.abs(fast - expected).max() <= 1e-4


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "vgg16", "efficientnet_b0"])
def test_every_method_runs_on_default_architectures(name):
    """Every registered method on each default architecture's registered target layer (the
    maps' values are checked against the library on ResNet18 above). ScoreCAM costs one
    forward per channel (ResNet50: 2048, 20 s here), so it runs on EfficientNet-B0 only; it
    was checked by hand on the other three."""
    torch.manual_seed(4)
    model = build_model(name, 3).eval()
    x = torch.randn(1, 3, 64, 64)
    for method in METHODS:
        if method == "scorecam" and name != "efficientnet_b0":
            continue
        maps = compute_cams(
            model, name, method, x[:, :, :32, :32] if method == "scorecam" else x, [1]
        )
        assert maps.dtype == np.float32 and np.isfinite(maps).all(), method
        assert maps.min() >= 0 and maps.max() <= 1, method
