"""Synthetic "phantom" datasets that stand in for the study's medical images.

With no real data configured, the workflow trains and explains on three deterministic
synthetic tasks that mimic the study's ones:

* ``brain_mri``   axial MRI-like slices (skull ring, textured brain, ventricles) with a glioma
  (irregular, blurry, heterogeneous, intra-axial), a meningioma (round, bright, sharp, against
  the inner skull), a pituitary mass (small, midline, lower-central) or no tumour;
* ``skin_lesion`` dermoscopy-like RGB images with a benign (round, symmetric, even brown) or a
  malignant (asymmetric, notched, several colours) lesion;
* ``chest_xray``  radiograph-like images (lungs, ribs, heart, spine) that are normal or show a
  patchy pneumonic consolidation in one lung.

Every image comes with a boolean ground-truth mask of the rendered abnormality (all False for
healthy images), so CAMs can be scored against it. The renderers draw anatomy, lesion, hair and
acquisition nuisance from separate random streams: the same generator gives the same patient
with or without the lesion, which the tests use to check that the mask covers what was drawn.

Intensities are built in [0, 1] on a grid of normalised coordinates (x, y in [-1, 1], y pointing
down) so that shapes do not depend on the image size. The difficulty knobs are module-level
constants of each anatomy's module (``brain``, ``skin``, ``chest``) and of ``base``; they are
read at render time, so they can be changed before generating.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from xaimed.data.manifest import METADATA_FILE
from xaimed.data.phantoms.base import Renderer, _to_uint8
from xaimed.data.phantoms.brain import _render_brain
from xaimed.data.phantoms.chest import _render_chest
from xaimed.data.phantoms.skin import _render_skin
from xaimed.shift.corruptions import acquire_at_site, site_profile

PHANTOM_CLASSES: dict[str, tuple[str, ...]] = {
    "brain_mri": ("glioma", "meningioma", "no_tumor", "pituitary"),
    "skin_lesion": ("benign", "malignant"),
    "chest_xray": ("normal", "pneumonia"),
}

HEALTHY_CLASSES: frozenset[str] = frozenset({"no_tumor", "normal"})

MASK_SUFFIX = "_mask"

MIN_IMAGE_SIZE = 32

# ----------------------------------------------------------------------------- public API

_RENDERERS: dict[str, Renderer] = {
    "brain_mri": _render_brain,
    "skin_lesion": _render_skin,
    "chest_xray": _render_chest,
}


def _check_kind(kind: str) -> tuple[str, ...]:
    if kind not in PHANTOM_CLASSES:
        known = ", ".join(PHANTOM_CLASSES)
        raise ValueError(f"unknown phantom kind {kind!r}; known kinds: {known}")
    return PHANTOM_CLASSES[kind]


def _check_size(value: int, name: str) -> int:
    if int(value) != value or value < MIN_IMAGE_SIZE:
        raise ValueError(f"{name} must be an integer >= {MIN_IMAGE_SIZE}, got {value!r}")
    return int(value)


def render(
    kind: str, class_name: str, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom: image uint8 (size,size) for grayscale kinds or (size,size,3) for
    skin_lesion, and mask bool (size,size) of the rendered abnormality (empty if healthy).

    The generator is split into anatomy, lesion, hair and acquisition streams, so the same
    generator state gives the same patient whatever the class.
    """
    classes = _check_kind(kind)
    if class_name not in classes:
        raise ValueError(f"unknown class {class_name!r} for {kind!r}; known: {', '.join(classes)}")
    size = _check_size(size, "size")
    image, mask = _RENDERERS[kind](class_name, rng, size)
    return _to_uint8(image), np.asarray(mask, dtype=bool)


def phantom_rng(kind: str, class_name: str, index: int, seed: int = 0) -> np.random.Generator:
    """The generator of image `index` of a class: depends only on (seed, kind, class, index)."""
    classes = _check_kind(kind)
    kind_index = list(PHANTOM_CLASSES).index(kind)
    return np.random.default_rng([seed, kind_index, classes.index(class_name), index])


def write_phantom_dataset(
    kind: str,
    out_dir: str | Path,
    n_per_class: int,
    image_size: int = 128,
    seed: int = 0,
    sites: int = 1,
    copies: bool = False,
) -> pd.DataFrame:
    """Write out_dir/<class>/<kind>_<class>_<i:04d>.png and ..._mask.png (mask as 0/255
    grayscale PNG) for every class; returns a table with columns path, mask_path, class_name
    (and copy_of with ``copies``).

    Deterministic: same arguments -> byte-identical files, and image i of a class does not
    depend on n_per_class. Creates out_dir. Unknown kind -> ValueError naming the kind and the
    known ones; n_per_class < 1, image_size < 32 or seed < 0 -> ValueError naming the argument.
    Image i of a class is rendered from phantom_rng(kind, class_name, i, seed).

    Image i of every class is acquired at site i % `sites`
    (:func:`xaimed.shift.corruptions.site_profile`: intensity curve, noise, blur, bias field,
    resolution); site 0 changes nothing, so `sites=1` writes the same bytes as before sites existed.
    With several sites, `metadata.csv` in out_dir lists each image_id with its site, for the
    manifest.

    ``copies`` plants the kinds of copies public sets carry (:func:`_plant_copies`), so the
    leakage guard (duplicates.parquet, grouped folds) has something to find.
    """
    classes = _check_kind(kind)
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    image_size = _check_size(image_size, "image_size")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(sites) != sites or sites < 1:
        raise ValueError(f"sites must be an integer >= 1, got {sites!r}")
    profiles = [site_profile(k) for k in range(int(sites))]
    out_dir = Path(out_dir)
    rows, metadata = [], []
    for class_name in classes:
        class_dir = out_dir / class_name
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(int(n_per_class)):
            rng = phantom_rng(kind, class_name, i, int(seed))
            image, mask = render(kind, class_name, rng, image_size)
            site = i % int(sites)
            # A stream of its own, so the site never changes what the renderer draws.
            site_rng = np.random.default_rng([int(seed), *rng.integers(0, 2**62, size=2)])
            image = acquire_at_site(image, profiles[site], site_rng)
            stem = f"{kind}_{class_name}_{i:04d}"
            metadata.append({"image_id": f"{class_name}/{stem}", "site": f"site{site}"})
            path = class_dir / f"{stem}.png"
            mask_path = class_dir / f"{stem}{MASK_SUFFIX}.png"
            # Fast zlib level: generation time matters more than a few kB per file.
            Image.fromarray(image).save(path, compress_level=1)
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, compress_level=1)
            rows.append({"path": str(path), "mask_path": str(mask_path), "class_name": class_name})
    columns = ["path", "mask_path", "class_name"]
    if copies:
        planted = _plant_copies(kind, out_dir, int(n_per_class))
        for copy in planted:
            site = {m["image_id"]: m["site"] for m in metadata}[copy.pop("source_id")]
            metadata.append({"image_id": copy.pop("image_id"), "site": site})
        rows += planted
        columns.append("copy_of")
    if sites > 1:  # a single-site dataset stays exactly as it was, folder and manifest
        pd.DataFrame(metadata).to_csv(out_dir / METADATA_FILE, index=False)
    return pd.DataFrame(rows, columns=columns)


def _plant_copies(kind: str, out_dir: Path, n_per_class: int) -> list[dict]:
    """Three copies of written phantoms, as public sets carry them: one resized to 3/4 and one
    JPEG-recompressed in their own class, and one exact copy of a lesion image filed under
    another class (a label error: duplicates.parquet shows label_a != label_b). Each keeps
    its source's mask, resized with it."""
    classes = PHANTOM_CLASSES[kind]
    lesion = next(c for c in classes if c not in HEALTHY_CLASSES)
    relabel_to = next((c for c in classes if c in HEALTHY_CLASSES), classes[-1])
    if relabel_to == lesion:
        relabel_to = next(c for c in classes if c != lesion)
    plan = [  # (source class, index, target class, how)
        (classes[0], 0, classes[0], "resized"),
        (classes[-1], 1, classes[-1], "recompressed"),
        (lesion, 2, relabel_to, "relabelled"),
    ]
    rows = []
    for k, (source_class, index, target_class, how) in enumerate(plan):
        stem = f"{kind}_{source_class}_{min(index, n_per_class - 1):04d}"
        source = out_dir / source_class / f"{stem}.png"
        with Image.open(source) as opened:
            image = opened.copy()
        with Image.open(out_dir / source_class / f"{stem}{MASK_SUFFIX}.png") as opened:
            mask = opened.copy()
        name = f"{kind}_{target_class}_copy{k}_{how}"
        path = out_dir / target_class / f"{name}{'.jpg' if how == 'recompressed' else '.png'}"
        if how == "resized":
            side = image.width * 3 // 4
            image = image.resize((side, side), Image.Resampling.LANCZOS)
            mask = mask.resize((side, side), Image.Resampling.NEAREST)
        if how == "relabelled":
            shutil.copyfile(source, path)  # byte for byte: an exact duplicate
        elif how == "recompressed":
            image.save(path, quality=90)
        else:
            image.save(path, compress_level=1)
        mask_path = out_dir / target_class / f"{name}{MASK_SUFFIX}.png"
        mask.save(mask_path, compress_level=1)
        rows.append(
            {
                "path": str(path),
                "mask_path": str(mask_path),
                "class_name": target_class,
                "copy_of": str(source),
                "image_id": f"{target_class}/{name}",
                "source_id": f"{source_class}/{stem}",
            }
        )
    return rows
