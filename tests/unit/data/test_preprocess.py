import tracemalloc

import numpy as np
import pytest
from PIL import Image

from xaimed.data.ingest import ingest
from xaimed.data.preprocess import load_image, load_mask, preprocess
from xaimed.io import integrity


def test_store_holds_every_image_and_mask_in_manifest_order(folder_dataset, tmp_path):
    manifest = ingest(folder_dataset, dataset="tiny")
    preprocess(manifest, 20, tmp_path / "images.npy", tmp_path / "masks.npy")
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    masks = np.load(tmp_path / "masks.npy")
    assert images.shape == (21, 3, 20, 20) and images.dtype == np.uint8
    assert masks.shape == (21, 20, 20) and set(np.unique(masks)) <= {0, 1}
    # grayscale is replicated, and row 0 is the first manifest image at half resolution
    assert (images[:, 0] == images[:, 1]).all()
    original = np.asarray(Image.open(manifest["path"][0]), dtype=float)
    expected = original.reshape(20, 2, 20, 2).mean(axis=(1, 3))
    assert np.abs(images[0, 0].astype(float) - expected).mean() < 6
    # the lesion is bright where the mask says
    assert images[0, 0][masks[0] == 1].mean() > 180 > images[0, 0][masks[0] == 0].mean()
    assert not list(tmp_path.glob("*.partial"))


def test_non_square_images_are_padded_not_cropped(tmp_path):
    image = np.full((10, 30), 255, np.uint8)
    Image.fromarray(image).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 30)
    assert out.shape == (3, 30, 30)
    assert out[0, 15].min() == 255  # the centre row is image
    assert out[0, 0].max() == 0 and out[0, -1].max() == 0  # top and bottom rows are padding


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_missing_mask_is_empty(missing):
    assert load_mask(missing, 8).sum() == 0


@pytest.mark.parametrize("shape", [(30, 50), (41, 23, 3)])
def test_an_image_is_resized_as_rgb_padded_to_square(tmp_path, shape):
    # The independent way: replicate grayscale to RGB first, pad, then resize the RGB image
    # (preprocess resizes grayscale before replicating it; the pixels must be the same).
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    rgb = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels
    height, width = shape[:2]
    side = max(height, width)
    square = np.zeros((side, side, 3), np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = rgb
    expected = Image.fromarray(square).resize((17, 17), Image.Resampling.BILINEAR)
    out = load_image(tmp_path / "scan.png", 17)
    np.testing.assert_array_equal(out, np.asarray(expected).transpose(2, 0, 1))


def test_the_store_is_written_row_by_row_not_held_in_memory(folder_dataset, tmp_path):
    manifest = ingest(folder_dataset, dataset="tiny")
    size = 160
    store_bytes = len(manifest) * 3 * size * size
    tracemalloc.start()
    try:
        preprocess(manifest, size, tmp_path / "images.npy", tmp_path / "masks.npy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < store_bytes / 4, f"peak {peak} bytes for a {store_bytes}-byte store"
    images = integrity.load_array(tmp_path / "images.npy")  # its checksum verified
    expected = np.stack([load_image(path, size) for path in manifest["path"]])
    np.testing.assert_array_equal(images, expected)
    masks = integrity.load_array(tmp_path / "masks.npy")
    expected = np.stack([load_mask(path, size) for path in manifest["mask_path"]])
    np.testing.assert_array_equal(masks, expected)
