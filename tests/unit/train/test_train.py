from dataclasses import MISSING, fields

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml

from tests.conftest import REPO
from xaimed.data.folds import assign_folds
from xaimed.data.ingest import ingest
from xaimed.data.preprocess import preprocess
from xaimed.models.checkpoint import load_checkpoint
from xaimed.models.inputs import normalize
from xaimed.models.precision import cpu_has_bfloat16
from xaimed.train import resume
from xaimed.train.fold import split_train_val, train_fold
from xaimed.train.trainer import Trainer, TrainSettings, augment, make_optimizer


@pytest.fixture
def store(folder_dataset, tmp_path):
    manifest = ingest(folder_dataset, dataset="tiny")
    manifest.to_parquet(tmp_path / "manifest.parquet")
    assign_folds(manifest, 3, seed=0).to_parquet(tmp_path / "folds.parquet")
    preprocess(manifest, 32, tmp_path / "images.npy", tmp_path / "masks.npy")
    return tmp_path


def _train(store, out, checkpoint_path=None, checkpoint_seconds=0, **overrides):
    settings = TrainSettings.with_defaults(
        **{
            "model": "resnet18",
            "epochs": 2,
            "batch_size": 6,
            "lr": 1e-3,
            "augment": {"hflip": True, "shift": 0.1},
            "device": "cpu",
            **overrides,
        },
    )
    history = train_fold(
        images_path=store / "images.npy",
        manifest_path=store / "manifest.parquet",
        folds_path=store / "folds.parquet",
        dataset="tiny",
        fold=1,
        settings=settings,
        model_path=out / "model.pt",
        history_path=out / "history.parquet",
        predictions_path=out / "predictions.parquet",
        checkpoint_path=checkpoint_path,
        checkpoint_seconds=checkpoint_seconds,
    )
    return history, pd.read_parquet(out / "predictions.parquet")


def test_train_fold_writes_the_contract_and_predicts_the_held_out_fold(store, tmp_path, caplog):
    caplog.set_level("INFO", logger="xaimed.train")
    history, predictions = _train(store, tmp_path / "a")
    folds = pd.read_parquet(store / "folds.parquet")
    assert sorted(predictions["image_id"]) == sorted(folds.loc[folds["fold"] == 1, "image_id"])
    assert (predictions["fold"] == 1).all()
    probs = predictions[["prob_healthy", "prob_lesion"]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (predictions["pred"] == probs.argmax(1)).all()
    assert (predictions["pred_name"] == np.array(["healthy", "lesion"])[predictions["pred"]]).all()
    assert list(history["epoch"]) == [1, 2] and history["best"].sum() == 1
    epoch_lines = [r.message for r in caplog.records if r.message.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "ETA" in epoch_lines[0] and "val_acc" in epoch_lines[0]

    # the saved model is the one that made the predictions
    model, meta = load_checkpoint(tmp_path / "a" / "model.pt")
    assert meta["best_epoch"] == int(history.loc[history["best"], "epoch"].iloc[0])
    assert meta["class_names"] == ["healthy", "lesion"] and meta["image_size"] == 32
    manifest = pd.read_parquet(store / "manifest.parquet")
    rows = manifest.index[manifest["image_id"].isin(predictions["image_id"])].to_numpy()
    images = torch.from_numpy(np.load(store / "images.npy")[rows])
    with torch.no_grad():
        again = torch.softmax(model(normalize(images)), 1).numpy()
    assert np.allclose(again, probs, atol=1e-5)


def test_keep_last_scores_the_validation_part_once_and_keeps_the_last_epoch(
    store, tmp_path, caplog
):
    caplog.set_level("INFO", logger="xaimed.train")
    best, _ = _train(store, tmp_path / "best", epochs=3)
    caplog.clear()
    last, predictions = _train(store, tmp_path / "last", epochs=3, keep="last")
    # the same training trajectory: skipping the per-epoch batch-norm pass changes no weights
    np.testing.assert_allclose(last["train_loss"], best["train_loss"], rtol=1e-6)
    assert last["val_loss"].isna().tolist() == [True, True, False]
    assert last["val_loss"].iloc[2] == pytest.approx(best["val_loss"].iloc[2], rel=1e-5)
    assert last.loc[last["best"], "epoch"].tolist() == [3]
    epoch_lines = [r.message for r in caplog.records if r.message.startswith("epoch ")]
    assert ["val_acc" in line for line in epoch_lines] == [False, False, True]
    assert any("after the last epoch only" in r.message for r in caplog.records)
    model, meta = load_checkpoint(tmp_path / "last" / "model.pt")
    assert meta["best_epoch"] == 3


def test_same_seed_on_cpu_gives_identical_outputs(store, tmp_path):
    _, first = _train(store, tmp_path / "a")
    _, second = _train(store, tmp_path / "b")
    pd.testing.assert_frame_equal(first, second)
    _, other = _train(store, tmp_path / "c", seed=1)
    assert not np.allclose(first["prob_lesion"], other["prob_lesion"])


def test_validation_part_is_stratified_and_disjoint():
    labels = np.array([0] * 20 + [1] * 10)
    train, val = split_train_val(labels, 0.2, seed=0)
    assert len(val) == 6 and set(train).isdisjoint(val) and len(train) + len(val) == 30
    assert np.bincount(labels[val]).tolist() == [4, 2]


def test_settings_merge_per_model_overrides_and_refuse_unknown_keys():
    training = {"lr": 0.01, "epochs": 3, "models": {"vgg16": {"lr": 0.0001}}}
    assert TrainSettings.with_defaults("vgg16", **training).lr == 0.0001
    assert TrainSettings.with_defaults("resnet50", **training).lr == 0.01
    with pytest.raises(ValueError, match="learning_rate"):
        TrainSettings.with_defaults("resnet50", learning_rate=0.1)
    with pytest.raises(ValueError, match="adamw"):
        make_optimizer(TrainSettings.with_defaults(model="m", optimizer="lion"), [torch.zeros(1)])


def test_augment_flips_exactly_when_asked():
    batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment(batch, generator, {}), batch)
    flipped = [augment(batch, torch.Generator().manual_seed(s), {"hflip": True}) for s in range(8)]
    outcomes = {torch.equal(f[0], batch[0].flip(-1)) for f in flipped}
    assert outcomes == {True, False}  # sometimes flipped, sometimes not
    for f in flipped:
        assert torch.allclose(f[0], batch[0], atol=1e-4) or torch.allclose(
            f[0], batch[0].flip(-1), atol=1e-4
        )


def test_training_stops_once_validation_loss_stalls_for_patience_epochs(store, tmp_path):
    history, _ = _train(store, tmp_path / "p", patience=1, epochs=8)
    best = int(history.loc[history["best"], "epoch"].iloc[0])
    assert best == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    if len(history) < 8:
        assert len(history) - best == 1  # stopped right after one epoch without a gain
    else:
        assert best >= 7  # never stalled


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_with_amp_writes_a_cpu_loadable_model(store, tmp_path):
    """The CUDA path (bf16 autocast, channels_last, images staged on the GPU) trains, and its
    model loads on the CPU and gives the held-out probabilities it reported (float32 there,
    within the TF32 rounding of cuDNN's convolutions)."""
    history, predictions = _train(store, tmp_path / "g", device="cuda", epochs=3)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    model, meta = load_checkpoint(tmp_path / "g" / "model.pt")
    images = np.load(store / "images.npy")
    manifest = pd.read_parquet(store / "manifest.parquet")
    rows = manifest.index[manifest["image_id"].isin(predictions["image_id"])]
    with torch.no_grad():
        probs = torch.softmax(model.eval()(normalize(torch.from_numpy(images[rows]))), 1)
    expected = predictions.set_index("image_id").loc[manifest["image_id"].iloc[rows]]
    np.testing.assert_allclose(
        probs.numpy(), expected[["prob_healthy", "prob_lesion"]].to_numpy(), atol=0.05
    )
    assert meta["fold"] == 1


def test_predefined_split_repeats_test_on_the_test_split_with_their_own_seed(store, tmp_path):
    manifest = pd.read_parquet(store / "manifest.parquet")
    test = manifest.index % 4 == 0
    folds = pd.DataFrame(
        {"image_id": manifest["image_id"], "fold": -1, "test": test, "excluded": False}
    )
    folds.to_parquet(store / "folds.parquet")
    _, predictions = _train(store, tmp_path / "a", epochs=1, seed=5, batch_size=5)
    assert sorted(predictions["image_id"]) == sorted(manifest.loc[test, "image_id"])
    _, meta = load_checkpoint(tmp_path / "a" / "model.pt")
    assert meta["seed"] == 5 + 1  # the repeat's seed: seed + fold (fold 1 here)


def _killed_in_epoch(monkeypatch, epoch: int) -> None:
    """Trainer.train_epoch raises in the given epoch, as a kill: no outputs, the checkpoint
    of the epochs before stays. monkeypatch.undo() trains normally again."""
    train_epoch = Trainer.train_epoch
    calls = []

    def killed(self, images, labels):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return train_epoch(self, images, labels)

    monkeypatch.setattr(Trainer, "train_epoch", killed)


def test_vgg_with_its_collapsed_head_resumes_exactly_where_it_was_stopped(
    store, tmp_path, monkeypatch, caplog
):
    """VGG11 at 32 px trains its head collapsed (xaimed.models.pooled_head): the checkpoint holds
    the collapsed state and its decay product, and a resumed run ends at the uninterrupted one."""
    caplog.set_level("INFO", logger="xaimed")

    def run(out, checkpoint_path=None):
        return _train(store, out, model="vgg11", epochs=3, lr=1e-4, checkpoint_path=checkpoint_path)

    run(tmp_path / "whole")
    assert "first linear layer on 512 distinct pooled values" in caplog.text

    last = tmp_path / "checkpoint" / "last.pt"
    _killed_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", last)
    monkeypatch.undo()
    assert last.is_file() and not (tmp_path / "resumed" / "model.pt").exists()
    run(tmp_path / "resumed", last)
    assert "resuming after epoch" in caplog.text

    for name in ("predictions.parquet", "history.parquet"):
        resumed = pd.read_parquet(tmp_path / "resumed" / name).drop(
            columns="seconds", errors="ignore"
        )
        whole = pd.read_parquet(tmp_path / "whole" / name).drop(columns="seconds", errors="ignore")
        pd.testing.assert_frame_equal(resumed, whole, check_exact=True)
    resumed, _ = load_checkpoint(tmp_path / "resumed" / "model.pt")
    whole, _ = load_checkpoint(tmp_path / "whole" / "model.pt")
    assert list(whole.state_dict()) == list(torchvision.models.vgg11().state_dict())
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_no_checkpoint_before_its_interval_and_the_interval_from_the_environment(
    store, tmp_path, monkeypatch
):
    """A job shorter than the checkpoint interval writes none (a kill then starts it over);
    XAIMED_CHECKPOINT_SECONDS sets the interval, and a bad value is named."""
    last = tmp_path / "checkpoint" / "last.pt"
    _killed_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _train(store, tmp_path / "a", last, checkpoint_seconds=3600)
    assert not last.exists()
    monkeypatch.undo()
    _killed_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _train(store, tmp_path / "a", last, checkpoint_seconds=0)
    assert last.is_file()

    monkeypatch.delenv(resume.INTERVAL_VARIABLE, raising=False)
    assert resume.interval() == resume.INTERVAL_SECONDS
    monkeypatch.setenv(resume.INTERVAL_VARIABLE, "0")
    assert resume.interval() == 0
    monkeypatch.setenv(resume.INTERVAL_VARIABLE, "a minute")
    with pytest.raises(ValueError, match="XAIMED_CHECKPOINT_SECONDS='a minute'"):
        resume.interval()


def test_trainer_runs_the_model_and_its_batches_channels_last():
    """Channels-last on the CPU too: with one thread PyTorch sends 1x1 convolutions of fewer
    than 16 images (a partial batch) to its slow reference kernel otherwise."""
    settings = TrainSettings.with_defaults(
        model="resnet18", batch_size=4, epochs=1, augment={}, device="cpu"
    )
    trainer = Trainer(settings, num_classes=2, steps=1)
    channels_last = torch.channels_last
    assert trainer.model.conv1.weight.is_contiguous(memory_format=channels_last)
    batch = trainer._inputs(torch.zeros(3, 3, 16, 16, dtype=torch.uint8))
    assert batch.is_contiguous(memory_format=channels_last)


def _dtypes_seen(model_name: str, amp: bool) -> dict[str, set[torch.dtype]]:
    """The dtypes of the logits in a training epoch and in the two kinds of prediction."""
    settings = TrainSettings.with_defaults(
        model=model_name, batch_size=4, epochs=1, augment={}, device="cpu", amp=amp
    )
    trainer = Trainer(settings, num_classes=2, steps=1)
    seen: list[torch.dtype] = []
    trainer.model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    dtypes = {}
    for part, run in {
        "train": lambda: trainer.train_epoch(images, torch.tensor([0, 1, 0, 1])),
        "validate": lambda: trainer.predict(images),
        "held_out": lambda: trainer.predict(images, mixed_precision=False),
    }.items():
        seen.clear()
        run()
        dtypes[part] = set(seen)
    return dtypes


@pytest.mark.skipif(not cpu_has_bfloat16(), reason="needs a CPU with native bfloat16")
def test_cpu_with_native_bfloat16_trains_in_it_where_that_is_faster():
    """bfloat16 autocast trains ResNet 1.5x faster on such a CPU and EfficientNet or MobileNet
    2x slower (bench/cpu_amp.py): the trainer takes it for the one only, `amp: false` turns it
    off, and the held-out predictions are float32 as the saved model runs everywhere else."""
    resnet = _dtypes_seen("resnet18", amp=True)
    assert resnet == {
        "train": {torch.bfloat16},
        "validate": {torch.bfloat16},
        "held_out": {torch.float32},
    }
    for model_name, amp in (("resnet18", False), ("mobilenet_v3_small", True)):
        dtypes = _dtypes_seen(model_name, amp)
        assert set().union(*dtypes.values()) == {torch.float32}, model_name


@pytest.mark.skipif(not cpu_has_bfloat16(), reason="needs a CPU with native bfloat16")
def test_a_run_requeued_on_a_cpu_without_bfloat16_starts_over(store, tmp_path, monkeypatch, caplog):
    """A checkpoint of bfloat16 epochs is not continued in float32 (a SLURM job requeued on
    another node): the run starts again, so one run never mixes the two."""
    caplog.set_level("INFO", logger="xaimed.train")
    last = tmp_path / "checkpoint" / "last.pt"
    _killed_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _train(store, tmp_path / "a", last)
    assert last.is_file() and "bfloat16 autocast" in caplog.text
    monkeypatch.undo()

    caplog.clear()
    monkeypatch.setattr("xaimed.models.precision.cpu_has_bfloat16", lambda: False)  # the other node
    history, _ = _train(store, tmp_path / "a", last)
    assert "float32" in caplog.text and "resuming" not in caplog.text
    assert list(history["epoch"]) == [1, 2]


def test_settings_defaults_are_the_schemas():
    # The schema is the only home of defaults: a setting left out takes the schema's value, and a
    # field of its own with a default would drift from the workflow's.
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    training = schema["properties"]["training"]["properties"]
    settings = TrainSettings.with_defaults("resnet18")
    for name in ("epochs", "batch_size", "optimizer", "lr", "val_fraction", "amp", "patience"):
        assert getattr(settings, name) == training[name]["default"], name
    assert (settings.seed, settings.device) == (
        schema["properties"]["seed"]["default"],
        schema["properties"]["device"]["default"],
    )
    assert all(f.default is MISSING and f.default_factory is MISSING for f in fields(TrainSettings))


def test_batchnorm_recalibration_never_feeds_a_single_image():
    """ResNet18 at 32 px ends in 1x1 maps; 2 * batch_size + 1 images in chunks of
    2 * batch_size left one image alone, which batch norm in training mode refuses."""
    settings = TrainSettings.with_defaults("resnet18", batch_size=2, device="cpu")
    trainer = Trainer(settings, num_classes=2, steps=1)
    images = torch.randint(0, 255, (5, 3, 32, 32), dtype=torch.uint8)
    trainer.recalibrate_batchnorm(images)
    norm = trainer.model.layer4[1].bn2
    assert norm.num_batches_tracked.item() == 2  # chunks of 3 and 2 images
    with pytest.raises(ValueError, match="at least 2 training images"):
        trainer.recalibrate_batchnorm(images[:1])
