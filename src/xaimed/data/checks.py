"""Checks of a dataset's images before preprocessing, at one seam: manifest in, errors or
warnings out.

An unreadable image stops the job with its file named (rather than a decoder's stack trace
halfway through preprocessing). Images smaller than `image_size` and a mix of grayscale and
colour files are common in real collections (scans of several sources and sizes), so they
are handled - upsampled, converted to three channels - and reported with counts and an example,
so a surprise shows in the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
from PIL import Image

log = logging.getLogger("xaimed.data.checks")

PIL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


def channel_count(path: str | Path, dataset: str) -> int:
    """Bands of an image file from its header; verify() also walks the file's chunks (and
    their CRCs, for PNG), which catches most truncated files without decoding pixels."""
    try:
        with Image.open(path) as handle:
            bands = len(handle.getbands())
            handle.verify()
            return bands
    except Exception as error:  # UnidentifiedImageError, OSError, ...
        raise ValueError(f"dataset {dataset!r}: cannot read image {path}: {error}") from None


def check_images(manifest: pd.DataFrame, image_size: int, dataset: str) -> dict[str, object]:
    """Raise on unreadable or missing image files; warn on small images and mixed channel
    counts. Returns what it found (for tests and logs)."""
    if manifest.empty:
        raise ValueError(f"dataset {dataset!r}: the manifest lists no images")
    missing = [p for p in manifest["path"] if Path(p).suffix.lower() in PIL_SUFFIXES]
    missing = [p for p in missing if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"dataset {dataset!r}: {len(missing)} image file(s) of the manifest are gone, "
            f"e.g. {missing[0]}; rerun ingest (delete results/data/{dataset}/manifest.parquet)"
        )
    channels: dict[str, int] = {}
    for path in manifest["path"]:
        if Path(path).suffix.lower() in PIL_SUFFIXES:  # other sources have their own readers
            channels[path] = channel_count(path, dataset)
    counts = Counter(channels.values())
    if len(counts) > 1:
        rare = min(counts, key=counts.get)
        example = next(p for p, c in channels.items() if c == rare)
        log.warning(
            "dataset %s: mixed channel counts (%s); all are converted to 3-channel RGB "
            "(grayscale replicated, alpha dropped), e.g. %s has %d",
            dataset,
            ", ".join(f"{n} image(s) with {c}" for c, n in sorted(counts.items())),
            example,
            rare,
        )
    side = manifest[["height", "width"]].min(axis=1)
    small = manifest[side < image_size]
    if len(small):
        worst = small.loc[side[small.index].idxmin()]
        log.warning(
            "dataset %s: %d image(s) are smaller than image_size %d and are upsampled, "
            "the smallest %s (%dx%d)",
            dataset,
            len(small),
            image_size,
            worst["path"],
            worst["width"],
            worst["height"],
        )
    return {"channels": dict(counts), "smaller_than_input": len(small)}
