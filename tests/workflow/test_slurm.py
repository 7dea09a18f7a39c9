"""Scale-out: the tiny config submitted through profiles/slurm to a real SLURM cluster (.ci/slurm-up
starts a one-node one here), and what the profile promises, checked by dry runs: GPUs for the
training and CAM jobs only, a changed model setting reruns only that model's jobs, and concurrent
local jobs never share a GPU."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import TINY, job_counts, snakemake
from xaimed.io import gpu_slots

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "slurm"
REQUIRE_SLURM = os.environ.get("XAIMED_REQUIRE_SLURM") == "1"
GPU_RULES = {"train", "cams", "scores", "generalise"}
# The Snakefile's localrules: run by Snakemake itself, never submitted.
LOCAL_RULES = {
    "phantom",
    "collect_explanations",
    "folds",
    "fold_metrics",
    "compare_models",
    "compare_methods",
    "classification_table",
    "explanation_tables",
    "cam_gallery",
    "rank_models",
    "cd_diagram",
    "data_summary",
    "data_examples",
    "classification_figures",
    "explanation_figures",
    "timing_figure",
    "generalisation_tables",
    "generalisation_figure",
    "quality_tables",
    "localisation_figure",
    "repeatability_figure",
}


def slurm_missing() -> str | None:
    """Why SLURM cannot take jobs here, or None when it can."""
    if shutil.which("sbatch") is None:
        return "no SLURM here: sbatch not found (`make slurm-up` starts a one-node cluster)"
    done = subprocess.run(
        ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        return f"SLURM does not answer: sinfo failed: {done.stderr.strip()} (`make slurm-up`)"
    if not re.search(r"^(idle|mix|alloc)$", done.stdout, re.MULTILINE):
        return f"no SLURM node takes jobs (sinfo states: {done.stdout.split()})"
    return None


@pytest.fixture(scope="session")  # session: checked before the session's tiny local run
def slurm() -> None:
    reason = slurm_missing()
    if reason and REQUIRE_SLURM:
        pytest.fail(f"XAIMED_REQUIRE_SLURM=1, but {reason}")
    if reason:
        pytest.skip(reason)


def slurm_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (finished jobs stay visible for MinJobAge)."""
    done = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"(\w+)=(\S*)", done.stdout))


# One training and its CAMs of one fold: every kind of cluster job (data, training, CAMs) and a
# local one (folds), in four waves of jobs, to stay within a few minutes.
SLURM_TARGETS = [
    "results/train/lesions/resnet18/fold0/predictions.parquet",
    "results/explain/lesions/resnet18/fold0/gradcampp/scores.parquet",
]


# The whole run takes about a minute or two; a run that has not finished by then is hung (as the
# plugin's default sacct status checks hung on a cluster without accounting: forever).
SLURM_RUN_SECONDS = 600


def run_bounded(workdir: Path, *args: str, seconds: int) -> str:
    """Snakemake's output, as conftest.snakemake, but failing (and killing it and its jobs) if it
    runs longer than ``seconds``."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    command += ["--cores", "2", *args]
    job = subprocess.Popen(
        command,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = job.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
        if submitted:
            subprocess.run(["scancel", *submitted], check=False)
        pytest.fail(f"Snakemake still running after {seconds} s:\n{output[-5000:]}")
    assert job.returncode == 0, output[-5000:]
    return output


@pytest.mark.workflow
def test_slurm_run_submits_every_cluster_job_and_equals_the_local_run(slurm, tiny_run, tmp_path):
    shutil.copytree(tiny_run / "data", tmp_path / "data")
    shutil.copy(tiny_run / "config.yaml", tmp_path / "config.yaml")
    # The profile as shipped, with the account filled in as README asks (the test cluster has no
    # accounting, so any name is taken), and nothing else changed: its status command must work
    # on this cluster without slurmdbd, and it must keep successful jobs' logs.
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    profile["default-resources"]["slurm_account"] = "xaimed"
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    start = time.monotonic()
    output = run_bounded(
        tmp_path,
        "--workflow-profile",
        str(tmp_path / "profile"),
        # The first status check after 1 s instead of 40, to keep the test short.
        "--slurm-init-seconds-before-status-checks",
        "1",
        *SLURM_TARGETS,
        seconds=SLURM_RUN_SECONDS,
    )
    print(f"SLURM run: {time.monotonic() - start:.0f} s")
    # The plugin's account guess (skipped with an account given) hands a shell pipe to sacct.
    assert "sacct: invalid option" not in output
    assert "status queries" not in output  # no fallback from squeue to sacct

    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.", output)
    jobs = {job_id: slurm_job(job_id) for job_id, _ in submitted}
    rules = collections.Counter(
        re.match(r"rule_(\w+?)_wildcards_", job["Comment"])[1] for job in jobs.values()
    )
    counts = job_counts(output)
    counts.pop("total")
    # Every job Snakemake ran that is not a local rule went through sbatch, and nothing else did.
    assert set(counts) == {"ingest", "folds", "preprocess", "train", "cams", "scores"}
    assert rules == {rule: n for rule, n in counts.items() if rule not in LOCAL_RULES}
    for job_id, log in submitted:
        job = jobs[job_id]
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        rule = re.match(r"rule_(\w+?)_wildcards_", job["Comment"])[1]
        assert ("gpu" in job.get("TresPerJob", "")) == (rule in GPU_RULES), job
        # Kept where README says, although the job succeeded: the job's own Snakemake log.
        assert Path(log).parent.is_relative_to(tmp_path / ".snakemake" / "slurm_logs"), log
        assert "Finished jobid: 0" in Path(log).read_text()

    # The same config gives the same data, folds, predictions, scores and maps as the local run.
    lesions = "results/data/lesions"
    for name in ("folds.parquet", "images.npy"):
        assert (tmp_path / lesions / name).read_bytes() == (tiny_run / lesions / name).read_bytes()
    predictions = "results/train/lesions/resnet18/fold0/predictions.parquet"
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / predictions), pd.read_parquet(tiny_run / predictions)
    )
    explained = "results/explain/lesions/resnet18/fold0/gradcampp"
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / explained / "scores.parquet").drop(columns="seconds"),
        pd.read_parquet(tiny_run / explained / "scores.parquet").drop(columns="seconds"),
    )
    with (
        np.load(tmp_path / explained / "cams.npz") as slurm_cams,
        np.load(tiny_run / explained / "cams.npz") as local_cams,
    ):
        assert sorted(slurm_cams) == sorted(local_cams)
        for key in set(local_cams) - {"seconds"}:  # the CAM stage's timing differs run to run
            np.testing.assert_array_equal(slurm_cams[key], local_cams[key])


def dry_run_jobs(output: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(rule, wildcards, resources) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"^(?:local)?rule ", output, flags=re.MULTILINE)[1:]:
        fields = dict(re.findall(r"^\s+(\w+): (.*)$", block, re.MULTILINE))
        parse = lambda text: dict(re.findall(r"(\w+)=([^,\s]+)", text))  # noqa: E731
        jobs.append(
            (block.split(":")[0], parse(fields.get("wildcards", "")), parse(fields["resources"]))
        )
    return jobs


def test_profile_asks_for_gpus_for_training_and_cams_only(tmp_path):
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    promised = {rule for rule, res in profile["set-resources"].items() if res.get("gpu")}
    assert promised == GPU_RULES

    output = snakemake(tmp_path, "--dry-run", "--workflow-profile", str(PROFILE), config="")
    jobs = dry_run_jobs(output)
    assert {rule for rule, _, _ in jobs} >= GPU_RULES | LOCAL_RULES | {"ingest", "preprocess"}
    for rule, _, resources in jobs:
        if rule == "all":
            continue
        assert (resources.get("gpu") == "1") == (rule in GPU_RULES), (rule, resources)
        # Every cluster job says how long and how much memory it needs.
        assert int(resources["runtime"]) > 0 and int(resources["mem_mb"]) > 0, (rule, resources)


@pytest.mark.workflow
def test_changing_one_models_learning_rate_reruns_only_its_jobs(tiny_run, tmp_path):
    changed = {**TINY, "training": {**TINY["training"], "models": {"resnet18": {"lr": 0.01}}}}
    # the study's own config edited (another config file into its results/ is refused), on a
    # copy: the shared run stays intact
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    (workdir / "config.yaml").write_text(yaml.safe_dump(changed))
    output = snakemake(workdir, "--dry-run")
    n_datasets, n_folds = len(TINY["datasets"]), TINY["folds"]
    counts = job_counts(output)
    assert counts.pop("total") == sum(counts.values())
    # resnet18's trainings, CAMs (with the baselines) and shift evaluations, and the tables and
    # figures that read them; no data job, nothing of efficientnet_b0.
    per_fold = n_datasets * n_folds
    per_dataset = [
        "collect_explanations",
        "cam_gallery",
        "classification_figures",
        "explanation_figures",
        "localisation_figure",
        "repeatability_figure",
        "cd_diagram",
        "generalisation_figure",
    ]
    once = [
        "fold_metrics",
        "compare_models",
        "classification_table",
        "compare_methods",
        "explanation_tables",
        "generalisation_tables",
        "quality_tables",
        "repeatability",
        "rank_models",
        "timing_figure",
        "all",
    ]
    assert counts == {
        "train": per_fold,
        "cams": per_fold,  # every method of a fold in one job
        "scores": per_fold,  # and every method's and baseline's scores in one
        "generalise": per_fold,
        **dict.fromkeys(per_dataset, n_datasets),
        **dict.fromkeys(once, 1),
    }
    for rule, wildcards, _ in dry_run_jobs(output):
        if rule in GPU_RULES:
            assert wildcards["model"] == "resnet18"
    assert "Params have changed since last execution" in output


HOLD_A_GPU = """
import json, sys, time
from pathlib import Path
from xaimed.io.runtime import select_device
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():  # start together, after the slow imports
    time.sleep(0.05)
device = select_device("auto")
start = time.monotonic()
time.sleep(1.0)
import os
print(json.dumps({"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": str(device),
                  "start": start, "end": time.monotonic()}))
"""


def test_concurrent_jobs_never_share_a_gpu(tmp_path):
    """Three jobs on a (fake) two-GPU machine whose user narrowed CUDA to GPUs 5 and 7: two run, one
    waits for a free GPU, and no two ever hold the same one at the same time."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "XAIMED_GPU_COUNT": "2",
        "XAIMED_GPU_SLOT_DIR": str(tmp_path / "slots"),
        "CUDA_VISIBLE_DEVICES": "5,7",
    }
    env.pop("SLURM_JOB_ID", None)
    go = tmp_path / "go"
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD_A_GPU, str(tmp_path / f"ready{i}"), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(3)):
        assert time.monotonic() < deadline and all(job.poll() is None for job in jobs)
        time.sleep(0.05)
    go.touch()
    held = []
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        held.append(json.loads(out))
    assert {h["gpu"] for h in held} == {"5", "7"}
    assert all(h["device"] == "cpu" for h in held)  # no real GPU here
    for i, a in enumerate(held):
        for b in held[i + 1 :]:
            overlap = a["start"] < b["end"] and b["start"] < a["end"]
            assert not (overlap and a["gpu"] == b["gpu"]), (a, b)
    # Two at a time: the third started only once one of the first two was done.
    starts = sorted(h["start"] for h in held)
    assert starts[2] >= min(h["end"] for h in held)


def test_no_gpu_is_claimed_inside_a_slurm_job(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIMED_GPU_COUNT", "2")
    monkeypatch.setenv("XAIMED_GPU_SLOT_DIR", str(tmp_path / "slots"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # SLURM's choice
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert gpu_slots.claim_gpu() is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert not (tmp_path / "slots").exists()

    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    try:
        assert gpu_slots.claim_gpu() == "0"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        assert gpu_slots.claim_gpu() is None  # one GPU per job: the first claim stands
    finally:
        gpu_slots.release_gpu()


def test_make_slurm_down_stops_the_cluster_and_slurm_up_restarts_it(slurm):
    """Last in this file: the cluster is stopped, then started again for whatever runs next."""
    down = subprocess.run(["make", "slurm-down"], cwd=REPO, capture_output=True, text=True)
    assert down.returncode == 0, down.stdout + down.stderr
    for daemon in ("slurmd", "slurmctld", "munged"):
        assert f"stopped {daemon}" in down.stdout
    assert slurm_missing() is not None  # sinfo no longer answers
    again = subprocess.run(["make", "slurm-down"], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "slurmctld was not running" in again.stdout, again.stdout
    up = subprocess.run(["make", "slurm-up"], cwd=REPO, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    assert slurm_missing() is None
