"""The documentation works as written: every command in a ```bash block of README.md,
config/README.md or docs/ is run here verbatim (Snakemake commands as dry runs: a real run of the
demo is too slow for CI), and every relative link resolves to a file and heading."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, job_counts

DOCS = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINKED = [*DOCS, REPO / "BENCHMARKS.md"]

# Every command the docs show, exactly as shown; test_every_documented_command_is_run_here
# fails when the docs show one that is not listed (and so not run).
SNAKEMAKE_COMMANDS = [
    "snakemake --cores 2",
    "snakemake --cores 2 --configfile my_config.yaml",
    "snakemake --cores 2 results/train/brain_mri/resnet50/fold1/predictions.parquet",
    "snakemake --cores 2 results/explain/brain_mri/resnet50/fold{0,1}/layercam/scores.parquet",
    "snakemake --cores 2 --force results/train/brain_mri/resnet50/fold0/model.pt",
    "snakemake --cores 2 --force results/explain/brain_mri/resnet50/fold0/layercam/scores.parquet",
    "snakemake --cores 2 --forcerun cams",
    "snakemake --cores 2 --forcerun scores",
    "snakemake --cores 2 results/train/brain_mri/resnet50/fold0/predictions.parquet"
    " --configfile my_config.yaml",
    "snakemake --cores 2 --snakefile Snakefile --directory my_study"
    " --configfile my_study/config.yaml",
    "snakemake --workflow-profile profiles/slurm --configfile my_config.yaml",
    "snakemake --cores 16 --resources gpu=4",
    "snakemake -n",
    "snakemake --report results/report.html",
]
MAKE_COMMANDS = ["make run", "make test"]


def _code_lines(path: Path, language: str = "bash") -> list[str]:
    """The commands of the ``language`` blocks: comments dropped, continuations joined."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.M | re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines())
    return [re.sub(r"\s+", " ", line) for line in lines if line and not line.startswith("#")]


def test_every_documented_command_is_run_here():
    shown = {line: path.relative_to(REPO) for path in DOCS for line in _code_lines(path)}
    assert shown, "no commands found in the docs"
    listed = [*SNAKEMAKE_COMMANDS, *MAKE_COMMANDS]
    unrun = {line: str(path) for line, path in shown.items() if line not in listed}
    assert not unrun, f"documented but not run by tests/workflow/test_docs.py: {unrun}"
    # and the list follows the docs: a command dropped from them is dropped here
    assert not set(listed) - set(shown), set(listed) - set(shown)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The repository as a user's clone (links; results/ etc. fresh), with a config of one's own
    as the docs name it: my_config.yaml, and my_study/config.yaml for a study of its own."""
    root = tmp_path_factory.mktemp("clone")
    for name in ("Snakefile", "workflow", "config", "profiles", "envs", "Makefile"):
        (root / name).symlink_to(REPO / name)
    demo = (REPO / "config" / "config.yaml").read_text()
    (root / "my_config.yaml").write_text(demo)
    (root / "my_study").mkdir()
    (root / "my_study" / "config.yaml").write_text(demo)
    return root


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "src"),
    }
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.workflow
# the report command needs a finished run: test_the_documented_report_command_writes_the_report
@pytest.mark.parametrize("command", [c for c in SNAKEMAKE_COMMANDS if "--report" not in c])
def test_a_documented_snakemake_command_works_as_written(checkout, command):
    done = _run(f"{command} -n", checkout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    targets = re.findall(r"results/\S+", command)
    for target in targets:  # each target is a target, not a config
        for path in _expand(target):
            assert path in output, (path, output[-4000:])
    if targets:  # ... nor a rule name (--forcerun RULE TARGET ran the default target, all)
        assert "all" not in job_counts(output), output[-4000:]
    if "--force " in command:
        assert "Forced execution" in output
        assert "UnicodeDecodeError" not in output


@pytest.mark.workflow
def test_the_documented_report_command_writes_the_report(tiny_run, tmp_path):
    # the session's tiny run as a clone holding it: its config at config/config.yaml
    clone = tmp_path / "clone"
    shutil.copytree(tiny_run, clone, ignore=shutil.ignore_patterns("config.yaml"))
    (clone / "config").mkdir()
    shutil.copy(tiny_run / "config.yaml", clone / "config" / "config.yaml")
    (clone / "results" / "config_files.yaml").write_text("configfiles: [config/config.yaml]\n")
    for name in ("Snakefile", "workflow", "profiles"):
        (clone / name).symlink_to(REPO / name)
    command = next(c for c in SNAKEMAKE_COMMANDS if "--report" in c)
    done = _run(command, clone)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert (clone / "results" / "report.html").stat().st_size > 0


def _expand(target: str) -> list[str]:
    match = re.search(r"\{(.*?)\}", target)
    if not match:
        return [target]
    return [target[: match.start()] + part + target[match.end() :] for part in match[1].split(",")]


@pytest.mark.parametrize("command", MAKE_COMMANDS)
def test_a_documented_make_target_exists(command):
    # -n, in the checkout itself: prints the recipe (set-up, then run or tests), runs nothing
    done = _run(f"{command} -n", REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("snakemake --cores" if command == "make run" else "pytest") in done.stdout


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    heading = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for path in LINKED:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md":
                prose = re.sub(r"^```.*?^```", "", linked.read_text(), flags=re.M | re.S)
                headings = re.findall(r"^#+ (.+)$", prose, re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
