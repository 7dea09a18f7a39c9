import numpy as np
import pytest
from PIL import Image

from xaimed.data.ingest import ingest
from xaimed.data.preprocess import load_image, load_mask, preprocess


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
