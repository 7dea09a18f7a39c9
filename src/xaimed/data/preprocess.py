"""Preprocess images once into arrays that training and explanation read fast.

The store is two `.npy` files in manifest row order: `images.npy` uint8 (N, 3, S, S) and
`masks.npy` uint8 (N, S, S) with 1 inside the lesion (all zeros where no mask is known). Both
are memory-mappable, so a job reads only the rows it needs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from xaimed.data.images import open_image, read_image, to_rgb
from xaimed.io import integrity

log = logging.getLogger("xaimed.data.preprocess")


def _square(image: Image.Image, fill: int | tuple[int, ...]) -> Image.Image:
    """Pad to a square around the centre: keeps every pixel (a crop could cut the lesion)."""
    width, height = image.size
    side = max(width, height)
    if width == height:
        return image
    left, top = (side - width) // 2, (side - height) // 2
    return ImageOps.expand(image, (left, top, side - width - left, side - height - top), fill)


def load_image(
    path: str | Path, size: int, dicom_window: tuple[float, float] | None = None
) -> np.ndarray:
    """An image (any source :func:`xaimed.data.images.read_image` reads) as uint8 (3, size, size)
    RGB; grayscale is replicated to three channels."""
    pixels = read_image(path, dicom_window)
    # Grayscale is resized before it is replicated: a third of the work, the same pixels.
    image = Image.fromarray(pixels)
    image = _square(image, (0,) * len(image.getbands())).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return to_rgb(np.asarray(image, dtype=np.uint8)).transpose(2, 0, 1)


def load_mask(path: str | Path | None, size: int) -> np.ndarray:
    """A lesion mask as uint8 (size, size) of 0/1; zeros when there is no mask."""
    if path is None or (isinstance(path, float) and np.isnan(path)):
        return np.zeros((size, size), dtype=np.uint8)
    with open_image(path) as handle:
        mask = handle.convert("L")
    mask = _square(mask, 0).resize((size, size), Image.Resampling.BILINEAR)
    return (np.asarray(mask) >= 128).astype(np.uint8)


def preprocess(
    manifest: pd.DataFrame,
    image_size: int,
    images_path: str | Path,
    masks_path: str | Path,
    dicom_window: list[float] | None = None,
) -> None:
    """Resize every image (padded to square) and mask of the manifest into the store.

    `dicom_window` must be the one ingest used (the dataset's config), so both see the same
    pixels."""
    window = tuple(dicom_window) if dicom_window else None
    n = len(manifest)
    step = max(1, n // 10)

    def images():
        for row, path in enumerate(manifest["path"]):
            try:
                yield load_image(path, image_size, window)
            except OSError as error:  # PIL's "image file is truncated" does not name the file
                raise ValueError(f"cannot read image {path}: {error}") from None
            if (row + 1) % step == 0 or row + 1 == n:
                log.info("images done %d/%d", row + 1, n)

    # Row by row to disk: memory stays at one image whatever the dataset's size.
    size = (image_size, image_size)
    integrity.save_rows(images_path, images(), (n, 3, *size), np.uint8)
    masks = (load_mask(path, image_size) for path in manifest["mask_path"])
    integrity.save_rows(masks_path, masks, (n, *size), np.uint8)
