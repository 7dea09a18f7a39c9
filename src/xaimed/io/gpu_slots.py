"""One GPU per job on a multi-GPU workstation.

Snakemake's ``--resources gpu=N`` caps how many GPU jobs run at once but does not say which job
gets which device, so without help every job would pick GPU 0. Each job therefore claims a free
slot, one lock file per visible GPU, and restricts itself to that GPU via CUDA_VISIBLE_DEVICES
before CUDA starts. The lock is held as long as the process lives: the operating system releases
it when the job ends, crashed or killed jobs included, so no slot is ever left stuck.

Inside a SLURM job nothing is claimed: SLURM already gives each job its own GPUs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SLOT_DIR_ENV = "XAIMED_GPU_SLOT_DIR"
# A fake number of GPUs, for testing the slot assignment on a machine without any.
COUNT_ENV = "XAIMED_GPU_COUNT"

# Open lock files of the slots this process holds; closing one would free its slot.
_held: dict[int, int] = {}


def slot_dir() -> Path:
    """Per-machine directory of the lock files, shared by every run of every user's jobs."""
    default = Path(tempfile.gettempdir()) / f"xaimed-gpu-slots-{os.getuid()}"
    return Path(os.environ.get(SLOT_DIR_ENV, default))


def visible_gpus() -> list[str]:
    """The device names CUDA_VISIBLE_DEVICES may take, one per GPU this process can see."""
    fake = os.environ.get(COUNT_ENV)
    # torch.cuda.device_count asks NVML, which leaves CUDA uninitialised, so that
    # CUDA_VISIBLE_DEVICES set afterwards still takes effect.
    count = int(fake) if fake is not None else torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        # Already narrowed by the user: choose among those devices only.
        return [d.strip() for d in visible.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def claim_gpu(poll_seconds: float = 2.0) -> str | None:
    """Claim a free GPU for this process and make it the only one CUDA shows; wait while all
    are taken. Returns the device claimed, or None where there is nothing to choose (no GPU,
    one GPU, inside a SLURM job, or a slot already held by this process)."""
    if os.environ.get("SLURM_JOB_ID") or _held:
        return None
    gpus = visible_gpus()
    if len(gpus) < 2:
        return None
    directory = slot_dir()
    directory.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for slot, device in enumerate(gpus):
            fd = _try_lock(directory / f"gpu{device}.lock")
            if fd is not None:
                _held[slot] = fd
                os.environ["CUDA_VISIBLE_DEVICES"] = device
                log.info("GPU slot %d of %d: CUDA_VISIBLE_DEVICES=%s", slot, len(gpus), device)
                return device
        if not waited:
            # More GPU jobs than GPUs: run Snakemake with --resources gpu=<number of GPUs>.
            log.warning("all %d GPUs are taken by other jobs; waiting for one", len(gpus))
            waited = True
        time.sleep(poll_seconds)


def release_gpu() -> None:
    """Give the claimed GPU back before the process ends (it is given back at exit anyway)."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()
