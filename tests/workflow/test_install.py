"""Installation routes: the conda environment file (Snakemake copies it to .snakemake/conda/, so
it can hold no path; the jobs get xaimed from the checkout instead, checked here with a Python that
has no xaimed installed) and the CPU-only torch route of the Makefile. Neither route's package
index is reachable from the test machine (conda-forge, PyTorch's wheel index): what they install
is checked against pyproject.toml, not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RUNTIME = {canonicalize_name(r.name): r for r in map(Requirement, PYPROJECT["dependencies"])}


def env_requirements() -> tuple[list[str], list[str]]:
    """envs/xaimed.yaml's conda and pip entries."""
    env = yaml.safe_load((REPO / "envs" / "xaimed.yaml").read_text())
    conda = [entry for entry in env["dependencies"] if isinstance(entry, str)]
    pips = [entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict)]
    assert len(pips) == 1, env["dependencies"]
    return conda, pips[0]


def test_conda_env_has_no_paths_and_every_runtime_dependency_of_pyproject():
    conda, pip = env_requirements()
    for entry in conda + pip:
        # A path is relative to .snakemake/conda/ once Snakemake has copied the file there.
        assert not entry.startswith("-") and "/" not in entry and ":" not in entry, entry
    listed = {}
    for entry in conda + pip:
        if entry.startswith("python=") or entry == "pip":
            continue
        requirement = Requirement(entry)
        listed[canonicalize_name(requirement.name)] = requirement
    assert "xaimed" not in listed  # taken from the checkout's src/ (see the Snakefile)
    assert set(RUNTIME) <= set(listed), sorted(set(RUNTIME) - set(listed))
    for name, requirement in RUNTIME.items():
        assert listed[name].specifier == requirement.specifier, (name, str(listed[name]))
    python = next(entry for entry in conda if entry.startswith("python="))
    assert SpecifierSet(PYPROJECT["requires-python"]).contains(python.split("=")[1]), python


@pytest.fixture(scope="module")
def python_without_xaimed(tmp_path_factory) -> Path:
    """A virtual environment whose packages are this one's (snakemake, torch, ...) but not
    xaimed: a .pth file adds this site-packages folder, whose own .pth files (xaimed's editable
    install among them) Python does not read from there."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "host_packages.pth").write_text("\n".join(sorted(here)) + "\n")
    return python


def without_pythonpath() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.workflow
def test_jobs_run_with_xaimed_from_the_checkout_on_a_python_without_it(
    python_without_xaimed, tmp_path
):
    check = "import snakemake, torch, pytorch_grad_cam\ntry:\n import xaimed\nexcept ImportError:"
    check += "\n print('no xaimed')\nelse:\n print(xaimed.__file__)"
    found = subprocess.run(
        [python_without_xaimed, "-c", check],
        capture_output=True,
        text=True,
        env=without_pythonpath(),
        cwd=tmp_path,
    )
    assert found.stdout.strip() == "no xaimed", found.stdout + found.stderr

    config = {**TINY, "datasets": {"brain_mri": TINY["datasets"]["brain_mri"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # A phantom, ingest and folds job: each script imports xaimed.
    target = "results/data/brain_mri/folds.parquet"
    done = subprocess.run(
        [python_without_xaimed, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
        + ["--configfile", "config.yaml", "--cores", "1", target],
        capture_output=True,
        text=True,
        env=without_pythonpath(),
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert (tmp_path / target).is_file()
    for rule in ("phantom", "ingest", "folds"):
        assert f"rule {rule}:" in output


CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def test_cpu_torch_requirements_pin_pyprojects_versions_from_pytorchs_cpu_index():
    lines = [
        line
        for line in (REPO / "envs" / "torch-cpu.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == f"--index-url {CPU_INDEX}"
    pinned = {canonicalize_name(r.name): r for r in map(Requirement, lines[1:])}
    assert set(pinned) == {"torch", "torchvision"}
    for name, requirement in pinned.items():
        assert requirement.specifier == RUNTIME[name].specifier, name


def make_dry_run(tmp_path: Path, *args: str) -> list[str]:
    """`make -n` in a copy of the Makefile's inputs, without .venv, so the install steps show."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "envs", tmp_path / "envs", dirs_exist_ok=True)
    done = subprocess.run(["make", "-n", *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_run_torch_cpu_installs_torch_from_the_cpu_index_before_xaimed(tmp_path):
    cpu = make_dry_run(tmp_path, "run", "TORCH=cpu")
    torch_step = ".venv/bin/python -m pip install --quiet -r envs/torch-cpu.txt"
    xaimed_step = ".venv/bin/python -m pip install --quiet -e '.[test]'"
    # torch first: the install of xaimed then finds its torch requirement met.
    assert (
        cpu.index(torch_step) < cpu.index(xaimed_step) < cpu.index(".venv/bin/snakemake --cores 8")
    )

    default = make_dry_run(tmp_path, "run")
    assert xaimed_step in default
    assert not any("torch-cpu" in line for line in default)
