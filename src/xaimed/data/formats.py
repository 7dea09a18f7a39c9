"""Dataset formats: each lister turns a dataset's files into manifest entries."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from xaimed.data.images import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    has_dicom_preamble,
    npz_source,
)
from xaimed.data.manifest import ENTRY_COLUMNS, METADATA_FILE, SPLIT_NAMES

log = logging.getLogger("xaimed.data.formats")


FORMATS = ("imagefolder", "ham10000", "medmnist", "csv")

HAM10000_COLUMNS = ("lesion_id", "image_id", "dx")


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
