"""Shared fixtures: tiny image-folder datasets written into a temporary directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Two shared cores: one thread avoids oversubscription. Flush denormals: random-init
    EfficientNets are ~20x slower on the CPU without it (as in xaimed.runtime.set_threads)."""
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
