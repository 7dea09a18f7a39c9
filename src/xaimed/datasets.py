"""Ingest a dataset into a manifest: one row per image, with its label, group, split and hash.

The manifest is the single source of truth downstream: folds, preprocessing, training and
explanation all refer to images by `image_id` and to classes by `label` (index into the sorted
class names) and `label_name`.

Each on-disk format (:data:`FORMATS`) only lists its images ("entries": image_id, path, raw
label, group, split, mask); reading, checking and hashing every image is shared, so every
format gets the same rejected-image and duplicate tables.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xaimed.duplicates import find_duplicates
from xaimed.images import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    UnreadableImage,
    has_dicom_preamble,
    npz_source,
    perceptual_hash,
    read_image,
    standardized_thumbnail,
)

log = logging.getLogger("xaimed.datasets")

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
FORMATS = ("imagefolder", "ham10000", "medmnist", "csv")
#: on_bad_image: list an unreadable image in rejected.parquet, or stop ingest.
BAD_IMAGE_ACTIONS = ("skip", "fail")
HAM10000_COLUMNS = ("lesion_id", "image_id", "dx")
# Optional per-image metadata in a dataset's root: an image_id column, and any other columns
# (a site, hospital or device) that are added to the manifest.
METADATA_FILE = "metadata.csv"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entries(rows: list[dict], names: list[str] | None = None) -> pd.DataFrame:
    """The entry table. ``names``: each image's file name relative to the dataset, whose
    suffix the image_id drops unless two files differ only by it (scan.tif, scan.dcm)."""
    frame = pd.DataFrame(rows, columns=ENTRY_COLUMNS)
    if names is not None:
        clash = frame["image_id"].duplicated(keep=False).to_numpy()
        frame.loc[clash, "image_id"] = [n for n, c in zip(names, clash, strict=True) if c]
    return frame


def _visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders, without hidden ones and macOS archive debris (__MACOSX). A symlink to a
    folder is not entered: one pointing at the dataset or an ancestor (``toploop -> .``) would
    become a class full of copies of every image."""
    found, hidden = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_dir():
            continue
        if path.name.startswith((".", "__")):
            hidden.append(path.name)
            continue
        if path.is_symlink():
            log.warning("%s: a symlink to a folder; not followed", path)
            continue
        found.append(path)
    if hidden:
        log.info("%s: hidden folders skipped: %s", folder, hidden)
    return found


def _class_roots(root: Path) -> list[tuple[str | None, Path]]:
    """(split, folder holding class folders): one per split folder, else the root itself.

    Kaggle's chest X-ray archive holds train/val/test next to a second copy of itself
    (chest_xray/chest_xray) and __MACOSX: when split folders exist, other folders are ignored
    (and logged). A lone folder that holds split folders (a wrapper left by unzipping) is
    entered.
    """
    subdirs = _visible_dirs(root)
    if len(subdirs) == 1 and any(p.name.lower() in SPLIT_NAMES for p in _visible_dirs(subdirs[0])):
        return _class_roots(subdirs[0])
    splits = [p for p in subdirs if p.name.lower() in SPLIT_NAMES]
    if not splits:
        return [(None, root)]
    ignored = [p.name for p in subdirs if p not in splits]
    if ignored:
        log.warning("%s: split folders found; ignoring the other folders %s", root, ignored)
    return [(p.name.lower(), p) for p in splits]


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES | DICOM_SUFFIXES


def _class_files(class_dir: Path, skipped: list[Path]) -> list[Path]:
    """Every file under a class folder, without following folder symlinks (logged); hidden
    files are left out and counted in ``skipped``."""
    files = []
    for folder, dirs, names in os.walk(class_dir):
        for name in sorted(dirs):
            if (Path(folder) / name).is_symlink():
                log.warning("%s: a symlink to a folder; not followed", Path(folder) / name)
        hidden = [d for d in dirs if d.startswith(".")]
        if hidden:
            log.info("%s: hidden folders skipped: %s", folder, sorted(hidden))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            (skipped if name.startswith(".") else files).append(Path(folder) / name)
    return files


def _mask_for(image: Path, mask_suffix: str, mask_dir: Path | None, relative: Path) -> Path | None:
    """The image's mask: `X<mask_suffix>` beside it, or the same relative path (any of the
    image's suffix or .png) under ``mask_dir``."""
    folder = image.parent if mask_dir is None else mask_dir / relative.parent
    stems = (
        [f"{image.stem}{mask_suffix}"]
        if mask_dir is None
        else [image.stem, f"{image.stem}{mask_suffix}"]
    )
    suffixes = dict.fromkeys((image.suffix, ".png"))
    return next(
        (
            folder / f"{stem}{s}"
            for stem in stems
            for s in suffixes
            if (folder / f"{stem}{s}").is_file()
        ),
        None,
    )


def _group_of(relative: str, pattern: re.Pattern | None, unmatched: list[str]) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(relative)
    if match is None or not match.group(1):
        unmatched.append(relative)
        return None
    return match.group(1)


def imagefolder_entries(
    root: Path,
    *,
    mask_suffix: str,
    mask_dir: str | None = None,
    group_pattern: str | None = None,
) -> pd.DataFrame:
    """One folder per class, optionally under split folders (train/val/test, Training/Testing,
    any case). A file `X<mask_suffix>.png` beside image `X` is its lesion mask; with
    ``mask_dir`` (relative to ``root`` or absolute) masks lie in a separate tree that mirrors
    the dataset's, under the image's own name. ``group_pattern``: a regular expression
    whose first group, searched in each image's path below ``root``, is its patient."""
    pattern = _compile_group_pattern(group_pattern)
    masks = None if mask_dir is None else (root / mask_dir).resolve()
    if masks is not None and not masks.is_dir():
        raise FileNotFoundError(f"mask_dir {masks} does not exist")
    rows, names, skipped, unmatched, mask_files = [], [], [], [], set()
    class_roots = _class_roots(root)
    # files beside the class (or split) folders belong to no class
    levels = {root, *(f for _, c in class_roots if c != root for f in (c, c.parent))}
    skipped += [
        f
        for level in sorted(levels)
        for f in sorted(level.iterdir())
        if not f.is_dir() and not f.name.startswith(".") and f != root / METADATA_FILE
    ]
    for split, class_root in class_roots:
        for class_dir in _visible_dirs(class_root):
            if masks is not None and class_dir.resolve() == masks:
                continue
            n_before = len(rows)
            for image in _class_files(class_dir, skipped):
                relative = image.relative_to(root)
                if _is_image_name(image):
                    if mask_suffix and image.stem.endswith(mask_suffix):
                        mask_files.add(str(image))  # a mask, found through its image
                        continue
                    image_id = relative.with_suffix("").as_posix()
                elif has_dicom_preamble(image):
                    image_id = relative.as_posix()  # DICOM names are often dotted UIDs
                else:
                    skipped.append(image)
                    continue
                mask = _mask_for(image, mask_suffix, masks, relative)
                names.append(relative.as_posix())
                rows.append(
                    {
                        "image_id": image_id,
                        "path": str(image),
                        "label_name": class_dir.name,
                        "group": _group_of(relative.as_posix(), pattern, unmatched),
                        "split": split,
                        "mask_path": str(mask) if mask else None,
                    }
                )
            if len(rows) == n_before:
                log.warning("%s: class folder holds no images; skipped", class_dir)
    orphans = sorted(mask_files - {row["mask_path"] for row in rows})
    if orphans:
        log.warning(
            "%s: %d mask(s) without an image skipped, e.g. %s", root, len(orphans), orphans[0]
        )
    if skipped:
        log.warning(
            "%s: %d file(s) that are not images skipped, e.g. %s",
            root,
            len(skipped),
            skipped[0].relative_to(root).as_posix(),
        )
    if unmatched:
        log.warning(
            "%s: %d of %d image names do not match group_pattern %r and have no group, e.g. %s",
            root,
            len(unmatched),
            len(rows),
            group_pattern,
            unmatched[0],
        )
    if masks is not None:
        n_masks = sum(row["mask_path"] is not None for row in rows)
        log.info("%s: %d of %d images have a mask under %s", root, n_masks, len(rows), masks)
    return _entries(rows, names)


def _compile_group_pattern(pattern: str | None) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"group_pattern {pattern!r} is not a regular expression: {error}"
        ) from None
    if compiled.groups < 1:
        raise ValueError(f"group_pattern {pattern!r} needs a group (...) for the patient id")
    return compiled


def _find_metadata(root: Path) -> Path:
    found = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.lower().startswith("ham10000_metadata")
        and p.suffix.lower() in (".csv", ".tab", ".txt", "")
    )
    if not found:
        raise FileNotFoundError(
            f"no HAM10000_metadata.csv under {root}; set `metadata:` to the metadata file"
        )
    return found[0]


def ham10000_entries(root: Path, *, mask_suffix: str, metadata: str | None = None) -> pd.DataFrame:
    """HAM10000: `HAM10000_metadata.csv` (lesion_id, image_id, dx, ...) and the images, in any
    folders under `root` (HAM10000_images_part_1/_2). `dx` is the class, `lesion_id` the group:
    the set has several images of one lesion. Kaggle's copy holds each image twice (upper- and
    lower-case folders): the first path in sorted order is used."""
    table_path = Path(metadata) if metadata else _find_metadata(root)
    table = pd.read_csv(table_path, sep=None, engine="python", dtype=str)
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in HAM10000_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{table_path}: missing column(s) {missing}; found {list(table.columns)}")
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            files.setdefault(path.stem, path)
    listed = set(table["image_id"]) | {f"{i}{mask_suffix}" for i in table["image_id"]}
    unlisted = sorted(set(files) - listed)
    if unlisted:
        log.warning(
            "%s: %d image(s) not in %s skipped, e.g. %s",
            root,
            len(unlisted),
            table_path.name,
            files[unlisted[0]],
        )
    rows = []
    for lesion, image_id, dx in table[list(HAM10000_COLUMNS)].itertuples(index=False):
        image, mask = files.get(image_id), files.get(f"{image_id}{mask_suffix}")
        rows.append(
            {
                "image_id": image_id,
                # a missing image stays in the list: inspection rejects it as "file not found"
                "path": str(image) if image else str(root / f"{image_id}.jpg"),
                "label_name": dx,
                "group": lesion,
                "split": None,
                "mask_path": str(mask) if mask else None,
            }
        )
    return _entries(rows)


def medmnist_entries(npz: Path) -> pd.DataFrame:
    """A MedMNIST `.npz` ({train,val,test}_images, {train,val,test}_labels). Images stay in
    the file: their manifest path is `file.npz#<split>/<index>`. Classes are the label
    numbers, zero-padded to one width so that their sorted order is the numeric order."""
    if not npz.is_file():
        raise FileNotFoundError(f"MedMNIST file {npz} does not exist")
    rows = []
    with np.load(npz) as archive:
        splits = [s for s in ("train", "val", "test") if f"{s}_images" in archive.files]
        if not splits:
            raise ValueError(f"{npz} holds no <split>_images array; found {archive.files}")
        try:
            labels = {s: np.asarray(archive[f"{s}_labels"]) for s in splits}
        except (KeyError, ValueError) as error:  # no labels, or a pickled object array
            raise ValueError(f"{npz}: cannot read its labels: {error}") from None
    n_classes = int(max(v.max() for v in labels.values())) + 1
    width = len(str(n_classes - 1))
    for split in splits:
        values = labels[split]
        if values.ndim == 2 and values.shape[1] != 1:
            raise ValueError(
                f"{npz}: {split}_labels has shape {values.shape}: a multi-label set; xaimed "
                "classifies one label per image"
            )
        digits = len(str(len(values) - 1))
        for index, value in enumerate(values.reshape(-1)):
            rows.append(
                {
                    "image_id": f"{split}/{index:0{digits}d}",
                    "path": npz_source(npz, split, index),
                    "label_name": f"{int(value):0{width}d}",
                    "group": None,
                    "split": split,
                    "mask_path": None,
                }
            )
    return _entries(rows)


def csv_entries(
    table_path: Path,
    *,
    path_column: str,
    label_column: str,
    group_column: str | None = None,
    split_column: str | None = None,
    mask_column: str | None = None,
) -> pd.DataFrame:
    """Any table with a path and a label column (optional group, split, mask columns); relative
    paths are relative to the table's folder."""
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    wanted = [c for c in (path_column, label_column, group_column, split_column, mask_column) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"{table_path}: missing column(s) {missing}; found {list(table.columns)}")
    repeated = table[path_column][table[path_column].duplicated()]
    if len(repeated):
        raise ValueError(f"{table_path}: image {repeated.iloc[0]!r} is listed more than once")
    base = table_path.parent

    def resolve(value: str) -> Path:
        return Path(value) if Path(value).is_absolute() else base / value

    def optional(row: pd.Series, column: str | None) -> str | None:
        return (row[column] or None) if column else None

    rows = []
    for _, row in table.iterrows():
        path = resolve(row[path_column])
        mask = optional(row, mask_column)
        split = optional(row, split_column)
        rows.append(
            {
                "image_id": Path(row[path_column]).with_suffix("").as_posix(),
                "path": str(path),
                "label_name": row[label_column],
                "group": optional(row, group_column),
                "split": split.lower() if split else None,
                "mask_path": str(resolve(mask)) if mask else None,
            }
        )
    return _entries(rows, table[path_column].tolist())


LISTERS = {
    "imagefolder": imagefolder_entries,
    "ham10000": ham10000_entries,
    "medmnist": medmnist_entries,
    "csv": csv_entries,
}


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
        from xaimed.config_check import schema_defaults

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
            hashes.append(perceptual_hash(pixels))
            thumbnails.append(standardized_thumbnail(pixels))
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
    fingerprints = (np.array(hashes, dtype=np.uint64), np.array(thumbnails).reshape(len(good), -1))
    return frame, fingerprints, rejected


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
