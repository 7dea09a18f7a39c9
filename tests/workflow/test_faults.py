"""Faults of the machine and the files on real Snakemake runs of the tiny config: a corrupt or
deleted intermediate is rebuilt by a plain rerun with everything made from it; a job whose
Snakemake is killed stops."""

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
import yaml

from tests.conftest import REPO, TINY, job_counts, snakemake, write_folder_dataset
from xaimed.io import integrity

PREDICTIONS = "results/train/brain_mri/resnet18/fold0/predictions.parquet"


def _tables(workdir: Path) -> dict[str, bytes]:
    """The result tables that a rerun reproduces byte for byte (xai_timing measures seconds)."""
    tables = sorted((workdir / "results" / "tables").glob("*.*"))
    assert tables
    return {t.name: t.read_bytes() for t in tables if not t.name.startswith("xai_timing")}


@pytest.mark.workflow
def test_a_corrupt_or_deleted_intermediate_is_rebuilt_by_a_plain_rerun(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)  # a copy: the shared run stays intact
    path = workdir / PREDICTIONS
    before = integrity.read_parquet(path)
    data = bytearray(path.read_bytes())
    for where in (0.3, 0.31):  # two bytes in the data pages (the footer is at the end)
        data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))
    probe = tmp_path / "probe.parquet"
    probe.write_bytes(bytes(data))
    with pytest.raises(integrity.CorruptFileError):
        integrity.read_parquet(probe)

    # Newer than what was made from it: its readers rerun, and the first to read it fails.
    output = snakemake(workdir, ok=False)
    assert f"{PREDICTIONS} is truncated or corrupt" in output
    assert "the next `snakemake` run rebuilds it and everything made from it" in output
    assert not path.exists() and path.with_name(path.name + ".corrupt").is_file()

    # No target named: the training is rerun, and everything made from its predictions.
    counts = job_counts(snakemake(workdir))
    assert counts["train"] == counts["fold_metrics"] == 1
    assert counts["cams"] == counts["scores"] == counts["cam_gallery"] == 1
    assert "Nothing to be done" in snakemake(workdir, "--dry-run")
    pd.testing.assert_frame_equal(integrity.read_parquet(path), before, check_exact=True)
    assert _tables(workdir) == _tables(tiny_run)

    # Deleted by hand: intermediates whose readers' outputs all exist.
    for name in ("results/stats/fold_metrics.parquet", "results/explain/lesions/sanity.parquet"):
        (workdir / name).unlink()
    counts = job_counts(snakemake(workdir))
    assert counts["fold_metrics"] == counts["collect_explanations"] == 1
    assert counts["classification_table"] == counts["quality_tables"] == 1
    assert "train" not in counts and "cams" not in counts and "scores" not in counts
    assert "Nothing to be done" in snakemake(workdir, "--dry-run")
    assert _tables(workdir) == _tables(tiny_run)


def _children(pid: int) -> dict[int, str]:
    """Child pid -> command line, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found[int(entry.name)] = argv
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.mark.workflow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux's /proc")
def test_a_training_job_stops_when_its_snakemake_is_killed(tmp_path):
    workdir = tmp_path / "killed"
    write_folder_dataset(workdir / "data" / "lesions", {"benign": 6, "malignant": 8}, size=40)
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["models"] = config["explain"]["models"] = ["resnet18"]
    config["training"]["epochs"] = 2000  # far longer than the test waits
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/train/brain_mri/resnet18/fold0/model.pt"
    log = workdir / "logs/train/brain_mri/resnet18/fold0.log"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    runner = subprocess.Popen(
        [*command, "--cores", "1", target],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trainer = None
    try:
        deadline = time.monotonic() + 300  # the data stage first
        while not (log.is_file() and "epoch 1/2000" in log.read_text()):
            assert runner.poll() is None and time.monotonic() < deadline, "training never began"
            time.sleep(0.5)
        (trainer,) = [p for p, argv in _children(runner.pid).items() if "train.py" in argv]
        runner.send_signal(signal.SIGKILL)  # Snakemake only: its job is orphaned
        runner.wait()
        deadline = time.monotonic() + 20
        while _running(trainer) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(trainer), "the orphaned training job is still running"
    finally:
        if runner.poll() is None:
            runner.kill()
        if trainer is not None and _running(trainer):
            os.kill(trainer, signal.SIGKILL)
    assert f"Snakemake (pid {runner.pid}) is gone: stopping this job" in log.read_text()
    assert not (workdir / target).exists()
    assert not list((workdir / target).parent.glob(".*.tmp"))
    snakemake(workdir, "--unlock", target)  # what a user does next; the rerun then trains alone


CHILD = """
import sys, time
from xaimed.io.runtime import setup_logging
setup_logging(sys.argv[1])
print("ready", flush=True)
time.sleep(60)
"""
PARENT = """
import signal, subprocess, sys
if len(sys.argv) > 3:  # as `nohup snakemake ... &` from a script: SIGINT ignored, and inherited
    signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
child.wait()
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux's /proc")
@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_a_job_outside_snakemake_stops_with_its_parent(tmp_path, sigint):
    """Without a Snakemake above it (Snakemake's API in a notebook), a job watches its parent;
    also when it was started with SIGINT ignored (the interrupt would do nothing for 30 s)."""
    log = tmp_path / "job.log"
    ignore = ["ignore"] if sigint == "ignored" else []
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, str(log), *ignore], stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"
        assert _running(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(child)
        assert f"Snakemake (pid {parent.pid}) is gone: stopping this job" in log.read_text()
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)
