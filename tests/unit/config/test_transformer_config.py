"""The config check on vision transformers: ViT's patch size and map sizes, Swin's finer
stages, as the refusals name them."""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from tests.conftest import REPO
from xaimed.config import names
from xaimed.config.check import check_config
from xaimed.config.schema import ConfigError

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def transformer_config(image_size: int, **layers: str) -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["image_size"] = image_size
    config["models"] = ["vit_b_16", "swin_t"]
    config["training"]["models"] = {}
    config["explain"]["models"] = ["vit_b_16", "swin_t"]
    config["explain"]["target_layers"] = dict(layers)
    config["shift"]["models"] = []
    return config


def refusal(config: dict) -> str:
    with pytest.raises(ConfigError) as refused:
        check_config(config, SCHEMA)
    return str(refused.value)


def test_transformers_at_64px_pass_with_swin_at_its_third_stage():
    check_config(transformer_config(64, swin_t="features.5"), SCHEMA)


def test_swin_default_at_64px_is_refused_with_its_finer_stages_named():
    message = refusal(transformer_config(64))
    assert "(1 problem(s))" in message
    assert "explain.models[1]: CAM target layer 'norm'" in message
    assert "gives 2x2 maps at image_size 64" in message
    assert "features.5 (4x4), features.4 (4x4), features.3 (8x8)" in message


def test_vit_at_48px_is_refused_as_3x3_with_no_finer_layer():
    config = transformer_config(48, swin_t="features.3")  # 6x6 at 48 px
    message = refusal(config)
    assert "(1 problem(s))" in message
    assert "'encoder.layers.encoder_layer_11.ln_1'" in message and "3x3 maps" in message
    assert "none of its layers is finer at image_size 48: raise it" in message
    config["explain"]["allow_coarse"] = True
    check_config(config, SCHEMA)


def test_vit_image_size_off_its_patch_grid_is_named_once():
    config = transformer_config(72, swin_t="features.5")
    message = refusal(config)
    assert "(1 problem(s))" in message
    assert "models[0]: vit_b_16 cuts images into 16x16 patches" in message
    assert "got 72 (nearest: 64 or 80)" in message
    trained_only = copy.deepcopy(config)
    trained_only["explain"]["models"] = ["swin_t"]  # refused though not explained
    assert "models[0]: vit_b_16 cuts images" in refusal(trained_only)


def test_the_cached_model_facts_follow_the_registry_source(tmp_path, monkeypatch):
    """A family added to CAM_FAMILIES reaches the config check: the cache key hashes the
    source of xaimed/models/ (after the move into subpackages it hashed an empty folder, and
    the check kept refusing ViT with the registry's old families)."""
    assert (names.MODELS_SOURCE / "layers.py").is_file()
    models = shutil.copytree(names.MODELS_SOURCE, tmp_path / "models")
    monkeypatch.setattr(names, "MODELS_SOURCE", models)
    before = names._cache_path("model-names")
    (models / "layers.py").write_text((models / "layers.py").read_text() + "# a new family\n")
    assert names._cache_path("model-names") != before
