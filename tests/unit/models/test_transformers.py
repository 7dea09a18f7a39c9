"""Vision transformers as xaimed builds them: ViT for its image size, Swin at any size, their
heads, the layer registry's map sizes and finer layers, precision and the pooled head."""

from __future__ import annotations

import pytest
import torch
import torchvision

from xaimed.models.build import (
    _finish_pretrained,
    _pretrained_torchvision,
    build_model,
    image_size_problem,
)
from xaimed.models.layers import cam_map_sizes, finer_cam_layers
from xaimed.models.pooled_head import PooledHead
from xaimed.models.precision import cpu_has_bfloat16, trains_in_bfloat16


@pytest.mark.parametrize(("name", "head"), [("vit_b_16", "heads.head"), ("swin_t", "head")])
def test_transformer_builds_for_64px_with_the_study_head(name, head):
    torch.manual_seed(0)
    model = build_model(name, 3, image_size=64).eval()
    assert model.get_submodule(head).out_features == 3
    # fan-in initialised (torchvision zeroes ViT's head: every logit and CAM gradient 0)
    assert model.get_submodule(head).weight.abs().sum() > 0
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3) and not torch.allclose(logits[0], logits[1])
    assert PooledHead.find(model, 64) is None  # no replicating pool: trained as it is
    assert trains_in_bfloat16(name, "cpu") == cpu_has_bfloat16()
    assert trains_in_bfloat16(name, "cuda")


def test_vit_image_size_must_be_a_multiple_of_its_patch():
    assert image_size_problem("vit_b_16", 64) is None
    assert image_size_problem("swin_t", 70) is None and image_size_problem("resnet18", 70) is None
    problem = image_size_problem("vit_b_16", 72)
    assert "multiple of 16" in problem and "72" in problem and "64 or 80" in problem
    with pytest.raises(ValueError, match="multiple of 16"):
        build_model("vit_b_16", 2, image_size=72)
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("vit_b_32", 2, image_size=48)


def test_pretrained_vit_weights_fit_another_image_size():
    """ImageNet ViT weights are for 224 px: at 64 px the position embeddings are interpolated
    to the 4x4 patch grid (the class token's kept), every other weight is loaded as it is."""
    torch.manual_seed(0)
    state = torchvision.models.get_model("vit_b_16", weights=None).state_dict()
    model = _pretrained_torchvision("vit_b_16", state, image_size=64)
    got = model.state_dict()
    assert got["encoder.pos_embedding"].shape == (1, 1 + 16, 768)
    assert torch.equal(got["encoder.pos_embedding"][:, 0], state["encoder.pos_embedding"][:, 0])
    grid = state["encoder.pos_embedding"][0, 1:].reshape(14, 14, 768).permute(2, 0, 1)
    expected = torch.nn.functional.interpolate(
        grid[None], size=(4, 4), mode="bicubic", align_corners=True
    )[0]
    assert torch.allclose(got["encoder.pos_embedding"][0, 1:].T.reshape(768, 4, 4), expected)
    assert all(torch.equal(got[k], v) for k, v in state.items() if k != "encoder.pos_embedding")
    assert model.heads.head.out_features == 1000
    _finish_pretrained(model, "vit_b_16", 3)  # as build_model ends: the study's head
    assert model.heads.head.out_features == 3 and model.heads.head.in_features == 768
    assert torch.equal(model.encoder.pos_embedding, got["encoder.pos_embedding"])


def test_pretrained_swin_gets_the_study_head():
    swin = torchvision.models.get_model("swin_t", weights=None)
    backbone = {k: v.clone() for k, v in swin.state_dict().items() if not k.startswith("head.")}
    _finish_pretrained(swin, "swin_t", 3)
    assert swin.head.out_features == 3 and swin.head.in_features == 768
    assert all(torch.equal(swin.state_dict()[k], v) for k, v in backbone.items())


def test_map_sizes_and_finer_layers_of_the_transformers():
    vit = cam_map_sizes("vit_b_16", 64)
    assert vit["default"] == "encoder.layers.encoder_layer_11.ln_1"
    assert vit["sizes"][vit["default"]] == [4, 4]
    assert vit["sizes"]["conv_proj"] == [4, 4]  # NCHW, taken as it is
    assert cam_map_sizes("vit_b_16", 48)["sizes"]["encoder.layers.encoder_layer_11.ln_1"] == [3, 3]
    # one grid throughout: no layer is finer than the default
    assert finer_cam_layers(cam_map_sizes("vit_b_16", 48), vit["default"]) == []

    swin = cam_map_sizes("swin_t", 64)
    assert swin["default"] == "norm" and swin["sizes"]["norm"] == [2, 2]
    assert swin["sizes"]["features.0"] == [16, 16] and swin["sizes"]["features.5"] == [4, 4]
    assert swin["sizes"]["features.0.0"] == [16, 16]  # the patch embedding's NCHW convolution
    assert finer_cam_layers(swin, "norm") == ["features.5", "features.4", "features.3"]
