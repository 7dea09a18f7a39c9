"""Per-epoch training checkpoints, so a killed training job resumes where it stopped.

One file per job, rewritten atomically after a finished epoch once :func:`interval` seconds of
training have passed since the last one (a kill loses at most that and an epoch; a job shorter
than that never pays for a checkpoint). It holds everything the
rest of the run depends on: the model, optimiser and scheduler states, every random number
generator the epoch loop draws from (torch's global one, the augmentation generator, NumPy's
and Python's, CUDA's), the history so far and the best epoch's weights. Resuming restores all of
it, so on the CPU a resumed run ends bit for bit where an uninterrupted one would.

The file is a cache, never an input: it is loaded weights-only, its tensors carry a checksum,
and a checkpoint that is unreadable, corrupt or written for other settings or data is ignored
with a warning (training starts again from epoch 1) rather than trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaimed.io.runtime import atomic_write

log = logging.getLogger("xaimed.train.resume")

FORMAT = 1
#: the least seconds of training between two checkpoints, unless XAIMED_CHECKPOINT_SECONDS says
#: otherwise (0: after every epoch)
INTERVAL_SECONDS = 60.0
INTERVAL_VARIABLE = "XAIMED_CHECKPOINT_SECONDS"


def interval() -> float:
    """Seconds of training between two checkpoints: $XAIMED_CHECKPOINT_SECONDS, else
    :data:`INTERVAL_SECONDS`. An environment variable, not a config key: it changes no result,
    so changing it must not rerun a training."""
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not text:
        return INTERVAL_SECONDS
    try:
        seconds = float(text)
        if not seconds >= 0:  # negative or nan
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{INTERVAL_VARIABLE}={text!r}: expected a number of seconds >= 0"
        ) from None
    return seconds


def fingerprint(**facts: Any) -> str:
    """A short hash of what decides a training run (settings, data, fold): a checkpoint is
    resumed only by the run it was written for."""
    facts = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in facts.items()}
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_sha256(state: Any) -> str:
    """Checksum of a nested checkpoint: every tensor's bytes and every other value's repr
    (torch.load checks a file's zip layout, not its data, so a flipped bit would load)."""
    digest = hashlib.sha256()

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            tensor = obj.detach().cpu().contiguous().reshape(-1)
            digest.update(f"tensor {tensor.dtype} {tuple(obj.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy())  # no copy: the buffer itself
        elif isinstance(obj, dict):
            for key in sorted(obj, key=str):
                digest.update(f"key {key!r}".encode())
                visit(obj[key])
        elif isinstance(obj, list | tuple):
            digest.update(f"seq {len(obj)}".encode())
            for item in obj:
                visit(item)
        else:
            digest.update(repr(obj).encode())

    visit(state)
    return digest.hexdigest()


def rng_states() -> dict[str, Any]:
    """Every global generator, in forms that torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - the global one
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write one training checkpoint atomically (a kill mid-write leaves the previous one).

    No fsync: a killed process's writes still reach the disk, and after a machine crash a
    half-flushed file fails its checksum and is ignored, so the cost per epoch stays a copy.
    """
    state = {**state, "format": FORMAT}
    state["sha256"] = state_sha256(state)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)

    atomic_write(path, write)


def load(path: str | Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is intact and was written for this run, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, not a checkpoint, pickle refused ...
        log.warning("ignoring unreadable checkpoint %s (%s); training from epoch 1", path, error)
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        log.warning("ignoring %s: not an xaimed training checkpoint; training from epoch 1", path)
        return None
    if state.get("fingerprint") != expected_fingerprint:
        log.warning(
            "ignoring checkpoint %s: written for other settings or data; training from epoch 1",
            path,
        )
        return None
    if state_sha256({k: v for k, v in state.items() if k != "sha256"}) != state.get("sha256"):
        log.warning("ignoring corrupt checkpoint %s (bad checksum); training from epoch 1", path)
        return None
    return state


def remove(path: str | Path) -> None:
    """Delete a finished job's checkpoint (a VGG16 one is ~2 GB) and its folder if empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty or already gone
        path.parent.rmdir()
