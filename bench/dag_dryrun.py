"""Dry-run time of the full study matrix (issue 7, benchmark 4).

Three phantom datasets x four CNNs x five folds, every model explained with seven CAM methods:
`snakemake --dry-run` from empty results in a temporary directory, timed as a whole command
(interpreter start-up, parsing, schema validation, DAG building), best of `--repeats`.

    python bench/dag_dryrun.py
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MODELS = ["resnet50", "densenet121", "vgg16", "efficientnet_b0"]
METHODS = [
    "gradcampp",
    "xgradcam",
    "eigengradcam",
    "layercam",
    "ablationcam",
    "gradcam",
    "scorecam",
]


def study_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["folds"] = 5
    config["models"] = MODELS
    config["explain"]["models"] = MODELS
    config["explain"]["methods"] = METHODS
    return config


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "config.yaml").write_text(yaml.safe_dump(study_config()))
        command = [
            sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", "2", "--dry-run",
        ]  # fmt: skip
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            seconds.append(time.perf_counter() - started)
    total = re.search(r"^total\s+(\d+)$", done.stdout, re.MULTILINE)
    jobs = int(total[1]) if total else -1
    print(f"dry run of the full study matrix ({jobs} jobs): best {min(seconds):.2f} s")
    print("  runs: " + ", ".join(f"{s:.2f} s" for s in seconds))
    return min(seconds)


if __name__ == "__main__":
    main()
