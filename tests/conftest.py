"""Shared fixtures: tiny image-folder datasets, and one real Snakemake run of a tiny config that
every workflow-level test reads (one run per test session: it takes about two minutes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Two shared cores: one thread avoids oversubscription. Flush denormals: random-init
    EfficientNets are ~20x slower on the CPU without it (as in xaimed.io.runtime.set_threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)


def write_folder_dataset(
    root: Path, classes: dict[str, int], size: int = 40, seed: int = 0, masks: bool = True
) -> Path:
    """Class k's images carry a bright square in a class-specific place (a learnable signal),
    with a mask of that square beside each image."""
    rng = np.random.default_rng(seed)
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = rng.integers(0, 60, (size, size), dtype=np.uint8)
            mask = np.zeros((size, size), dtype=np.uint8)
            top = 4 + (k * 14) % (size - 12)
            mask[top : top + 10, 6:16] = 255
            image[mask > 0] = 230
            Image.fromarray(image).save(root / name / f"{name}_{i:03d}.png")
            if masks:
                Image.fromarray(mask).save(root / name / f"{name}_{i:03d}_mask.png")
    return root


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "data", {"healthy": 9, "lesion": 12})


# One dataset, model and CAM method; one image explained per fold (so one class per explain
# job). Every statistical comparison is empty: one model, one method.
SMALLEST = {
    "seed": 0,
    "folds": 2,
    "image_size": 48,
    "datasets": {"brain_mri": {"phantom": "brain_mri", "n_per_class": 4, "phantom_size": 64}},
    "models": ["resnet18"],
    "training": {"epochs": 1, "batch_size": 8},
    # layer2: 6x6 maps at 48 px (layer4's 2x2 is refused as too coarse)
    "explain": {
        "models": ["resnet18"],
        "methods": ["gradcampp"],
        "max_images": 1,
        "target_layers": {"resnet18": "layer2"},
    },
    "threads": {"train": 1, "explain": 1},
    "shift": {
        "models": ["resnet18"],
        "corruptions": ["blur"],
        "severities": [5],
        "cam_methods": ["gradcampp"],
        "cam_severity": 5,
        "cam_images": 1,
    },
    "quality": {"sanity": {"images": 1, "stages": [1]}},
}


TINY = {
    "seed": 0,
    "folds": 2,
    "image_size": 48,
    "datasets": {
        "brain_mri": {"phantom": "brain_mri", "n_per_class": 6, "phantom_size": 64},
        "lesions": {"format": "imagefolder", "path": "data/lesions"},
    },
    "models": ["resnet18", "efficientnet_b0"],
    "training": {"epochs": 1, "batch_size": 8, "augment": {"hflip": True}},
    "explain": {
        "models": ["resnet18", "efficientnet_b0"],
        "methods": ["gradcampp", "ablationcam"],
        "batch_size": 4,
        # 2x2 maps at 48 px, kept on purpose: finer layers make AblationCAM several times
        # slower, and the session run checks the plumbing, not the maps
        "allow_coarse": True,
    },
    "threads": {"train": 1, "explain": 1},
    "shift": {
        "models": ["resnet18"],
        "severities": [1, 5],
        "max_images": None,
        "cam_methods": ["gradcampp"],
        "cam_severity": 5,
        "cam_images": 4,
    },
}


def snakemake(workdir: Path, *args: str, config: str = "config.yaml", ok: bool = True) -> str:
    """Snakemake's output; the run must succeed (or, with ``ok=False``, fail)."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / config) if config else str(REPO / "config" / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    output = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, output[-5000:]
    return output


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[-1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny")
    write_folder_dataset(workdir / "data" / "lesions", {"benign": 6, "malignant": 8}, size=40)
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(workdir)
    return workdir
