"""Every bad input and damaged intermediate gets a clear message naming the key, file or
class (table-driven); nothing damaged is read as valid."""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import REPO, job_counts, snakemake, write_folder_dataset
from xaimed.config import names
from xaimed.config.check import check_config
from xaimed.config.schema import ConfigError, load_config_file, load_schema
from xaimed.data.checks import check_images
from xaimed.data.folds import assign_folds
from xaimed.data.ingest import ingest
from xaimed.io import integrity
from xaimed.models.build import build_model
from xaimed.models.checkpoint import load_checkpoint, save_checkpoint
from xaimed.train import resume
from xaimed.train.fold import split_train_val, train_fold
from xaimed.train.trainer import TrainSettings, _epoch_errors

SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _set(path: str, value):
    def change(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


CONFIG_CASES = {
    "unknown top-level key": (
        _set("fold", 3),
        r"fold: unknown key; allowed keys here: seed, folds, repeats, image_size",
    ),
    "unknown training key": (
        _set("training.learning_rate", 0.1),
        r"training.learning_rate: unknown key; allowed keys here: weights, epochs",
    ),
    "optimizer not offered": (
        _set("training.optimizer", "lion"),
        r"training.optimizer: 'lion' is not allowed; allowed: one of adamw, adam, sgd",
    ),
    "unknown CAM method lists the supported ones": (
        _set("explain.methods", ["gradcampp", "gradcam++"]),
        r"explain.methods\[1\]: 'gradcam\+\+' is not allowed; allowed: one of gradcam, "
        r"gradcampp, xgradcam, eigengradcam, layercam, ablationcam, scorecam, eigencam",
    ),
    "misspelt model gets the closest torchvision names": (
        _set("models", ["resnet50", "resnet5"]),
        r"models\[1\]: 'resnet5' is not a torchvision classifier; closest: resnet50, ",
    ),
    "misspelt model with a capital letter gets the closest names, not a pattern": (
        _set("models", ["resnet50", "resnet5O"]),
        r"\(1 problem\(s\)\):\n  - models\[1\]: 'resnet5O' is not a torchvision classifier; "
        r"closest: resnet50, ",
    ),
    "unknown model far from every name lists them all": (
        _set("models", ["resnet50", "xyzzy"]),
        r"models\[1\]: 'xyzzy' is not a torchvision classifier; allowed: alexnet, .*resnet50.*"
        r"vgg16",
    ),
    "per-model override of an unknown model": (
        _set("training.models", {"resnt50": {"lr": 0.1}}),
        r"training.models.resnt50: 'resnt50' is not a torchvision classifier; closest: resnet50",
    ),
    "misspelt explained model": (
        _set("explain.models", ["ResNet50"]),
        r"explain.models\[0\]: 'ResNet50' is not a torchvision classifier; closest: resnet50",
    ),
    "misspelt shifted model": (
        _set("shift.models", ["densenet12"]),
        r"shift.models\[0\]: 'densenet12' is not a torchvision classifier; closest: densenet121",
    ),
    "explained model that is not trained": (
        lambda c: (c.update(models=["resnet50"]), c["explain"].update(models=["densenet121"])),
        r"explain.models\[0\]: 'densenet121' is not trained; add it to models \(resnet50\) or "
        r"remove it from explain.models",
    ),
    "second explained model that is not trained": (
        lambda c: (
            c.update(models=["resnet50"]),
            c["explain"].update(models=["resnet50", "vgg16"]),
        ),
        r"\(1 problem\(s\)\):\n  - explain.models\[1\]: 'vgg16' is not trained",
    ),
    "shifted model that is not trained": (
        lambda c: (c.update(models=["resnet50"]), c["shift"].update(models=["vgg16"])),
        r"shift.models\[0\]: 'vgg16' is not trained; add it to models \(resnet50\) or remove it "
        r"from shift.models",
    ),
    "explained model without a CAM target layer": (
        lambda c: (c["models"].append("alexnet"), c["explain"].update(models=["alexnet"])),
        r"explain.models\[0\]: 'alexnet' has no CAM target layer registered; explainable "
        r"families .*densenet.*resnet",
    ),
    "CAM stability at a severity not evaluated": (
        _set("shift.severities", [5]),
        r"shift.cam_severity: 3 is not among shift.severities \[5\]; CAM "
        r"stability is measured at one of them: choose one, or set shift.cam_methods: \[\]",
    ),
    "unknown phantom": (
        _set("datasets.knee", {"phantom": "knee_mri"}),
        r"datasets.knee.phantom: 'knee_mri' is not allowed; allowed: one of brain_mri, "
        r"skin_lesion, chest_xray",
    ),
    "folder dataset without a path": (
        _set("datasets.mine", {"format": "imagefolder"}),
        r"datasets.mine.path: required key is missing",
    ),
    "dataset entry of neither kind": (
        _set("datasets.mine", {"path": "/data"}),
        r"datasets.mine: .* allowed: a mapping with keys phantom .* or a mapping with keys "
        r"format, path",
    ),
    "bad dataset name": (
        _set("datasets.my data", {"phantom": "brain_mri"}),
        r"datasets: name 'my data' is not allowed; names may contain only letters",
    ),
    "too few folds": (_set("folds", 1), r"folds: 1 is not allowed; allowed: an integer >= 2"),
    "wrong type": (
        _set("training.augment.zoom", "a lot"),
        r"training.augment.zoom: 'a lot' is not allowed; allowed: a number >= 0 and <= 0.5",
    ),
    "negative per-model learning rate": (
        _set("training.models.vgg16.lr", -1),
        r"training.models.vgg16.lr: -1 is not allowed; allowed: a number > 0",
    ),
    "max_images zero": (
        _set("explain.max_images", 0),
        r"explain.max_images: 0 is not allowed; allowed: null or an integer >= 1",
    ),
    "models missing": (lambda c: c.pop("models"), r"models: required key is missing"),
    "CAM target layer not in the model": (
        _set("explain.target_layers", {"resnet50": "layer5"}),
        r"explain.target_layers.resnet50: CAM target layer 'layer5' does not exist in model "
        r"'resnet50'; give the dotted path of one of its modules: conv1, bn1, relu, maxpool, "
        r"layer1, layer1.0, .*layer4.2, avgpool, fc \(or a deeper one, e.g. 'layer1.0.conv1'\)",
    ),
    "CAM target layer not a dotted path": (
        _set("explain.target_layers", {"resnet50": "layer3[-1]"}),
        r"explain.target_layers.resnet50: 'layer3\[-1\]' is not allowed; allowed: a string "
        r"matching",
    ),
    "CAM target layer of an unknown model": (
        _set("explain.target_layers", {"resnet5": "layer3"}),
        r"explain.target_layers.resnet5: 'resnet5' is not a torchvision classifier; closest: "
        r"resnet50",
    ),
    "explained model without a registered or chosen layer": (
        lambda c: (c["models"].append("alexnet"), c["explain"]["models"].append("alexnet")),
        r"explain.models\[1\]: 'alexnet' has no CAM target layer registered; .*; or choose "
        r"one in explain.target_layers.alexnet",
    ),
}


def test_a_chosen_layer_makes_any_classifier_explainable():
    config = copy.deepcopy(CONFIG)
    config["models"].append("alexnet")
    config["explain"]["models"].append("alexnet")
    config["explain"]["target_layers"] = {"alexnet": "features.4", "resnet50": "layer1"}
    check_config(config, SCHEMA)
    config["explain"]["target_layers"]["resnet50"] = "layer3..1"
    with pytest.raises(ConfigError, match=r"\(1 problem\(s\)\)"):  # the schema's, once
        check_config(config, SCHEMA)


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_bad_config_names_the_key_and_the_allowed_values(case):
    change, message = CONFIG_CASES[case]
    config = copy.deepcopy(CONFIG)
    change(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config, SCHEMA)


def test_the_shipped_configs_pass():
    # The schema's CAM methods against the registry: tests/unit/config/test_config.py.
    for name in ("config.yaml", "paper.yaml", "sites.yaml", "repeatability.yaml"):
        check_config(load_config_file(REPO / "config" / name), SCHEMA)


@pytest.mark.workflow
def test_snakemake_reports_a_bad_config_by_key_before_running_anything(tmp_path):
    config = copy.deepcopy(CONFIG)
    config["training"]["optimizer"] = "lion"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
        + ["--directory", str(tmp_path), "--configfile", str(tmp_path / "bad.yaml"), "-n"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "training.optimizer: 'lion' is not allowed; allowed: one of adamw, adam, sgd" in (
        done.stdout + done.stderr
    )


YAML_CASES = {
    "key given twice": (
        "seed: 0\nmodels: [resnet50]\nfolds: 2\nmodels: [vgg16]\n",
        r"bad.yaml, line 4, column 1: key 'models' is given twice \(first on line 2\)",
    ),
    "nested key given twice": (
        "training:\n  lr: 0.1\n  epochs: 3\n  lr: 0.01\n",
        r"bad.yaml, line 4, column 3: key 'lr' is given twice \(first on line 2\)",
    ),
    "unclosed list": (
        "models: [resnet50\nfolds: 2\n",
        r"bad.yaml, line 2, column 6: while parsing a flow sequence \(from line 1\); expected "
        r"',' or '\]', but got ':'",
    ),
    "tab indentation": (
        "training:\n\tlr: 0.1\n",
        r"bad.yaml, line 2, column 1: .*found character '\\t' that cannot start any token",
    ),
}


@pytest.mark.parametrize("case", YAML_CASES)
def test_a_yaml_mistake_names_the_file_and_line(case, tmp_path):
    text, message = YAML_CASES[case]
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config_file(tmp_path / "bad.yaml")


@pytest.mark.workflow
def test_snakemake_refuses_a_key_given_twice_and_a_broken_default_config_by_file_and_line(
    tmp_path,
):
    config = (REPO / "config/config.yaml").read_text()
    (tmp_path / "twice.yaml").write_text(config + "\nfolds: 3\n")
    output = snakemake(tmp_path, "-n", config="twice.yaml", ok=False)
    line = len(config.splitlines()) + 2
    assert f"twice.yaml, line {line}, column 1: key 'folds' is given twice (first on line" in (
        output
    )
    # No --configfile: the Snakefile's own config/config.yaml, here with an unclosed list.
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(config.replace("[resnet50]", "[resnet50", 1))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert re.search(
        r"config/config.yaml, line \d+, column \d+: while parsing a flow sequence \(from line "
        r"\d+\)",
        done.stdout + done.stderr,
    ), done.stderr[-3000:]


@pytest.mark.workflow
def test_a_default_model_list_outside_models_turns_its_stage_off_with_a_log_line(tmp_path):
    config = {"datasets": {"brain_mri": {"phantom": "brain_mri"}}, "models": ["resnet18"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(tmp_path, "-n")
    for stage in ("explain", "shift"):
        assert (
            f"{stage}.models (the default, resnet50) is not among models (resnet18): no {stage} "
            f"jobs; set {stage}.models to choose"
        ) in output
    counts = job_counts(output)
    assert counts["train"] == 5 and not {"cams", "scores", "generalise"} & set(counts)


def test_the_config_check_command_names_the_file_and_line_snakemake_does_not(tmp_path):
    """A --configfile that is not YAML is refused by Snakemake before the workflow runs, with
    'Config file is not valid JSON or YAML' only; the README's command says where."""
    command = [sys.executable, "-m", "xaimed.config.check", "config/config.yaml"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "1 config file(s) valid" in done.stdout, done.stderr
    (tmp_path / "bad.yaml").write_text("seed: 0\nmodels: [resnet50\n")
    done = subprocess.run(
        command[:-1] + [str(tmp_path / "bad.yaml")], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}, line 3, column 1: while parsing a flow sequence" in (
        done.stderr
    )
    (tmp_path / "bad.yaml").write_text("seed: 0\nmodels: [resnet5O]\n")
    done = subprocess.run(
        command[:-1] + [str(tmp_path / "bad.yaml")], capture_output=True, text=True
    )
    assert done.returncode == 1 and "closest: resnet50" in done.stderr


@pytest.mark.parametrize(
    "stale",
    ['{"classifiers": "resnet50", "cam_families": []}', '["resnet50"]', "{}", "not json"],
)
def test_a_wrong_model_name_cache_is_recomputed(stale, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))  # not the shared cache
    path = names._cache_path("model-names")
    assert path.is_relative_to(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stale)
    known, families = names._model_names()
    assert {"resnet50", "vgg16", "densenet121"} <= known and "resnet" in families
    assert json.loads(path.read_text())["classifiers"] == sorted(known)  # rewritten


# --------------------------------------------------------------------------- data


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _empty_dataset(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    return root


def _unreadable(root: Path) -> Path:
    write_folder_dataset(root, {"a": 3, "b": 3}, masks=False)
    (root / "a" / "broken.png").write_bytes(b"not an image")
    return root


def _all_empty(root: Path) -> Path:
    write_folder_dataset(root, {"a": 3, "b": 3}, masks=False)
    for path in root.rglob("*.png"):
        path.write_bytes(b"")
    return root


def _object_npz(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    images = np.empty(4, dtype=object)
    images[:] = [np.zeros((8, 8), np.uint8)] * 4
    np.savez(root / "set.npz", train_images=images, train_labels=np.array([[0], [1], [0], [1]]))
    return root / "set.npz"


DATA_CASES = {
    "missing dataset folder": (
        lambda root: ingest(root / "nowhere", dataset="mine"),
        FileNotFoundError,
        r"dataset 'mine': .*nowhere does not exist",
    ),
    "empty dataset": (
        lambda root: ingest(_empty_dataset(root), dataset="mine"),
        ValueError,
        r"dataset 'mine': no images found under",
    ),
    "single-class dataset": (
        lambda root: ingest(write_folder_dataset(root, {"only": 4}), dataset="mine"),
        ValueError,
        r"dataset 'mine': only one class \('only'\) found .* needs at least two",
    ),
    "more folds than the smallest class has images": (
        lambda root: assign_folds(
            ingest(write_folder_dataset(root, {"big": 9, "rare": 3}), dataset="mine"), 4
        ),
        ValueError,
        r"cannot make 4 stratified folds: class 'rare' has only 3 images; lower `folds`",
    ),
    "unreadable image file": (
        # the default (on_bad_image: skip) lists it in rejected.parquet; fail stops, naming it
        lambda root: ingest(_unreadable(root), dataset="mine", on_bad_image="fail"),
        Exception,
        r"broken\.png",
    ),
    "every image file empty": (
        lambda root: ingest(_all_empty(root), dataset="mine"),
        ValueError,
        r"no readable images in dataset 'mine': all 6 unreadable, e\.g\. .*\(empty file\)",
    ),
    "MedMNIST npz holding object arrays": (
        lambda root: ingest(_object_npz(root), dataset="mine", format="medmnist"),
        ValueError,
        r"no readable images in dataset 'mine': all 4 unreadable, e\.g\. .*set\.npz#train/0 "
        r".*Object arrays",
    ),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_gets_a_clear_error(case, tmp_path):
    run, kind, message = DATA_CASES[case]
    with pytest.raises(kind, match=message):
        run(tmp_path)


@pytest.fixture
def manifest(tmp_path):
    return ingest(write_folder_dataset(tmp_path / "data", {"a": 3, "b": 3}), dataset="mine")


def test_an_image_damaged_after_ingest_is_named(manifest):
    path = Path(manifest["path"].iloc[2])
    path.write_bytes(path.read_bytes()[:60])  # truncated
    with pytest.raises(ValueError, match=rf"dataset 'mine': cannot read image {path}"):
        check_images(manifest, 32, "mine")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) of the manifest are gone"):
        check_images(manifest, 32, "mine")


def test_small_images_and_mixed_channels_are_handled_and_reported(manifest, caplog):
    rgb = Path(manifest["path"].iloc[0])
    _png(rgb, np.zeros((40, 40, 3), dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="xaimed.data.checks"):
        found = check_images(manifest, 64, "mine")
    assert found == {"channels": {1: 5, 3: 1}, "smaller_than_input": 6}
    mixed = r"mixed channel counts \(5 image\(s\) with 1, 1 image\(s\) with 3\)"
    assert re.search(mixed, caplog.text)
    assert "smaller than image_size 64 and are upsampled" in caplog.text
    assert str(rgb) in caplog.text


# --------------------------------------------------------------------------- model files


def test_weights_that_are_not_a_state_dict_are_refused(tmp_path):
    model = build_model("resnet18", 2)
    pickle.dump({"model": "anything"}, (tmp_path / "pickled.pt").open("wb"))
    with pytest.raises(ValueError, match=r"pickled.pt is not a state dict that torch.load\("):
        build_model("resnet18", 2, str(tmp_path / "pickled.pt"))
    save_checkpoint(tmp_path / "model.pt", model, {"model": "resnet18", "num_classes": 2})
    with pytest.raises(ValueError, match=r"model.pt does not hold a state dict .*load_checkpoint"):
        build_model("resnet18", 2, str(tmp_path / "model.pt"))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain.pt is not an xaimed checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


# --------------------------------------------------------------------------- damaged files


def _flip(path: Path, where: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _table(path: Path) -> Path:
    integrity.write_parquet(pd.DataFrame({"x": np.arange(500), "y": np.linspace(0, 1, 500)}), path)
    return path


def _store(path: Path) -> Path:
    integrity.save_array(path, np.arange(3 * 3 * 32 * 32, dtype=np.uint8).reshape(3, 3, 32, 32))
    return path


def _model(path: Path) -> Path:
    save_checkpoint(path, build_model("resnet18", 2), {"model": "resnet18", "num_classes": 2})
    return path


def _cams(path: Path) -> Path:
    maps = np.random.default_rng(0).random((4, 32, 32)).astype(np.float16)
    with open(path, "wb") as handle:  # as explain writes them
        np.savez_compressed(handle, image_id=np.array(["a", "b", "c", "d"]), cams=maps)
    return path


DAMAGE_CASES = {
    "truncated parquet": ("t.parquet", _table, _truncate, integrity.read_parquet),
    "bit-flipped parquet": ("t.parquet", _table, _flip, integrity.read_parquet),
    "bit-flipped image store": ("images.npy", _store, _flip, integrity.load_array),
    "truncated model file": ("model.pt", _model, _truncate, load_checkpoint),
    "bit-flipped model file": ("model.pt", _model, _flip, load_checkpoint),
    "truncated CAM maps": ("cams.npz", _cams, _truncate, integrity.read_npz),
    "bit-flipped CAM maps": ("cams.npz", _cams, _flip, integrity.read_npz),
}


@pytest.mark.parametrize("case", DAMAGE_CASES)
def test_a_damaged_intermediate_is_never_read_and_is_moved_aside_for_rebuilding(case, tmp_path):
    name, write, damage, read = DAMAGE_CASES[case]
    path = write(tmp_path / name)
    read(path)  # intact: reads
    damage(path)
    with pytest.raises(integrity.CorruptFileError, match=rf"{path} is truncated or corrupt"):
        read(path)
    assert not path.exists() and path.with_name(name + ".corrupt").exists()


def _flip_a_stored_value(path: Path, column: str) -> None:
    """Flip a bit in the last byte of `column`'s dictionary page (its last distinct value):
    the file still reads, one value changed; only the page checksum can tell."""
    metadata = pq.ParquetFile(path).metadata
    row_group = metadata.row_group(0)
    (chunk,) = [
        row_group.column(i)
        for i in range(metadata.num_columns)
        if row_group.column(i).path_in_schema == column
    ]
    assert chunk.has_dictionary_page
    data = bytearray(path.read_bytes())
    data[chunk.data_page_offset - 1] ^= 0x01
    path.write_bytes(bytes(data))


EXPLAINED = "results/explain/brain_mri/resnet18/fold0/gradcampp/scores.parquet"
FOLD_METRICS = "results/stats/fold_metrics.parquet"


@pytest.mark.workflow
def test_damaged_tables_of_a_real_run_fail_their_readers_and_the_next_run_rebuilds_them(
    tiny_run, tmp_path
):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)  # a copy: the shared run stays intact
    before = {name: integrity.read_parquet(workdir / name) for name in (EXPLAINED, FOLD_METRICS)}
    for name in (EXPLAINED, FOLD_METRICS):  # damaged as by the disk: same modification time
        stat = (workdir / name).stat()
        if name == EXPLAINED:
            _flip_a_stored_value(workdir / name, "road")  # an explain job's scores
        else:
            _truncate(workdir / name)  # the statistics stage's per-fold metrics
        os.utime(workdir / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    unverified = pd.read_parquet(workdir / EXPLAINED)  # plain pandas reads a wrong ROAD score
    assert not unverified.equals(before[EXPLAINED])
    assert unverified.drop(columns="road").equals(before[EXPLAINED].drop(columns="road"))

    # a job that reads each (forced: to Snakemake nothing is out of date)
    output = snakemake(
        workdir,
        "--keep-going",
        "--forcerun",
        "collect_explanations",
        "classification_table",
        ok=False,
    )
    for name, log in (
        (EXPLAINED, "logs/explain/brain_mri/collect.log"),
        (FOLD_METRICS, "logs/report/classification_table.log"),
    ):
        message = f"CorruptFileError: {name} is truncated or corrupt"
        assert message in output and message in (workdir / log).read_text()
        assert not (workdir / name).exists()
        assert (workdir / (name + ".corrupt")).is_file()

    # No target named: the moved-aside files and everything made from them are rebuilt (every
    # intermediate is a target of `all`, so also the collection, whose readers are intact).
    output = snakemake(workdir)
    counts = job_counts(output)
    assert counts["scores"] == counts["fold_metrics"] == 1 and "cams" not in counts
    assert counts["collect_explanations"] == counts["classification_table"] == 1
    for name, frame in before.items():
        rebuilt = integrity.read_parquet(workdir / name)
        if name == EXPLAINED:  # seconds per batch are measured, not computed
            rebuilt, frame = rebuilt.drop(columns="seconds"), frame.drop(columns="seconds")
        pd.testing.assert_frame_equal(rebuilt, frame, check_exact=True)
    assert "Nothing to be done" in snakemake(workdir, "--dry-run")


def test_a_truncated_store_without_checksum_still_fails_loudly(tmp_path):
    path = _store(tmp_path / "images.npy")
    path.with_name("images.npy.sha256").unlink()
    _truncate(path)
    with pytest.raises(integrity.CorruptFileError, match=r"images.npy is truncated or corrupt"):
        integrity.load_array(path)


def test_a_damaged_training_checkpoint_is_ignored_not_resumed(tmp_path, caplog):
    path = tmp_path / "last.pt"
    resume.save(path, {"fingerprint": "run", "epoch": 1, "w": torch.arange(1000.0)})
    assert resume.load(path, "run")["epoch"] == 1
    _flip(path, 0.5)
    with caplog.at_level(logging.WARNING, logger="xaimed.train.resume"):
        assert resume.load(path, "run") is None
    assert "training from epoch 1" in caplog.text
    _truncate(path)
    assert resume.load(path, "run") is None


# --------------------------------------------------------------------------- training faults


def test_a_diverging_loss_stops_the_job_naming_dataset_model_fold_and_epoch(manifest, tmp_path):
    from xaimed.data.preprocess import preprocess

    manifest.to_parquet(tmp_path / "manifest.parquet")
    assign_folds(manifest, 2, seed=0).to_parquet(tmp_path / "folds.parquet")
    preprocess(manifest, 32, tmp_path / "images.npy", tmp_path / "masks.npy")
    settings = TrainSettings.with_defaults(
        model="resnet18",
        epochs=3,
        batch_size=2,
        lr=1e12,
        optimizer="sgd",
        device="cpu",
        scheduler="constant",
        val_fraction=0,
    )
    with pytest.raises(
        FloatingPointError,
        match=r"dataset 'mine', model 'resnet18', fold 0, epoch \d: the training loss is "
        r"(nan|inf).*lower the learning rate \(training.lr",
    ):
        train_fold(
            images_path=tmp_path / "images.npy",
            manifest_path=tmp_path / "manifest.parquet",
            folds_path=tmp_path / "folds.parquet",
            dataset="mine",
            fold=0,
            settings=settings,
            model_path=tmp_path / "model.pt",
            history_path=tmp_path / "history.parquet",
            predictions_path=tmp_path / "predictions.parquet",
        )


def test_a_class_too_small_for_the_validation_part_is_named_and_trains(tmp_path, caplog):
    """The issue's dataset: 4 classes, 17 images, 3 in the smallest, two folds. One fold
    trains on a single 'rare' image: scikit-learn's stratified split refused it, naming class
    index 3; the folds job now names it, and training keeps it out of the validation part."""
    from xaimed.data.preprocess import preprocess

    root = write_folder_dataset(tmp_path / "data", {"a": 5, "b": 5, "c": 4, "rare": 3}, size=32)
    manifest = ingest(root, dataset="mine")
    with caplog.at_level(logging.WARNING, logger="xaimed.data.folds"):
        folds = assign_folds(manifest, 2, seed=0)
    fit = manifest["label_name"][(folds["fold"] != 0).to_numpy()].value_counts()
    fold = 0 if fit["rare"] == 1 else 1
    assert re.search(
        rf"class 'rare' has 3 image\(s\): fold {fold} trains on 1, too few for the stratified "
        r"validation part",
        caplog.text,
    )
    assert "class 'a'" not in caplog.text
    manifest.to_parquet(tmp_path / "manifest.parquet")
    folds.to_parquet(tmp_path / "folds.parquet")
    preprocess(manifest, 32, tmp_path / "images.npy", tmp_path / "masks.npy")
    settings = TrainSettings.with_defaults(model="resnet18", epochs=1, batch_size=4, device="cpu")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xaimed.train"):
        train_fold(
            images_path=tmp_path / "images.npy",
            manifest_path=tmp_path / "manifest.parquet",
            folds_path=tmp_path / "folds.parquet",
            dataset="mine",
            fold=fold,
            settings=settings,
            model_path=tmp_path / "model.pt",
            history_path=tmp_path / "history.parquet",
            predictions_path=tmp_path / "predictions.parquet",
        )
    assert "class 'rare' has 1 training image; kept in training only" in caplog.text
    assert len(pd.read_parquet(tmp_path / "predictions.parquet")) == (folds["fold"] == fold).sum()


def test_the_validation_fallback_keeps_the_other_classes_stratified():
    labels = np.array([0] * 10 + [1] * 10 + [2])
    train, val = split_train_val(labels, 0.2, seed=0)
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 2, 0]
    assert sorted([*train, *val]) == list(range(21))
    assert split_train_val(labels[[0, 10, 20]], 0.2, seed=0)[1].size == 0  # none possible


def test_out_of_memory_names_the_batch_size_and_the_keys_to_lower():
    settings = TrainSettings.with_defaults(model="vgg16", batch_size=64)
    with (
        pytest.raises(
            MemoryError,
            match=r"dataset 'chest', model 'vgg16', fold 2, epoch 5: the GPU ran out of memory "
            r"at batch size 64; lower training.models.vgg16.batch_size \(this model only\) or "
            r"training.batch_size",
        ),
        _epoch_errors("chest", settings, 2, 5),
    ):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


# --------------------------------------------------------------------------- degenerate studies


def test_a_comparison_with_one_method_is_an_empty_table_that_says_so(tmp_path, caplog):
    from xaimed.report.tables import write_table
    from xaimed.stats.compare import compare_methods
    from xaimed.stats.quality import LOCALISATION_METRICS, compare_methods_on

    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        {"dataset": "d", "model": "resnet18", "method": "gradcampp", "pred_name": "glioma"}
        | {"fold": [0, 0, 1], "image_id": ["a", "b", "c"], "confidence_increase": [0.1, 0, 0.2]}
        | {metric: rng.random(3) for metric in LOCALISATION_METRICS}
    )
    for table in (compare_methods(scores), compare_methods_on(scores, LOCALISATION_METRICS)):
        assert table.empty
        with caplog.at_level(logging.WARNING, logger="xaimed.report.tables"):
            write_table(table, tmp_path / "t.csv", tmp_path / "t.html")
        assert "t.csv is empty: no pairs to compare: fewer than two methods" in caplog.text
        assert "(no pairs to compare" in (tmp_path / "t.md").read_text()
        assert "<p>(no pairs to compare" in (tmp_path / "t.html").read_text()
        assert pd.read_csv(tmp_path / "t.csv").empty


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs: writes that do not fit fail with the kernel's own ENOSPC."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


DISK_FULL_CASES = {  # what raised before: none said "disk full" or named the file
    "model file (torch: 'unexpected pos')": ("model.pt", _model),
    "image store (NumPy: 'N requested and M written')": (
        "images.npy",
        lambda path: integrity.save_array(path, np.zeros((1000, 1000), dtype=np.uint8)),
    ),
    "parquet table (pyarrow: errno 28)": (
        "t.parquet",
        lambda path: integrity.write_parquet(pd.DataFrame({"x": np.arange(100_000.0)}), path),
    ),
}


@pytest.mark.parametrize("case", DISK_FULL_CASES)
def test_a_full_disk_names_the_file_and_keeps_what_was_there(case, full_disk):
    name, write_big = DISK_FULL_CASES[case]
    path = full_disk / name
    (_table if name.endswith(".parquet") else _store)(path)  # a small earlier version
    earlier = path.read_bytes()
    with pytest.raises(OSError, match=rf"disk full \(ENOSPC\): cannot write {path} ") as error:
        write_big(path)
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == earlier  # the earlier version is untouched
    assert not [p.name for p in full_disk.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- class names

CLASS_NAME_CASES = {  # name -> what went wrong before
    "dollars (drawn as math text)": r"x$(id)$y",
    "dollars that are no valid math (the figure failed)": r"a$\frac$b",
    "newline (broke the Markdown row)": "two\nlines",
    "pipe, emphasis and HTML": "a|*b*|<i>c</i>|_d_",
    "CJK (empty boxes without a CJK font)": "肺炎",
}


@pytest.mark.parametrize("case", CLASS_NAME_CASES)
def test_a_class_name_is_drawn_and_tabulated_as_plain_text(case, tmp_path, caplog):
    from matplotlib import rcParams

    from xaimed.report import train_figures
    from xaimed.report.tables import to_markdown

    name = CLASS_NAME_CASES[case]
    predictions = pd.DataFrame({"model": "m", "label": [0, 0, 1, 1], "pred": [0, 1, 1, 1]}).assign(
        label_name=lambda d: d["label"].map({0: name, 1: "healthy"})
    )
    with caplog.at_level(logging.WARNING, logger="xaimed.report"):
        train_figures.confusion_matrices(predictions, tmp_path / "confusion.png", "mine")
    assert Image.open(tmp_path / "confusion.png").size[0] > 0
    assert rcParams["text.parse_math"] is False
    cjk_font = len(rcParams["font.sans-serif"]) > 1  # one of plots.CJK_FONTS is installed
    if name.isalpha() and not name.isascii() and not cjk_font:
        assert f"class {name!r}: no installed font draws" in caplog.text
    else:
        assert "no installed font draws" not in caplog.text

    table = to_markdown(predictions[["label_name", "label"]].drop_duplicates())
    rows = table.splitlines()
    assert len(rows) == 2 + 2  # header, rule, one row per class: no row broken
    for row in rows:  # three cell borders each: every other pipe is escaped
        assert len(re.findall(r"(?<!\\)\|", row)) == 3, row
    assert "$" not in table.replace(r"\$", "") and "<i>" not in table


def test_the_decompression_bomb_warning_names_the_file(tmp_path, monkeypatch):
    from xaimed.data.images import read_image
    from xaimed.data.preprocess import load_mask

    path = _png(tmp_path / "huge.png", np.zeros((300, 300), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 2)  # PIL's limit, lowered
    for read in (read_image, lambda p: load_mask(p, 32)):
        with pytest.warns(Image.DecompressionBombWarning, match=rf"{path}: Image size"):
            read(path)
