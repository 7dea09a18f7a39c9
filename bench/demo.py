"""The demo end to end (issue 7, benchmark 3): `snakemake --cores N` on the default config from
empty results in a temporary directory, where its core-seconds went, and the demo's targets.

The quiet wall time it predicts is the run's CPU seconds over the cores, as the demo's jobs run
one thread each: all of Snakemake's processes together, exact (`getrusage` of the finished
run, saved as `demo-cpu.json` in the run's directory), which a busy shared host inflates far
less than wall seconds. Per stage it prints the jobs' wall seconds from the Snakemake benchmark
file every rule writes, and their CPU seconds: exact where the job's log has them (every
xaimed job logs its CPU seconds at exit), else the benchmark's `cpu_time`, a lower bound only,
as Snakemake samples a job every 0.5 s for its first 15 s and then every 30 s, and keeps the
last sample before the job ends (a 70 s training job can lose 25 s).
Start-up is the cost of the jobs' Python imports: those of a torch job (training, CAMs,
generalisation) and of a small job (data, statistics, report), each measured in a fresh
interpreter, times the number of such jobs. "Between jobs" is the core-seconds no job held
(Snakemake's own scheduling, and cores left idle while the last jobs finish).

Then the demo's targets (issues 18 and 22): the lowest held-out accuracy per model (mean over
folds, as the classification table; floor 0.80), and the pointing game on brain_mri per method
against the centre baseline (at least one method >= 0.8 and above it).

`--float32` trains in float32 as on a CPU without native bfloat16 (a copy of the config with
`training.amp: false`; the CAM and later stages run float32 on every CPU anyway).

    python bench/demo.py                  # takes the demo's wall time: minutes
    python bench/demo.py --cores 2 --keep /tmp/demo
    python bench/demo.py --cores 2 --float32
    python bench/demo.py --summarise /tmp/demo --wall 600   # the figures of a finished run
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = {
    "train": "training",
    "cams": "CAMs",
    "scores": "CAM scores",
    "generalise": "generalisation",
}
TORCH_RULES = {"train", "cams", "scores", "generalise"}
# and, as a job does after them, their objects frozen out of the collector (the exit's share)
FREEZE = "; from xaimed.io.runtime import freeze_imports; freeze_imports()"
TORCH_IMPORTS = (
    "import xaimed.explain.stage, xaimed.train.fold, xaimed.shift.generalise, snakemake.script"
    + FREEZE
)
SMALL_IMPORTS = (
    "import xaimed.report.style, xaimed.report.tables, xaimed.stats.compare, snakemake.script"
    + FREEZE
)
ACCURACY_FLOOR = 0.80
POINTING_FLOOR = 0.80
CPU_FILE = "demo-cpu.json"


def import_seconds(code: str) -> float:
    """A fresh interpreter running ``code`` (the imports of one kind of job), best of 3."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def job_table(workdir: Path) -> pd.DataFrame:
    """One row per job: its rule, stage, model (training jobs), wall and CPU seconds."""
    rows = []
    for path in (workdir / "benchmarks").rglob("*.tsv"):
        parts = path.relative_to(workdir / "benchmarks").parts
        bench = pd.read_csv(path, sep="\t").iloc[0]
        logged = job_cpu_seconds(workdir / "logs" / Path(*parts).with_suffix(".log"))
        rows.append(
            {
                "rule": parts[0],
                "stage": STAGES.get(parts[0], "data, statistics, report"),
                "model": parts[2] if parts[0] == "train" else "",
                "s": float(bench["s"]),
                "cpu_s": float(bench["cpu_time"]) if logged is None else logged,
                "cpu_exact": logged is not None,
            }
        )
    return pd.DataFrame(rows)


def job_cpu_seconds(log: Path) -> float | None:
    """The CPU seconds a job logged at exit (xaimed.io.runtime.log_resources), or None."""
    if not log.exists():
        return None
    found = re.findall(r"job resources: ([0-9.]+) CPU seconds", log.read_text())
    return float(found[-1]) if found else None


def training_precision(workdir: Path) -> str:
    """How many training jobs trained in bfloat16 and in float32, as their logs say."""
    said = [
        "bfloat16" if "bfloat16 autocast" in line else "float32"
        for log in (workdir / "logs" / "train").rglob("*.log")
        for line in log.read_text().splitlines()
        if " held-out images on " in line
    ]
    counts = pd.Series(said, dtype=str).value_counts()
    return ", ".join(f"{precision} {n} jobs" for precision, n in counts.items()) or "unknown"


def accuracy_by_model(workdir: Path) -> pd.Series:
    """Lowest mean held-out accuracy over the datasets, per model."""
    table = pd.read_csv(workdir / "results" / "tables" / "classification.csv")
    return table.groupby("model")["accuracy_mean"].min()


def pointing_game(workdir: Path, dataset: str = "brain_mri") -> pd.DataFrame:
    """Pointing game per explained model and method on ``dataset``, over its lesion images
    (the per-class means weighted by images), beside the centre baseline's."""
    table = pd.read_csv(workdir / "results" / "tables" / "localisation.csv")
    table = table[(table["dataset"] == dataset) & (table["metric"] == "pointing_game")]
    table = table.drop_duplicates(["model", "method", "class"])

    def weighted(group: pd.DataFrame) -> pd.Series:
        n = group["n_images"]
        return pd.Series(
            {
                "images": int(n.sum()),
                "pointing_game": (group["mean"] * n).sum() / n.sum(),
                "centre": (group["baseline_centre"] * n).sum() / n.sum(),
            }
        )

    return table.groupby(["model", "method"])[["n_images", "mean", "baseline_centre"]].apply(
        weighted
    )


def run_cpu_seconds(workdir: Path) -> float | None:
    """The run's CPU seconds, all processes, as ``main`` saved them (None before it did)."""
    saved = workdir / CPU_FILE
    return json.loads(saved.read_text())["cpu_s"] if saved.exists() else None


def summarise(workdir: Path, wall: float, cores: int, startup: bool = True) -> dict:
    """Print where the run's time went and the demo's targets; return the figures."""
    jobs = job_table(workdir)
    core_seconds = wall * cores
    stages = jobs.groupby("stage").agg(jobs=("s", "size"), s=("s", "sum"), cpu_s=("cpu_s", "sum"))
    stages = stages.sort_values("cpu_s", ascending=False)
    between = core_seconds - jobs["s"].sum()
    cpu_s = run_cpu_seconds(workdir)
    predicted = (cpu_s if cpu_s is not None else jobs["cpu_s"].sum()) / cores
    print(f"demo: {wall / 60:.1f} min wall on {cores} cores, {len(jobs)} jobs, in {workdir}")
    print(f"  training in {training_precision(workdir)}")
    exact = "cpu-s" if jobs["cpu_exact"].all() else "cpu-s >="
    print(f"  {'stage':<38}{'jobs':>5}{'job-s':>8}{'share':>8}{exact:>10}")
    for stage, row in stages.iterrows():
        share = row["s"] / core_seconds
        print(
            f"  {stage + ' jobs':<38}{int(row['jobs']):5d}{row['s']:8.0f}{share:8.1%}"
            f"{row['cpu_s']:10.0f}"
        )
    idle = "between jobs (scheduling, idle cores)"
    print(f"  {idle:<38}{'':5}{between:8.0f}{between / core_seconds:8.1%}")
    trained = jobs[jobs["rule"] == "train"].groupby("model")["cpu_s"].sum()
    print("  training cpu-s by model: " + ", ".join(f"{m} {s:.0f}" for m, s in trained.items()))
    if cpu_s is None:
        print(
            f"  quiet wall the sampled CPU seconds predict (a lower bound; no {CPU_FILE}):"
            f" {jobs['cpu_s'].sum():.0f} cpu-s / {cores} cores = {predicted / 60:.1f} min"
        )
    else:
        print(
            f"  quiet wall the run's CPU seconds predict: {cpu_s:.0f} cpu-s (all processes) /"
            f" {cores} cores = {predicted / 60:.1f} min (plus the time between jobs)"
        )
    figures = {
        "wall_s": wall,
        "cpu_s": cpu_s,
        "predicted_wall_s": predicted,
        "between": between,
        **{f"{stage} cpu_s": row["cpu_s"] for stage, row in stages.iterrows()},
    }
    if startup:
        torch_jobs = int(jobs["rule"].isin(TORCH_RULES).sum())
        torch_import, small_import = import_seconds(TORCH_IMPORTS), import_seconds(SMALL_IMPORTS)
        figures["startup"] = torch_import * torch_jobs + small_import * (len(jobs) - torch_jobs)
        print(
            f"  of the jobs' time, Python start-up {figures['startup']:.0f} core-s:"
            f" {torch_import:.1f} s in each of {torch_jobs} torch jobs, {small_import:.1f} s in"
            f" each of {len(jobs) - torch_jobs} others"
        )

    accuracy = accuracy_by_model(workdir)
    floor = "met" if accuracy.min() >= ACCURACY_FLOOR else "MISSED"
    print(f"lowest held-out accuracy over the datasets (floor {ACCURACY_FLOOR}: {floor}):")
    print("  " + ", ".join(f"{model} {value:.3f}" for model, value in accuracy.items()))
    figures["accuracy_min"] = accuracy.to_dict()
    pointing = pointing_game(workdir)
    if pointing.empty:
        print("pointing game on brain_mri: no lesion scores (brain_mri not explained)")
    else:
        best = pointing["pointing_game"].idxmax()
        hit = pointing.loc[best, "pointing_game"]
        met = hit >= POINTING_FLOOR and hit > pointing.loc[best, "centre"]
        print(f"pointing game on brain_mri (target: one method >= {POINTING_FLOOR} above the")
        print(f"  centre baseline: {'met' if met else 'MISSED'} by {best[1]} {hit:.2f}):")
        print(pointing.round(2).to_string())
        figures["pointing_game"] = pointing["pointing_game"].to_dict()
    return figures


def float32_config(config: Path, workdir: Path) -> Path:
    """A copy of ``config`` that trains in float32, as on a CPU without native bfloat16."""
    settings = yaml.safe_load(config.read_text())
    settings.setdefault("training", {})["amp"] = False
    copy = workdir / f"{config.stem}-float32.yaml"
    copy.write_text(yaml.safe_dump(settings, sort_keys=False))
    return copy


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--keep", help="run in this directory and keep it (default: a temp dir)")
    parser.add_argument(
        "--float32", action="store_true", help="train in float32 (a CPU without bfloat16)"
    )
    parser.add_argument("--summarise", metavar="DIR", help="only print a finished run's figures")
    parser.add_argument("--wall", type=float, help="with --summarise: that run's wall seconds")
    args = parser.parse_args(argv)

    if args.summarise:
        workdir = Path(args.summarise)
        wall = args.wall or max(job_table(workdir)["s"].sum() / args.cores, 1.0)
        return summarise(workdir, wall, args.cores)
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="xaimed-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = Path(args.config).resolve()
    if args.float32:
        config = float32_config(config, workdir)
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config), "--cores", str(args.cores),
    ]  # fmt: skip
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    (workdir / CPU_FILE).write_text(json.dumps({"cpu_s": cpu_s}))
    figures = summarise(workdir, time.perf_counter() - started, args.cores)
    if not args.keep:
        shutil.rmtree(workdir)
    return figures


if __name__ == "__main__":
    main()
