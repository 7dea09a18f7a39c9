"""Ingest a dataset into a manifest: one row per image, with its label, group, split and hash.

The manifest is the single source of truth downstream: folds, preprocessing, training and
explanation all refer to images by `image_id` and to classes by `label` (index into the sorted
class names) and `label_name`.

Each on-disk format (:data:`xaimed.data.formats.FORMATS`) only lists its images ("entries":
image_id, path, raw label, group, split, mask); reading, checking and hashing every image is
shared here, so every format gets the same rejected-image and duplicate tables.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xaimed.data.duplicates import find_duplicates
from xaimed.data.formats import FORMATS, LISTERS
from xaimed.data.images import UnreadableImage, fingerprints, read_image
from xaimed.data.manifest import (
    ENTRY_COLUMNS,
    METADATA_FILE,
    REJECTED_COLUMNS,
    add_metadata,
    file_sha256,
    finalise_manifest,
)

log = logging.getLogger("xaimed.data.ingest")


#: on_bad_image: list an unreadable image in rejected.parquet, or stop ingest.
BAD_IMAGE_ACTIONS = ("skip", "fail")


@dataclass(frozen=True)
class IngestOptions:
    """How one dataset is read: the ingest keys of its `datasets` entry, schema defaults
    filled (common.smk's ingest_params). The optional keys are None where the entry leaves
    them out; each format's lister takes its own (:meth:`lister_options`)."""

    format: str
    mask_suffix: str
    label_map: dict[str, str]
    on_bad_image: str
    near_duplicate_distance: int
    dicom_window: tuple[float, float] | None
    mask_dir: str | None
    group_pattern: str | None
    metadata: str | None
    path_column: str | None
    label_column: str | None
    group_column: str | None
    split_column: str | None
    mask_column: str | None

    #: The keys every dataset entry has once the schema's defaults are filled.
    REQUIRED = ("format", "mask_suffix", "label_map", "on_bad_image", "near_duplicate_distance")
    #: Read by ingest itself, not by a format's lister.
    SHARED = frozenset(
        {"format", "label_map", "on_bad_image", "near_duplicate_distance", "dicom_window"}
    )
    #: Options with a schema default: present whether or not the entry gives them.
    DEFAULTED = frozenset({"mask_suffix", "path_column", "label_column"})

    @classmethod
    def from_config(cls, params: dict[str, Any]) -> IngestOptions:
        """The options of an ingest job's params; an unknown or missing key is an error."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        missing = [key for key in cls.REQUIRED if key not in params]
        if unknown or missing:
            raise ValueError(
                f"ingest options: unknown {unknown}, missing {missing}; known: {known}"
            )
        return cls(**{key: params.get(key) for key in known})

    @classmethod
    def with_defaults(cls, **given: Any) -> IngestOptions:
        """``given`` (format imagefolder unless given) with the schema's defaults of a folder
        dataset (workflow/schemas/config.schema.yaml) for the rest."""
        from xaimed.config.schema import schema_defaults

        entry = schema_defaults("folder_dataset", **{"format": "imagefolder", **given})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"unknown ingest option(s) {unknown}; known: {sorted(known)}")
        return cls.from_config({k: v for k, v in entry.items() if k in known})

    def __post_init__(self) -> None:
        if self.format not in LISTERS:
            raise ValueError(f"unknown format {self.format!r}; supported: {FORMATS}")
        if self.on_bad_image not in BAD_IMAGE_ACTIONS:
            raise ValueError(
                f"on_bad_image must be one of {BAD_IMAGE_ACTIONS}, not {self.on_bad_image!r}"
            )
        if self.dicom_window is not None:  # YAML gives a list
            object.__setattr__(self, "dicom_window", tuple(self.dicom_window))

    def lister_options(self, dataset: str) -> dict[str, Any]:
        """The options the format's lister takes; one given that neither it nor ingest uses
        is logged, not passed."""
        taken = inspect.signature(LISTERS[self.format]).parameters
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        given = {key: value for key, value in given.items() if value is not None}
        unused = sorted(set(given) - set(taken) - self.SHARED - self.DEFAULTED)
        if unused:
            log.warning("dataset %s: format %s does not use %s", dataset, self.format, unused)
        return {key: value for key, value in given.items() if key in taken}


@dataclass(frozen=True)
class Ingested:
    """What ingest writes: the manifest and the integrity tables beside it."""

    manifest: pd.DataFrame
    rejected: pd.DataFrame
    duplicates: pd.DataFrame


def _content_hash(path: str, pixels: np.ndarray) -> str:
    if Path(path).is_file():
        return file_sha256(Path(path))
    # an image inside an .npz: hash its pixels (and shape)
    return hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()


def _apply_label_map(entries: pd.DataFrame, label_map: dict[str, str], dataset: str) -> None:
    label_map = {str(k): str(v) for k, v in label_map.items()}  # YAML reads `0:` as a number
    unused = sorted(set(label_map) - set(entries["label_name"]))
    if unused:  # a config may map both namings of a dataset; only one of them is present
        log.info("dataset %s: label_map keys not among the classes: %s", dataset, unused)
    entries["label_name"] = entries["label_name"].map(lambda name: label_map.get(name, name))


def _inspect(
    entries: pd.DataFrame, dataset: str, on_bad_image: str, dicom_window: list | None
) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray], pd.DataFrame]:
    """Read every image once: content hash, size and fingerprints (perceptual hash and
    thumbnail) of the readable ones, a reason for each unreadable one."""
    window = tuple(dicom_window) if dicom_window else None
    good, hashes, thumbnails, rejected = [], [], [], []
    n = len(entries)
    step = max(1, n // 10)
    for row, entry in enumerate(entries.itertuples(index=False)):
        try:
            pixels = read_image(entry.path, window)
            if pixels.size == 0:
                raise UnreadableImage("no pixels")
        except UnreadableImage as error:
            if on_bad_image == "fail":
                raise ValueError(
                    f"dataset {dataset!r}: cannot read image {entry.path}: {error} "
                    "(on_bad_image: fail; `skip` lists bad files in rejected.parquet instead)"
                ) from None
            rejected.append({**entry._asdict(), "reason": str(error)})
        else:
            good.append(
                {
                    **entry._asdict(),
                    "sha256": _content_hash(entry.path, pixels),
                    "height": int(pixels.shape[0]),
                    "width": int(pixels.shape[1]),
                }
            )
            phash, small = fingerprints(pixels)
            hashes.append(phash)
            thumbnails.append(small)
        if (row + 1) % step == 0 or row + 1 == n:
            log.info("images read %d/%d (%d rejected)", row + 1, n, len(rejected))
    rejected = pd.DataFrame(rejected, columns=[*ENTRY_COLUMNS, "reason"])[REJECTED_COLUMNS]
    if not good:
        raise ValueError(
            f"no readable images in dataset {dataset!r}: all {n} unreadable, e.g. "
            f"{rejected['path'].iloc[0]} ({rejected['reason'].iloc[0]})"
        )
    if len(rejected):
        log.warning(
            "dataset %s: %d unreadable image(s) left out, e.g. %s (%s); all in rejected.parquet",
            dataset,
            len(rejected),
            rejected["path"].iloc[0],
            rejected["reason"].iloc[0],
        )
    frame = pd.DataFrame(good, columns=[*ENTRY_COLUMNS, "sha256", "height", "width"])
    found = (np.array(hashes, dtype=np.uint64), np.array(thumbnails).reshape(len(good), -1))
    return frame, found, rejected


def ingest_dataset(source: str | Path, *, dataset: str, options: IngestOptions) -> Ingested:
    """Manifest, rejected images and duplicate pairs of a dataset in any of :data:`FORMATS`.

    The format's own options go to its lister (mask_suffix, metadata, *_column);
    ``label_map`` renames raw class names (several to one name merges them).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"dataset {dataset!r}: {source} does not exist")
    entries = LISTERS[options.format](source, **options.lister_options(dataset))
    if entries.empty:
        raise ValueError(f"dataset {dataset!r}: no images found under {source}")
    repeated = entries["image_id"][entries["image_id"].duplicated()]
    if len(repeated):
        raise ValueError(f"dataset {dataset!r}: image id {repeated.iloc[0]!r} occurs twice")
    entries = entries.sort_values("image_id", kind="stable").reset_index(drop=True)
    _apply_label_map(entries, options.label_map, dataset)
    frame, (hashes, thumbnails), rejected = _inspect(
        entries, dataset, options.on_bad_image, options.dicom_window
    )
    manifest = finalise_manifest(frame, dataset=dataset, source=source)
    if source.is_dir() and (source / METADATA_FILE).is_file():
        manifest = add_metadata(manifest, source / METADATA_FILE, dataset=dataset)
    duplicates = find_duplicates(manifest, hashes, thumbnails, options.near_duplicate_distance)
    return Ingested(manifest, rejected, duplicates)


def ingest(source: str | Path, *, dataset: str, **options: Any) -> pd.DataFrame:
    """The manifest alone (see :func:`ingest_dataset`); ``options`` as in a config's dataset
    entry, the schema's defaults for the rest (:meth:`IngestOptions.with_defaults`)."""
    return ingest_dataset(
        source, dataset=dataset, options=IngestOptions.with_defaults(**options)
    ).manifest


def ingest_imagefolder(root: str | Path, *, dataset: str = "dataset", **options) -> pd.DataFrame:
    """The manifest of a one-folder-per-class dataset (see :func:`imagefolder_entries`)."""
    return ingest(root, dataset=dataset, format="imagefolder", **options)
