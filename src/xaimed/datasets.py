"""Ingest a dataset into a manifest: one row per image, with its label, group, split and hash.

The manifest is the single source of truth downstream: folds, preprocessing, training and
explanation all refer to images by `image_id` and to classes by `label` (index into the sorted
class names) and `label_name`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd
from PIL import Image

log = logging.getLogger("xaimed.datasets")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
# Folder names that mean "a predefined split", not "a class" (compared case-insensitively).
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})
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
# Optional per-image metadata in a dataset's root: an image_id column, and any other columns
# (a site, hospital or device) that are added to the manifest.
METADATA_FILE = "metadata.csv"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _class_roots(root: Path) -> list[tuple[str | None, Path]]:
    """(split, folder holding class folders): the root itself, or one per split folder."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    splits = [p for p in subdirs if p.name.lower() in SPLIT_NAMES]
    if splits and len(splits) == len(subdirs):
        return [(p.name.lower(), p) for p in splits]
    return [(None, root)]


def _image_files(class_dir: Path, mask_suffix: str) -> list[Path]:
    return sorted(
        p
        for p in class_dir.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(mask_suffix)
    )


def _mask_for(image: Path, mask_suffix: str) -> Path | None:
    for suffix in (image.suffix, ".png"):
        candidate = image.with_name(f"{image.stem}{mask_suffix}{suffix}")
        if candidate.exists():
            return candidate
    return None


def ingest_imagefolder(
    root: str | Path,
    *,
    dataset: str = "dataset",
    mask_suffix: str = "_mask",
    label_map: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Manifest of a one-folder-per-class dataset, optionally under split folders.

    A file `X<mask_suffix>.png` beside image `X` is taken as its lesion mask. `label_map`
    renames (or, mapping several folders to one name, merges) classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r}: folder {root} does not exist")
    label_map = label_map or {}
    rows = []
    for split, class_root in _class_roots(root):
        for class_dir in sorted(p for p in class_root.iterdir() if p.is_dir()):
            label_name = label_map.get(class_dir.name, class_dir.name)
            for image in _image_files(class_dir, mask_suffix):
                with Image.open(image) as handle:
                    width, height = handle.size
                mask = _mask_for(image, mask_suffix)
                rows.append(
                    {
                        "image_id": image.relative_to(root).with_suffix("").as_posix(),
                        "path": str(image),
                        "label_name": label_name,
                        "group": None,
                        "split": split,
                        "sha256": file_sha256(image),
                        "height": height,
                        "width": width,
                        "mask_path": str(mask) if mask else None,
                    }
                )
    manifest = finalise_manifest(pd.DataFrame(rows), dataset=dataset, source=root)
    if (root / METADATA_FILE).is_file():
        manifest = add_metadata(manifest, root / METADATA_FILE, dataset=dataset)
    return manifest


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


FORMATS = ("imagefolder",)


def ingest(
    source: str | Path,
    *,
    dataset: str,
    format: str = "imagefolder",  # noqa: A002 - the config's own word
    mask_suffix: str = "_mask",
    label_map: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The manifest of a dataset in any supported on-disk format."""
    if format == "imagefolder":
        return ingest_imagefolder(
            source, dataset=dataset, mask_suffix=mask_suffix, label_map=label_map
        )
    raise ValueError(f"dataset {dataset!r}: unknown format {format!r}; supported: {FORMATS}")
