"""xaimed.explain.stage end to end on a tiny synthetic fold."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch

from xaimed.explain.cams import compute_cams
from xaimed.explain.settings import ExplainSettings, QualitySettings
from xaimed.explain.stage import SCORE_COLUMNS, explain
from xaimed.models.build import build_model
from xaimed.models.checkpoint import save_checkpoint
from xaimed.models.inputs import IMAGENET_MEAN, IMAGENET_STD, normalize, to_device

SIZE = 64
#: the tiny fold's settings (the schema's defaults but a smaller batch and the CPU)
SETTINGS = {"batch_size": 4, "max_images": None, "seed": 0, "device": "cpu", "layer_path": None}
QUALITY = {
    "road_percentiles": [20, 40, 60, 80],
    "tolerance": 0,
    "top_k": 10,
    "faithfulness_steps": 10,
    "sanity_images": 4,
    "sanity_depths": [1, "all"],
}


def settings(**changes) -> tuple[ExplainSettings, QualitySettings]:
    """The explain and quality settings of the tiny fold, with ``changes`` to either."""
    explain = {name: changes.pop(name) for name in list(changes) if name in SETTINGS}
    return ExplainSettings(**SETTINGS | explain), QualitySettings(**QUALITY | changes)


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    """8 images in the manifest, 6 of them (fold 1) in the predictions, 2 classes."""
    root = tmp_path_factory.mktemp("fold")
    torch.manual_seed(0)
    # in the memory format explain runs it in (load_checkpoint), so direct recomputations in
    # the tests do the same arithmetic
    model = to_device(build_model("resnet18", 2).eval(), "cpu")
    meta = {
        "model": "resnet18",
        "num_classes": 2,
        "class_names": ["benign", "malignant"],
        "image_size": SIZE,
        "dataset": "toy",
        "fold": 1,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "best_epoch": 0,
    }
    save_checkpoint(root / "model.pt", model, meta)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 3, SIZE, SIZE), dtype=np.uint8)
    np.save(root / "images.npy", images)
    ids = [f"img{i:02d}" for i in (5, 3, 7, 0, 1, 6, 2, 4)]  # manifest order != id order
    labels = [0, 1, 1, 0, 1, 0, 0, 1]
    names = np.array(meta["class_names"])
    pd.DataFrame(
        {"image_id": ids, "label": labels, "label_name": names[labels], "split": "x"}
    ).to_parquet(root / "manifest.parquet")
    chosen = [6, 0, 2, 3, 7, 4]  # manifest rows in the held-out fold, shuffled
    preds = [1, 0, 1, 1, 0, 0]
    predictions = pd.DataFrame(
        {
            "image_id": [ids[r] for r in chosen],
            "fold": 1,
            "label": [labels[r] for r in chosen],
            "label_name": [names[labels[r]] for r in chosen],
            "pred": preds,
            "pred_name": names[preds],
            "prob_benign": 0.5,
            "prob_malignant": 0.5,
        }
    )
    predictions.to_parquet(root / "predictions.parquet")
    return root, model, images, ids, predictions


def _run(root, out, method="gradcam", **changes):
    return explain(
        root / "model.pt",
        root / "images.npy",
        root / "manifest.parquet",
        root / "predictions.parquet",
        method,
        out / "scores.parquet",
        out / "cams.npz",
        *settings(**changes),
    )


def test_explain_end_to_end(fold, tmp_path, caplog):
    root, model, images, ids, predictions = fold
    caplog.set_level(logging.INFO)
    returned = _run(root, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["cams.npz", "scores.parquet"]  # no temp files

    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert list(scores.columns) == SCORE_COLUMNS
    pd.testing.assert_frame_equal(scores, returned)
    expected_ids = sorted(predictions["image_id"])
    assert list(scores["image_id"]) == expected_ids
    byid = predictions.set_index("image_id").loc[expected_ids]
    assert (scores["pred"].to_numpy() == byid["pred"].to_numpy()).all()
    assert (scores["correct"] == (byid["label"].to_numpy() == byid["pred"].to_numpy())).all()
    assert scores["correct"].dtype == bool and 0 < scores["correct"].sum() < 6
    assert set(scores["dataset"]) == {"toy"} and set(scores["model"]) == {"resnet18"}
    assert set(scores["fold"]) == {1} and set(scores["method"]) == {"gradcam"}
    assert (scores["seconds"] > 0).all() and scores["road"].notna().all()
    assert "images done 4/6" in caplog.text and "images done 6/6" in caplog.text
    assert "gradcam: images scored 4/6" in caplog.text

    with np.load(tmp_path / "cams.npz") as saved:
        assert saved["image_id"].dtype.kind == "U" and list(saved["image_id"]) == expected_ids
        assert saved["cams"].dtype == np.float32 and saved["cams"].shape == (6, SIZE, SIZE)
        np.testing.assert_array_equal(saved["target"], scores["pred"].to_numpy())
        # the CAM step's timing and signs reach the scores as stored
        np.testing.assert_array_equal(saved["seconds"], scores["seconds"])
        np.testing.assert_array_equal(saved["sign_flipped"], scores["sign_flipped"])
        stored = saved["cams"]

    # values: CAMs of the right images, and confidence increase by hand with softmax
    rows = [ids.index(i) for i in expected_ids]
    x = normalize(torch.from_numpy(images[rows]))
    targets = scores["pred"].tolist()
    direct = compute_cams(model, "resnet18", "gradcam", x, targets)
    np.testing.assert_allclose(stored, direct, atol=1e-6)
    with torch.no_grad():
        before = torch.softmax(model(x).double(), 1)[torch.arange(6), targets]
        after = torch.softmax(model(x * torch.from_numpy(direct)[:, None]).double(), 1)
        after = after[torch.arange(6), targets]
    np.testing.assert_allclose(scores["confidence_increase"], (after - before).numpy(), atol=1e-5)


def test_explain_is_reproducible_and_max_images(fold, tmp_path):
    root = fold[0]
    first = _run(root, tmp_path / "a", method="ablationcam")
    second = _run(root, tmp_path / "b", method="ablationcam")
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), second.drop(columns="seconds"))
    with np.load(tmp_path / "a" / "cams.npz") as a, np.load(tmp_path / "b" / "cams.npz") as b:
        np.testing.assert_array_equal(a["cams"], b["cams"])
    part = _run(root, tmp_path / "c", method="ablationcam", max_images=3)
    # a capped run takes the predicted classes in turn, in image_id-hash order within each
    hashed = first.assign(key=pd.util.hash_pandas_object(first["image_id"], index=False))
    by_class = [list(g.sort_values("key")["image_id"]) for _, g in hashed.groupby("pred")]
    turns = [ids[k] for k in range(max(map(len, by_class))) for ids in by_class if k < len(ids)]
    assert list(part["image_id"]) == sorted(turns[:3])
    assert part["pred"].nunique() == min(3, first["pred"].nunique())
    cols = ["image_id", "confidence_increase", "road"]  # per-image seeding: same values
    expected = first[cols].set_index("image_id").loc[part["image_id"]].reset_index()
    pd.testing.assert_frame_equal(part[cols], expected, atol=1e-6)


def test_explain_refuses_mismatched_inputs(fold, tmp_path):
    root = fold[0]
    with pytest.raises(ValueError, match="unknown CAM method"):
        _run(root, tmp_path, method="guidedbackprop")
    other = pd.read_parquet(root / "predictions.parquet").assign(fold=2)
    other.to_parquet(tmp_path / "predictions.parquet")
    for name in ("model.pt", "images.npy", "manifest.parquet"):
        os.symlink(root / name, tmp_path / name)
    with pytest.raises(ValueError, match="fold"):
        _run(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_explain_on_cuda_matches_cpu(fold, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    root = fold[0]
    args = (
        root / "model.pt",
        root / "images.npy",
        root / "manifest.parquet",
        root / "predictions.parquet",
        "gradcam",
    )
    cpu = explain(*args, tmp_path / "c.parquet", tmp_path / "c.npz", *settings(batch_size=16))
    gpu = explain(
        *args, tmp_path / "g.parquet", tmp_path / "g.npz", *settings(batch_size=16, device="cuda")
    )
    pd.testing.assert_frame_equal(
        cpu.drop(columns=["confidence_increase", "road", "seconds"]),
        gpu.drop(columns=["confidence_increase", "road", "seconds"]),
    )
    np.testing.assert_allclose(gpu["confidence_increase"], cpu["confidence_increase"], atol=1e-5)
    np.testing.assert_allclose(gpu["road"], cpu["road"], atol=1e-3)
    with np.load(tmp_path / "c.npz") as c, np.load(tmp_path / "g.npz") as g:
        np.testing.assert_allclose(g["cams"], c["cams"], atol=2e-3)


@pytest.mark.parametrize("size", [32, 48])
def test_config_refuses_a_cam_layer_coarser_than_4x4(size):
    """ResNet50's layer4 at 32 px (1x1: every CAM constant) and 48 px (2x2) is refused with
    the map size and a finer layer named; the sizes are those of a real forward."""
    import copy

    import yaml

    from tests.conftest import REPO
    from xaimed.config.check import check_config
    from xaimed.config.schema import ConfigError

    model = build_model("resnet50", 2).eval()
    seen = {}
    for name in ("layer2", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, tuple(out.shape[-2:]))
        )
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    coarse, fine = seen["layer4"], seen["layer2"]
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["image_size"] = size
    config["explain"]["target_layers"] = {"resnet50": "layer4"}
    schema = REPO / "workflow/schemas/config.schema.yaml"
    with pytest.raises(ConfigError) as refused:
        check_config(config, schema)
    message = str(refused.value)
    assert "(1 problem(s))" in message
    assert (
        f"'layer4' of 'resnet50' gives {coarse[0]}x{coarse[1]} maps at image_size {size}" in message
    )
    assert f"layer2 ({fine[0]}x{fine[1]})" in message and "allow_coarse" in message
    default = copy.deepcopy(config)
    default["explain"]["target_layers"] = {}  # the registry's layer4.2 is as coarse
    with pytest.raises(ConfigError, match=rf"explain.models\[0\]: .*'layer4.2'.*{coarse[0]}x"):
        check_config(default, schema)
    config["explain"]["allow_coarse"] = True
    check_config(config, schema)
    config["explain"].pop("allow_coarse")
    config["explain"]["target_layers"] = {"resnet50": "layer2"}
    check_config(config, schema)


def test_the_demo_dry_run_names_the_explained_layer(tmp_path):
    from tests.conftest import snakemake

    output = snakemake(
        tmp_path,
        "-n",
        "results/explain/brain_mri/resnet50/fold0/baselines/scores.parquet",
        config="",
    )
    assert "CAM target layer of resnet50: layer1" in output


def test_constant_maps_are_counted_logged_and_tabled(fold, tmp_path, caplog):
    """A 1x1 target layer (avgpool) makes every map constant: each is flagged in the scores,
    the explain log names dataset, model, fold, method and the count, and the confidence
    table counts them per class; the default layer's maps are not flagged."""
    from xaimed.report.tables import confidence_increase_table

    root = fold[0]
    caplog.set_level(logging.INFO, logger="xaimed.explain.stage")
    coarse = _run(root, tmp_path / "coarse", layer_path="avgpool")
    with np.load(tmp_path / "coarse" / "cams.npz") as saved:
        stored = saved["cams"].astype(np.float32).reshape(6, -1)
    assert (stored.max(axis=1) - stored.min(axis=1) == 0).all()  # what avgpool really gives
    assert coarse["constant_map"].dtype == bool and coarse["constant_map"].all()
    assert "toy/resnet18 fold 1, gradcam: 6 of 6 maps are constant" in caplog.text
    table = confidence_increase_table(coarse)
    counts = coarse.groupby("pred_name").size()
    assert table.set_index("class")["n_constant_maps"].to_dict() == counts.to_dict()

    caplog.clear()
    fine = _run(root, tmp_path / "fine")
    with np.load(tmp_path / "fine" / "cams.npz") as saved:
        stored = saved["cams"].astype(np.float32).reshape(6, -1)
    spread = stored.max(axis=1) - stored.min(axis=1)
    np.testing.assert_array_equal(fine["constant_map"], spread <= 1e-3)
    assert not fine["constant_map"].any() and "maps are constant" not in caplog.text
    assert (confidence_increase_table(fine)["n_constant_maps"] == 0).all()


def test_settings_come_from_the_config_with_the_schemas_defaults_only():
    """Both settings objects are built from the validated config, whose schema is the only home
    of their defaults: no field has a default, a default config gives the schema's values, and
    a scoring setting changes the scores' params but not the CAMs'."""
    import copy
    import dataclasses

    import yaml
    from snakemake.utils import validate

    from tests.conftest import REPO

    for cls in (ExplainSettings, QualitySettings):
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING, (cls.__name__, field.name)
            assert field.default_factory is dataclasses.MISSING, (cls.__name__, field.name)
    schema_path = REPO / "workflow/schemas/config.schema.yaml"
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config.pop("quality", None)
    config["explain"].pop("road_percentiles", None)
    validate(config, str(schema_path))
    schema = yaml.safe_load(schema_path.read_text())["properties"]
    quality = schema["quality"]["properties"]
    assert QualitySettings.from_config(config) == QualitySettings(
        road_percentiles=schema["explain"]["properties"]["road_percentiles"]["default"],
        tolerance=quality["tolerance"]["default"],
        top_k=quality["top_k"]["default"],
        faithfulness_steps=quality["faithfulness_steps"]["default"],
        sanity_images=quality["sanity"]["properties"]["images"]["default"],
        sanity_depths=quality["sanity"]["properties"]["stages"]["default"],
    )
    explain = ExplainSettings.from_config(config, "resnet50")
    assert explain.layer_path == config["explain"]["target_layers"]["resnet50"]
    assert ExplainSettings.from_config(config, "vgg16").layer_path is None  # registry default
    changed = copy.deepcopy(config)
    changed["quality"]["tolerance"] += 1
    changed["explain"]["road_percentiles"] = [50]
    assert ExplainSettings.from_config(changed, "resnet50").params() == explain.params()
    assert (
        QualitySettings.from_config(changed).params()
        != QualitySettings.from_config(config).params()
    )
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        dataclasses.replace(explain, batch_size=0)
