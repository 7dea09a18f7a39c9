"""Vision transformers' CAMs (ViT, Swin): every method the study uses equals plain
pytorch-grad-cam's with a reshape transform written here, as its ViT and Swin tutorials write
theirs, on tiny randomly initialised models of torchvision's own classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import pytorch_grad_cam
import torch
from pytorch_grad_cam.ablation_layer import AblationLayerVit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

from xaimed.data.folds import assign_folds
from xaimed.data.ingest import ingest
from xaimed.data.preprocess import preprocess
from xaimed.explain.cams import CAM_METHODS, FastAblationCAM, cam_grid, compute_cams
from xaimed.explain.settings import ExplainSettings, QualitySettings
from xaimed.explain.stage import explain_fold, score_fold
from xaimed.models.checkpoint import load_checkpoint
from xaimed.models.inputs import normalize
from xaimed.models.layers import reshape_transform, target_layer
from xaimed.train.fold import train_fold
from xaimed.train.trainer import TrainSettings

#: the gradient methods the study uses, GradCAM and AblationCAM
METHODS = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "eigengradcam": "EigenGradCAM",
    "layercam": "LayerCAM",
    "ablationcam": "AblationCAM",
}


def vit_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 1 + 16, C) -> (B, C, 4, 4): the class token left out, the 4x4 patches as a map."""
    return tokens[:, 1:, :].reshape(tokens.shape[0], 4, 4, -1).transpose(2, 3).transpose(1, 2)


def swin_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(2, 3).transpose(1, 2)  # (B, h, w, C) -> (B, C, h, w)


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=3,
    )  # fmt: skip
    model.heads.head.reset_parameters()  # torchvision zeroes it: every gradient would be 0
    return model.eval()


def tiny_swin() -> SwinTransformer:
    torch.manual_seed(0)
    return SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2],
        window_size=[4, 4], num_classes=3,
    ).eval()  # fmt: skip


#: name (the registry's family), model, image side, layer path (None: the default), the
#: reshape the library gets, the layer's (h, w)
CASES = {
    "vit default": ("vit_b_16", tiny_vit, 64, None, vit_tokens, (4, 4)),
    "vit block": ("vit_b_16", tiny_vit, 64, "encoder.layers.encoder_layer_0", vit_tokens, (4, 4)),
    "swin default": ("swin_t", tiny_swin, 128, None, swin_channels_last, (4, 4)),
    "swin stage": ("swin_t", tiny_swin, 64, "features.5", swin_channels_last, (4, 4)),
    "swin block": ("swin_t", tiny_swin, 64, "features.5.0", swin_channels_last, (4, 4)),
}


def library_cams(model, layer, method, x, targets, reshape):
    cls = getattr(pytorch_grad_cam, METHODS[method])
    extra = {"ablation_layer": AblationLayerVit()} if method == "ablationcam" else {}
    with cls(model=model, target_layers=[layer], reshape_transform=reshape, **extra) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in targets])


@pytest.mark.parametrize(
    ("case", "method"),
    # a chosen layer changes only AblationCAM's path (its fast tail after a block or stage)
    [(case, method) for case in CASES if CASES[case][3] is None for method in METHODS]
    + [(case, "ablationcam") for case in CASES if CASES[case][3] is not None],
)
def test_maps_equal_plain_pytorch_grad_cam_with_the_same_reshape(case, method):
    name, build, side, path, reshape, grid = CASES[case]
    model = build()
    torch.manual_seed(1)
    x = torch.randn(2, 3, side, side)
    targets = [2, 0]
    layer = target_layer(model, name, path)
    assert cam_grid(model, name, x, path) == grid
    got = compute_cams(model, name, method, x, targets, batch_size=2, layer_path=path)
    expected = library_cams(model, layer, method, x, targets, reshape)
    assert got.shape == expected.shape == (2, side, side)
    for cam in got:  # not a vacuous comparison of flat maps
        assert cam.min() == pytest.approx(0, abs=1e-6) and cam.max() > 0.99
    assert not np.allclose(got[0], got[1], atol=1e-3)
    assert np.abs(got - expected).max() <= 1e-4


def test_ablation_takes_the_fast_tail_only_where_it_is_exact():
    """Swin's norm and a whole ViT block: the tail; ViT's ln_1 sits inside the last block's
    residual: the library's AblationCAM with AblationLayerVit."""
    make = CAM_METHODS["ablationcam"].make
    swin, vit = tiny_swin(), tiny_vit()
    assert type(make(swin, target_layer(swin, "swin_t"), "swin_t")) is FastAblationCAM
    path = "encoder.layers.encoder_layer_1"
    block = make(vit, target_layer(vit, "vit_b_16", path), "vit_b_16", path)
    assert type(block) is FastAblationCAM
    library = make(vit, target_layer(vit, "vit_b_16"), "vit_b_16")
    assert type(library) is pytorch_grad_cam.AblationCAM
    assert isinstance(library.ablation_layer, AblationLayerVit)
    assert library.reshape_transform is reshape_transform(vit, "vit_b_16")


def test_reshape_only_where_the_layer_is_not_nchw():
    vit, swin = tiny_vit(), tiny_swin()
    assert reshape_transform(vit, "vit_b_16", "conv_proj") is None  # the patch embedding
    assert reshape_transform(swin, "swin_t", "features.0.0") is None  # its convolution
    assert reshape_transform(swin, "swin_t", "permute") is None
    x = torch.randn(1, 3, 64, 64)
    assert cam_grid(vit, "vit_b_16", x, "conv_proj") == (4, 4)
    assert cam_grid(swin, "swin_t", x, "features.0.0") == (16, 16)
    assert cam_grid(swin, "swin_t", x, "features.0") == (16, 16)
    attention = "encoder.layers.encoder_layer_0.self_attention"  # returns a tuple
    with pytest.raises(
        ValueError, match=f"layer {attention} of vit_b_16 gives no .* map: not a tensor"
    ):
        cam_grid(vit, "vit_b_16", x, attention)


@pytest.mark.parametrize(
    ("name", "layer_path", "grid", "methods", "head"),
    [
        # ViT-B/16's AblationCAM is the library's (768 forwards of the whole network per
        # image): the tiny models above check it
        (
            "vit_b_16",
            None,
            (4, 4),
            ["gradcampp", "xgradcam", "eigengradcam", "layercam"],
            "heads.head",
        ),
        # Swin's last stage is 2x2 at 64 px; features.5 (4x4) is what the config check offers
        ("swin_t", "features.5", (4, 4), ["gradcampp", "layercam", "ablationcam"], "head"),
    ],
)
def test_transformer_trains_and_is_explained_through_the_library(
    folder_dataset, tmp_path, name, layer_path, grid, methods, head
):
    """One epoch on a few 64 px images (no attempt to learn), then the cams and scores jobs'
    library calls on two held-out images: maps at the layer's grid, scores and the
    randomisation check for each method."""
    manifest = ingest(folder_dataset, dataset="tiny")
    manifest.to_parquet(tmp_path / "manifest.parquet")
    assign_folds(manifest, 3, seed=0).to_parquet(tmp_path / "folds.parquet")
    preprocess(manifest, 64, tmp_path / "images.npy", tmp_path / "masks.npy")
    train = TrainSettings.with_defaults(model=name, epochs=1, batch_size=8, device="cpu")
    paths = {k: tmp_path / f"{k}.parquet" for k in ("history", "predictions")}
    train_fold(
        images_path=tmp_path / "images.npy",
        manifest_path=tmp_path / "manifest.parquet",
        folds_path=tmp_path / "folds.parquet",
        dataset="tiny",
        fold=0,
        settings=train,
        model_path=tmp_path / "model.pt",
        history_path=paths["history"],
        predictions_path=paths["predictions"],
    )
    model, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["image_size"] == 64
    x = normalize(torch.from_numpy(np.load(tmp_path / "images.npy")[:1]))
    assert cam_grid(model, name, x, layer_path) == grid

    explain = ExplainSettings(
        batch_size=2, max_images=2, seed=0, device="cpu", layer_path=layer_path
    )
    quality = QualitySettings(
        road_percentiles=[20, 80], tolerance=0, top_k=10, faithfulness_steps=4,
        sanity_images=1, sanity_depths=[1],
    )  # fmt: skip
    out = {m: tmp_path / m for m in methods}
    args = (tmp_path / "model.pt", tmp_path / "images.npy", tmp_path / "manifest.parquet")
    args += (paths["predictions"],)
    explain_fold(*args, methods, [out[m] / "cams.npz" for m in methods], explain)
    scores = score_fold(
        *args,
        methods,
        [out[m] / "cams.npz" for m in methods],
        [out[m] / "scores.parquet" for m in methods],
        [out[m] / "sanity.parquet" for m in methods],
        explain,
        quality,
        masks_path=tmp_path / "masks.npy",
    )
    for method in methods:
        cams = np.load(out[method] / "cams.npz")["cams"]
        assert cams.shape == (2, 64, 64) and np.isfinite(cams).all()
        assert all(cam.max() > 0.99 and cam.min() < 0.01 for cam in cams), method
        rows = scores[scores["method"] == method]
        assert len(rows) == 2 and rows["confidence_increase"].notna().all()
        sanity = pd.read_parquet(out[method] / "sanity.parquet")
        # the head randomised first; Spearman is NaN where a map turns constant (so the SSIM)
        assert list(sanity["randomised"]) == [head] and sanity["ssim"].notna().all()


@pytest.mark.parametrize("method", ["ablationcam", "scorecam"])
def test_the_library_runs_without_progress_bars(capfd, method):
    """ViT's AblationCAM is the library's, whose tqdm bar per image would fill the rule's log."""
    model = tiny_vit()
    maps = compute_cams(model, "vit_b_16", method, torch.randn(1, 3, 64, 64), [1])
    assert maps.max() > 0.99
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
