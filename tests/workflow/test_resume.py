"""Fault injection and determinism on real Snakemake runs of the tiny config.

A training job SIGKILLed mid-run (Snakemake and the job together, as when a node dies)
resumes from its last finished epoch and ends exactly where an uninterrupted run ends; a
second run from scratch gives byte-identical tables.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO, TINY, job_counts, snakemake, write_folder_dataset
from xaimed.train import resume
from xaimed.train.fold import train_fold
from xaimed.train.trainer import TrainSettings

pytestmark = pytest.mark.workflow

TRAIN = "results/train/brain_mri/resnet18/fold0"
EPOCHS = 4


def _resume_config() -> dict:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["models"] = config["explain"]["models"] = ["resnet18"]
    config["training"].update(
        epochs=EPOCHS, augment={"hflip": True, "shift": 0.1, "zoom": 0.1, "intensity": 0.1}
    )
    return config


def _start_snakemake(workdir: Path, target: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    # its own session, so that one killpg takes Snakemake and the training job together
    return subprocess.Popen(
        [*command, "--cores", "1", target],
        cwd=workdir,
        env={**os.environ, resume.INTERVAL_VARIABLE: "0"},  # a checkpoint every epoch
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_sigkilled_training_resumes_and_matches_an_uninterrupted_run(tiny_run, tmp_path):
    # the tiny run's data stage, reused: only training runs here
    workdir = tmp_path / "killed"
    for part in ("data", "results/phantoms", "results/data"):
        shutil.copytree(tiny_run / part, workdir / part)
    config = _resume_config()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    last = workdir / TRAIN / "checkpoint" / "last.pt"

    run = _start_snakemake(workdir, f"{TRAIN}/predictions.parquet")
    deadline = time.monotonic() + 300
    while not last.exists():  # at least one epoch finished and saved
        assert run.poll() is None, run.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (workdir / TRAIN / "predictions.parquet").exists(), "finished before the kill"
    saved = torch.load(last, weights_only=True)  # weights-only, unlike a pickled checkpoint
    assert 1 <= saved["epoch"] < EPOCHS
    assert resume.load(last, "another run") is None  # only its own run resumes it

    snakemake(workdir, "--unlock")  # a killed Snakemake leaves its lock behind
    output = snakemake(workdir, f"{TRAIN}/predictions.parquet")
    assert job_counts(output)["train"] == 1
    log = (workdir / "logs/train/brain_mri/resnet18/fold0.log").read_text()
    resumed_after = int(log.split("resuming after epoch ")[1].split()[0])
    assert saved["epoch"] <= resumed_after < EPOCHS
    assert not last.parent.exists()  # removed once the outputs are written

    # the same job, uninterrupted, in this process (one thread, as the rule's job)
    whole = tmp_path / "whole"
    data = workdir / "results/data/brain_mri"
    train_fold(
        images_path=data / "images.npy",
        manifest_path=data / "manifest.parquet",
        folds_path=data / "folds.parquet",
        dataset="brain_mri",
        fold=0,
        settings=TrainSettings.with_defaults(
            "resnet18", **config["training"], device="cpu", seed=config["seed"]
        ),
        model_path=whole / "model.pt",
        history_path=whole / "history.parquet",
        predictions_path=whole / "predictions.parquet",
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(workdir / TRAIN / "predictions.parquet"),
        pd.read_parquet(whole / "predictions.parquet"),
        check_exact=True,
    )
    killed = torch.load(workdir / TRAIN / "model.pt", weights_only=True)["state_dict"]
    uninterrupted = torch.load(whole / "model.pt", weights_only=True)["state_dict"]
    assert killed.keys() == uninterrupted.keys()
    assert all(torch.equal(killed[k], uninterrupted[k]) for k in killed)
    columns = ["epoch", "train_loss", "train_accuracy", "val_loss", "lr", "best"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(workdir / TRAIN / "history.parquet")[columns],
        pd.read_parquet(whole / "history.parquet")[columns],
        check_exact=True,
    )


def test_a_rerun_from_scratch_gives_byte_identical_tables(tiny_run, tmp_path):
    workdir = tmp_path / "again"
    write_folder_dataset(workdir / "data" / "lesions", {"benign": 6, "malignant": 8}, size=40)
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(workdir)
    tables = sorted(p.name for p in (tiny_run / "results" / "tables").iterdir())
    assert tables == sorted(p.name for p in (workdir / "results" / "tables").iterdir())
    # seconds per image are a measurement of this machine's speed, not a result
    compared = [t for t in tables if not t.startswith("xai_timing")]
    assert len(compared) >= 6
    for name in compared:
        first = (tiny_run / "results" / "tables" / name).read_bytes()
        assert first == (workdir / "results" / "tables" / name).read_bytes(), name
