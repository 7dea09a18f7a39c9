"""The manifest's columns and helpers shared by every dataset format."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger("xaimed.data.manifest")


# Folder names that mean "a predefined split", not "a class" (compared case-insensitively).
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})

TEST_SPLITS = frozenset({"test", "testing"})

MANIFEST_COLUMNS = [
    "image_id",
    "path",
    "label",
    "label_name",
    "group",
    "split",
    "sha256",
    "height",
    "width",
    "mask_path",
]

ENTRY_COLUMNS = ["image_id", "path", "label_name", "group", "split", "mask_path"]

REJECTED_COLUMNS = ["image_id", "path", "label_name", "split", "reason"]

# Optional per-image metadata in a dataset's root: an image_id column, and any other columns
# (a site, hospital or device) that are added to the manifest.
METADATA_FILE = "metadata.csv"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_metadata(manifest: pd.DataFrame, path: Path, *, dataset: str) -> pd.DataFrame:
    """The manifest with the extra columns of a metadata CSV (image_id + columns), matched by
    image_id; every image must be listed, and the manifest's own columns cannot be replaced."""
    metadata = pd.read_csv(path, dtype={"image_id": str})
    if "image_id" not in metadata.columns:
        raise ValueError(f"dataset {dataset!r}: {path} has no image_id column")
    clash = sorted(set(metadata.columns) & set(MANIFEST_COLUMNS) - {"image_id"})
    if clash:
        raise ValueError(f"dataset {dataset!r}: {path} redefines manifest columns {clash}")
    if metadata["image_id"].duplicated().any():
        raise ValueError(f"dataset {dataset!r}: {path} lists an image_id more than once")
    missing = sorted(set(manifest["image_id"]) - set(metadata["image_id"]))
    if missing:
        raise ValueError(
            f"dataset {dataset!r}: {path} lacks {len(missing)} images, e.g. {missing[:3]}"
        )
    return manifest.merge(metadata, on="image_id", how="left", validate="one_to_one")


def finalise_manifest(frame: pd.DataFrame, *, dataset: str, source: Path) -> pd.DataFrame:
    """Check a raw manifest, number the classes (sorted names) and order rows by image_id."""
    if frame.empty:
        raise ValueError(f"dataset {dataset!r}: no images found under {source}")
    class_names = sorted(frame["label_name"].unique())
    if len(class_names) < 2:
        raise ValueError(
            f"dataset {dataset!r}: only one class ({class_names[0]!r}) found under {source}; "
            "classification needs at least two"
        )
    frame = frame.assign(label=frame["label_name"].map(class_names.index).astype("int64"))
    frame = frame.sort_values("image_id", kind="stable").reset_index(drop=True)
    counts = frame["label_name"].value_counts().sort_index()
    log.info(
        "dataset %s: %d images in %d classes (%s)",
        dataset,
        len(frame),
        len(class_names),
        ", ".join(f"{name}: {n}" for name, n in counts.items()),
    )
    return frame[MANIFEST_COLUMNS]


def class_names(manifest: pd.DataFrame) -> list[str]:
    """Class names in label order."""
    pairs = manifest[["label", "label_name"]].drop_duplicates().sort_values("label")
    return pairs["label_name"].tolist()
