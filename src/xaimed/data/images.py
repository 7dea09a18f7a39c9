"""Read one image of any supported kind into a uint8 array, and fingerprint it.

Sources are files (PNG, JPEG, TIFF, BMP, DICOM) or an image inside a MedMNIST ``.npz`` file,
written ``file.npz#<split>/<index>``. Whatever the source, :func:`read_image` returns uint8
(H, W) for grayscale or (H, W, 3) for colour, so ingest and preprocess see the same pixels.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
NPZ_SEPARATOR = "#"


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; the message says why."""


def npz_source(path: str | Path, split: str, index: int) -> str:
    """The manifest path of image ``index`` of ``split`` inside a MedMNIST ``.npz``."""
    return f"{path}{NPZ_SEPARATOR}{split}/{index}"


def is_dicom(path: Path) -> bool:
    """A .dcm/.dicom suffix, or the DICOM preamble's ``DICM`` magic (files often lack a suffix)."""
    return path.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(path)


def has_dicom_preamble(path: Path) -> bool:
    """``DICM`` at byte 128, where every DICOM Part 10 file carries it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_image(source: str | Path, dicom_window: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) pixels of ``source``; :class:`UnreadableImage` if it fails.

    ``dicom_window`` (centre, width) overrides the window a DICOM file carries.
    """
    text = str(source)
    if NPZ_SEPARATOR in text and text.split(NPZ_SEPARATOR)[0].endswith(".npz"):
        return _read_npz_image(text)
    path = Path(text)
    if not path.is_file():
        # a symlink that loops or points nowhere is listed, so it must be rejected with a reason
        raise UnreadableImage(
            "broken or looping symlink" if path.is_symlink() else "file not found"
        )
    if path.stat().st_size == 0:
        raise UnreadableImage("empty file")
    if is_dicom(path):
        return _read_dicom(path, dicom_window)
    return _read_pil(path)


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: grayscale is replicated to three channels."""
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Stretch the image's own range to 0..255 (16-bit files rarely use their full range:
    12-bit CT or X-ray data would look black if divided by 65535)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) / (high - low) * 255).astype(np.uint8)


@contextlib.contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open``, whose decompression-bomb warning names the file (PIL's does not)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        handle = Image.open(path)
    for warning in caught:
        message = warning.message
        if issubclass(warning.category, Image.DecompressionBombWarning):
            message = f"{path}: {message}"
        warnings.warn(message, warning.category, stacklevel=3)
    with handle:
        yield handle


def _read_pil(path: Path) -> np.ndarray:
    try:
        with open_image(path) as handle:
            handle.load()  # decode everything now: a truncated file fails here, not later
            image = handle
            if image.mode in ("1", "L", "RGB"):
                pixels = np.asarray(image.convert("L") if image.mode == "1" else image)
            elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                pixels = _scale_to_uint8(np.asarray(image))
            elif image.mode in ("LA",):
                pixels = np.asarray(image.convert("L"))
            else:  # palette, RGBA, CMYK, YCbCr, ...
                pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImage(f"cannot decode: {error}") from None
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _read_dicom(path: Path, window: tuple[float, float] | None) -> np.ndarray:
    """Modality LUT (rescale slope/intercept), then a window (the given one, else the file's
    first WindowCenter/WindowWidth, else its VOI LUT, else the image's full range), then
    MONOCHROME1 inverted so that dense tissue is bright as in every other image."""
    import pydicom  # imported here: only DICOM datasets need it
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as error:  # pydicom raises many kinds for bad or unsupported files
        raise UnreadableImage(f"cannot decode DICOM: {error}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # RGB (pydicom converts YBR itself)
        return np.ascontiguousarray(pixels.astype(np.uint8))
    if pixels.ndim != 2:
        raise UnreadableImage(f"DICOM pixel data of shape {pixels.shape}: not one 2-D slice")
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        window = (_first(ds.WindowCenter), _first(ds.WindowWidth))
    if window is not None:
        centre, width = window
        scaled = np.clip((values - (centre - width / 2)) / max(width, 1e-6), 0, 1)
        out = np.round(scaled * 255).astype(np.uint8)
    else:
        if "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds)
        out = _scale_to_uint8(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _first(value: object) -> float:
    """A DICOM value that may be multi-valued (several windows): its first number."""
    try:
        return float(value)
    except TypeError:
        return float(value[0])


@functools.lru_cache(maxsize=2)
def _npz_array(path: str, key: str) -> np.ndarray:
    """One array of an .npz, kept while its images are read in turn (an npz member must be
    decompressed whole: reading it per image would take quadratic time)."""
    with np.load(path) as archive:
        return archive[key]


def _read_npz_image(source: str) -> np.ndarray:
    path, _, member = source.partition(NPZ_SEPARATOR)
    split, _, index = member.partition("/")
    try:
        pixels = _npz_array(path, f"{split}_images")[int(index)]
    except (OSError, KeyError, IndexError, ValueError) as error:
        raise UnreadableImage(f"cannot read {source}: {error}") from None
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8:
        pixels = _scale_to_uint8(pixels)
    return np.ascontiguousarray(pixels)


# --------------------------------------------------------------------------- fingerprints


@functools.cache
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` is the DCT of column vector x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """The 32x32 grayscale image, float64: what both fingerprints below are computed from."""
    gray = Image.fromarray(pixels).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.float64)


def perceptual_hash(pixels: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash): the 8x8 lowest frequencies of the 32x32 grayscale
    image, each bit = above their median. Resizing, recompression and small intensity changes
    move few bits, so near-duplicates are a small Hamming distance apart."""
    return _hash_of(thumbnail(pixels))


def standardized_thumbnail(pixels: np.ndarray) -> np.ndarray:
    """The 32x32 thumbnail scaled to mean 0, SD 1, flattened (float32): the dot product of
    two of them over 1024 is their Pearson correlation (zeros for a flat image)."""
    return _standardized(thumbnail(pixels))


def fingerprints(pixels: np.ndarray) -> tuple[int, np.ndarray]:
    """:func:`perceptual_hash` and :func:`standardized_thumbnail` of one image from one
    thumbnail: shrinking a 2,000 px scan is most of either's cost."""
    small = thumbnail(pixels)
    return _hash_of(small), _standardized(small)


def _hash_of(small: np.ndarray) -> int:
    dct = _dct_matrix(32)
    low = (dct @ small @ dct.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) would skew the median
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def _standardized(small: np.ndarray) -> np.ndarray:
    values = small.ravel()
    sd = values.std()
    out = (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)
    return out.astype(np.float32)
