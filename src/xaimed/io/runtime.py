"""Run-time plumbing shared by every stage: device choice, seeding, logging to the rule's log."""

from __future__ import annotations

import atexit
import errno
import gc
import logging
import os
import random
import resource
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: every job imports this module for its logging, and the
# table, statistics and report jobs would otherwise pay seconds for a torch they never touch.

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def select_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU; never required. On a machine with several
    GPUs the job first claims one of its own (xaimed.io.gpu_slots)."""
    import torch

    from xaimed.io.gpu_slots import claim_gpu

    if preference == "cpu":
        return torch.device("cpu")
    claim_gpu()  # before CUDA starts: it reads CUDA_VISIBLE_DEVICES once
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but no CUDA device is available")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if preference not in ("auto", "cuda"):
        raise ValueError(f"unknown device {preference!r}; use 'auto', 'cpu' or 'cuda'")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so the same seed on CPU gives identical outputs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries may still use the global RNG
    import torch

    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Use the cores Snakemake gave this job, no more (jobs run side by side)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # Tiny activations of freshly initialised nets (EfficientNet's reach 1e-13) otherwise fall
    # into denormal floats, which the CPU computes many times slower; flushing them is harmless.
    torch.set_flush_denormal(True)


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send library logs (and uncaught errors) to the rule's log file, line-buffered."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_path, mode="w")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    logging.captureWarnings(True)

    def log_uncaught(kind, error, trace):
        # The error must reach the rule's log, not only Snakemake's terminal.
        logging.getLogger("xaimed").critical(
            "%s: %s", kind.__name__, error, exc_info=(kind, error, trace)
        )
        sys.__excepthook__(kind, error, trace)

    sys.excepthook = log_uncaught
    if log_path:  # a job of the workflow (only these get a log file)
        freeze_imports()
        stop_with_snakemake()
        atexit.unregister(log_resources)  # once per process, however often it is set up
        atexit.register(log_resources)
    return logging.getLogger("xaimed")


def freeze_imports() -> None:
    """Exempt every object alive now (a job's imports: torch, torchvision and what they pull
    in) from garbage collection. Full collections during the job and the interpreter's exit
    would otherwise traverse them all: 1.3 CPU seconds at the exit of every torch job, 0.3-0.8
    of a table or figure job (measured, BENCHMARKS.md section 11). Nothing is freed later that
    would have been: modules live until exit anyway."""
    gc.freeze()


def log_resources() -> None:
    """Log the job's CPU seconds and peak memory, imports included (bench/demo.py reads them:
    Snakemake's benchmark files sample CPU time only every 30 s and miss a job's last stretch)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    cpu = sum(u.ru_utime + u.ru_stime for u in (own, children))
    logging.getLogger("xaimed").info(
        "job resources: %.2f CPU seconds, peak RSS %.0f MB", cpu, own.ru_maxrss / 1024
    )


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and brackets
    return fields[0], int(fields[1]), int(fields[19])


def _is_snakemake(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(Path(arg.decode(errors="replace")).name == "snakemake" for arg in argv)


def _watched_parent() -> tuple[int, int] | None:
    """(pid, start time) of the nearest Snakemake process this one descends from; else (say,
    Snakemake's API in a notebook) of the parent itself; None when that is gone already."""
    pid = os.getppid()
    while pid > 1:
        stat = _proc_stat(pid)
        if stat is None:
            break
        if _is_snakemake(pid):
            return pid, stat[2]
        pid = stat[1]
    stat = _proc_stat(os.getppid())
    return None if stat is None else (os.getppid(), stat[2])


def _alive(pid: int, started: int) -> bool:
    stat = _proc_stat(pid)
    # a zombie is dead (its parent has not reaped it yet); a new start time is another process
    return stat is not None and stat[0] not in "ZX" and stat[2] == started


def stop_with_snakemake(poll_seconds: float = 1.0, grace_seconds: float = 30.0) -> None:
    """Stop this job when the Snakemake that runs it dies (``kill -9``, a lost login): an
    orphaned job would otherwise go on writing the outputs that the rerun's job writes too.
    The job is interrupted like Ctrl-C (its temp files are removed), and ended after
    ``grace_seconds`` if it does not stop. Linux only (reads /proc); does nothing elsewhere."""
    if not Path("/proc/self/stat").is_file():
        return
    parent = _watched_parent()
    log = logging.getLogger("xaimed.io.runtime")
    if parent is None or parent[0] == 1:
        # Started by Snakemake (from its .snakemake/scripts), yet orphaned: it died while this
        # job was starting.
        if Path(sys.argv[0]).parent.match(".snakemake/scripts"):
            log.critical("the Snakemake that started this job is gone: stopping this job")
            os._exit(1)
        return

    # `nohup snakemake ... &` starts jobs with SIGINT ignored (a background job of a shell
    # without job control), which would leave the interrupt below without effect: take it back.
    if (
        signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        while _alive(*parent):
            time.sleep(poll_seconds)
        log.critical(
            "Snakemake (pid %d) is gone: stopping this job, so that the rerun's job is the "
            "only one writing its outputs",
            parent[0],
        )
        # A real SIGINT to the main thread: it also breaks a blocking call (sleep, read)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        time.sleep(grace_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="stop-with-snakemake", daemon=True).start()


# Less free than this after a failed write: the disk is full (the write stopped at its end).
DISK_FULL_BYTES = 1 << 20


def _free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    # root may use the blocks reserved for it; others may not
    return (stat.f_bfree if os.geteuid() == 0 else stat.f_bavail) * stat.f_frsize


def _disk_full(error: BaseException, directory: Path) -> bool:
    """Whether a failed write ran out of space. pyarrow keeps ENOSPC, but NumPy ("N requested
    and M written") and torch ("unexpected pos") drop it, so a file system left with (almost)
    no free space after the failure counts too."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    if not isinstance(error, OSError | RuntimeError):
        return False
    try:
        return _free_bytes(directory) < DISK_FULL_BYTES
    except OSError:
        return False


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into a temp file beside ``path``, then rename it into place: a killed job
    never leaves a half-written output that looks complete. Running out of space raises an
    OSError(ENOSPC) that names ``path`` and says the disk is full."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as error:
        full = _disk_full(error, path.parent)  # before the partial file frees its space
        tmp.unlink(missing_ok=True)
        if not full:
            raise
        raise OSError(
            errno.ENOSPC,
            f"disk full (ENOSPC): cannot write {path} ({type(error).__name__}: {error}); "
            "nothing half-written was kept: free some space and rerun snakemake",
        ) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
