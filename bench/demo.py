"""The demo end to end (issue 7, benchmark 3): `snakemake --cores N` on the default config from
empty results in a temporary directory, and where its core-seconds went.

Every rule writes a Snakemake benchmark file; their wall times are summed per stage. Start-up
is the cost of the jobs' Python imports: those of a torch job (training, CAMs, generalisation)
and of a small job (data, statistics, report), each measured in a fresh interpreter, times the
number of such jobs. "Between jobs" is the core-seconds no job held (Snakemake's own scheduling,
and cores left idle while the last jobs finish).

    python bench/demo.py                  # takes the demo's wall time: minutes
    python bench/demo.py --cores 2 --keep /tmp/demo
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
STAGES = {"train": "training", "cams": "CAMs", "scores": "CAM scores"}
TORCH_RULES = {"train", "cams", "scores", "generalise"}
TORCH_IMPORTS = "import xaimed.explain, xaimed.train, xaimed.generalise, snakemake.script"
SMALL_IMPORTS = "import xaimed.plots, xaimed.tables, xaimed.stats, snakemake.script"


def import_seconds(code: str) -> float:
    """A fresh interpreter running ``code`` (the imports of one kind of job), best of 3."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def job_table(workdir: Path) -> pd.DataFrame:
    rows = []
    for path in (workdir / "benchmarks").rglob("*.tsv"):
        rule = path.relative_to(workdir / "benchmarks").parts[0]
        seconds = float(pd.read_csv(path, sep="\t")["s"].iloc[0])
        rows.append(
            {"rule": rule, "stage": STAGES.get(rule, "data, statistics, report"), "s": seconds}
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--keep", help="run in this directory and keep it (default: a temp dir)")
    args = parser.parse_args(argv)

    workdir = Path(args.keep or tempfile.mkdtemp(prefix="xaimed-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", args.config, "--cores", str(args.cores),
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started

    jobs = job_table(workdir)
    core_seconds = wall * args.cores
    by_stage = jobs.groupby("stage")["s"].sum()
    torch_jobs = int(jobs["rule"].isin(TORCH_RULES).sum())
    torch_import, small_import = import_seconds(TORCH_IMPORTS), import_seconds(SMALL_IMPORTS)
    startup = torch_import * torch_jobs + small_import * (len(jobs) - torch_jobs)
    between = core_seconds - jobs["s"].sum()
    print(f"demo: {wall / 60:.1f} min wall on {args.cores} cores ({len(jobs)} jobs) in {workdir}")
    print(f"  {'share of core-seconds':<38}{'core-s':>8}{'share':>8}")
    for stage, seconds in by_stage.sort_values(ascending=False).items():
        print(f"  {stage + ' jobs':<38}{seconds:8.0f}{seconds / core_seconds:8.1%}")
    idle = "between jobs (scheduling, idle cores)"
    print(f"  {idle:<38}{between:8.0f}{between / core_seconds:8.1%}")
    print(
        f"  of the jobs' time, Python start-up {startup:.0f} core-s ({startup / core_seconds:.1%}):"
        f" {torch_import:.1f} s in each of {torch_jobs} torch jobs, {small_import:.1f} s in each"
        f" of {len(jobs) - torch_jobs} others"
    )
    accuracy = pd.read_csv(workdir / "results" / "tables" / "classification.csv")
    print(accuracy.pivot(index="dataset", columns="model", values="accuracy_mean").round(3))
    if not args.keep:
        shutil.rmtree(workdir)
    return {"wall_s": wall, **by_stage.to_dict(), "between": between, "startup": startup}


if __name__ == "__main__":
    main()
