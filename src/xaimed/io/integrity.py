"""Intermediates that are checked when read, so a truncated or corrupted file is never used.

* Parquet tables are written with page checksums (CRC32 per data page) and read with their
  verification on; a truncated file has no footer and fails to open.
* The image store (``images.npy``, ``masks.npy``) gets a ``<file>.sha256`` beside it; readers
  compare it (a flipped bit in a memory-mapped array would otherwise be read as pixels) and
  NumPy checks that the file is as long as its header says.
* Model files carry a checksum of their tensors in their metadata (xaimed.models).
* Compressed arrays (``cams.npz``) are zip archives with a CRC-32 per member; :func:`read_npz`
  reads every member, so a damaged one fails there.

A reader that finds a bad file moves it aside to ``<file>.corrupt`` and raises
:class:`CorruptFileError` naming it: the job fails, and the next ``snakemake`` run sees the
file missing and rebuilds it and everything made from it (every intermediate is a target of
``rule all``, see ``intermediate_targets`` in common.smk); the moved copy is kept for
inspection.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from xaimed.io.runtime import atomic_write

log = logging.getLogger("xaimed.io.integrity")


class CorruptFileError(ValueError):
    """An intermediate that is truncated, corrupted or fails its checksum."""


def quarantine(path: str | os.PathLike, reason: str) -> CorruptFileError:
    """Move a bad intermediate out of the way (Snakemake then rebuilds it) and say so."""
    path = Path(path)
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
        moved = (
            f"moved to {aside} (kept for inspection); the next `snakemake` run rebuilds it "
            "and everything made from it"
        )
    except OSError:
        moved = "delete it: the next `snakemake` run then rebuilds it and everything made from it"
    message = f"{path} is truncated or corrupt ({reason}); it was not used: {moved}"
    log.error(message)
    return CorruptFileError(message)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Atomically, with page checksums that :func:`read_parquet` verifies."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, write_page_checksum=True))


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """pd.read_parquet that verifies page checksums and names the file when it fails
    (only the pages of `columns` are read, and so checked, when given)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return pd.read_parquet(path, columns=columns, page_checksum_verification=True)
    except Exception as error:  # ArrowInvalid (no footer), OSError (CRC mismatch), ...
        raise quarantine(path, f"{type(error).__name__}: {error}") from None


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def save_array(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` atomically, with a ``.sha256`` beside it for :func:`load_array`."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file: given a path, np.save would append ".npy"
            np.save(handle, array)

    atomic_write(path, write)
    digest = _file_sha256(path)
    atomic_write(_checksum_path(path), lambda tmp: tmp.write_text(f"{digest}  {path.name}\n"))


def save_rows(
    path: str | os.PathLike, rows: Iterable[np.ndarray], shape: tuple[int, ...], dtype
) -> None:
    """Like :func:`save_array` for an array of ``shape`` given row by row: each row goes to
    disk as it comes, so memory holds one row, not the array (a 16k-image store at 224 px is
    2.4 GB), and the checksum is taken as it is written instead of by reading the file back."""
    path, dtype = Path(path), np.dtype(dtype)
    digest = hashlib.sha256()

    def write(tmp: Path) -> None:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header,
            {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape},
        )
        count = 0
        with open(tmp, "wb") as handle:
            handle.write(header.getvalue())
            digest.update(header.getvalue())
            for row in rows:
                if row.shape != shape[1:] or row.dtype != dtype:
                    raise ValueError(
                        f"{path}: row {count} is {row.shape} {row.dtype}, not {shape[1:]} {dtype}"
                    )
                data = np.ascontiguousarray(row).tobytes()
                handle.write(data)
                digest.update(data)
                count += 1
        if count != shape[0]:
            raise ValueError(f"{path}: {count} rows given for an array of shape {shape}")

    atomic_write(path, write)
    checksum = f"{digest.hexdigest()}  {path.name}\n"
    atomic_write(_checksum_path(path), lambda tmp: tmp.write_text(checksum))


def load_array(path: str | os.PathLike, mmap_mode: str | None = "r") -> np.ndarray:
    """``np.load`` after checking the file against its ``.sha256`` (when it has one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    checksum = _checksum_path(path)
    if checksum.is_file():
        expected = checksum.read_text().split()[0]
        if _file_sha256(path) != expected:
            raise quarantine(path, f"its SHA-256 differs from {checksum.name}")
    else:
        log.warning("%s has no %s beside it; its content is not verified", path, checksum.name)
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except Exception as error:  # shorter than its header says, bad header, ...
        raise quarantine(path, f"{type(error).__name__}: {error}") from None


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, read in full so that zip's CRC-32 of each is checked."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # BadZipFile (truncated, CRC mismatch), zlib.error, ...
        raise quarantine(path, f"{type(error).__name__}: {error}") from None
