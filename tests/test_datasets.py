import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xaimed.datasets import MANIFEST_COLUMNS, class_names, file_sha256, ingest, ingest_imagefolder


def test_imagefolder_manifest_lists_every_image_with_its_class_and_mask(folder_dataset):
    manifest = ingest_imagefolder(folder_dataset, dataset="tiny")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 21  # masks are not images
    assert manifest["image_id"].is_monotonic_increasing and manifest["image_id"].is_unique
    assert class_names(manifest) == ["healthy", "lesion"]
    assert (manifest["label"] == (manifest["label_name"] == "lesion").astype(int)).all()
    first = manifest.iloc[0]
    assert first["image_id"] == "healthy/healthy_000"
    assert first["mask_path"].endswith("healthy_000_mask.png")
    assert first["sha256"] == file_sha256(first["path"])
    assert (first["height"], first["width"]) == (40, 40)
    assert manifest["split"].isna().all() and manifest["group"].isna().all()


def test_split_folders_become_the_split_column(tmp_path):
    for split in ("Training", "Testing"):
        for name in ("glioma", "notumor"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 12), np.uint8)).save(tmp_path / split / name / "a.jpg")
    manifest = ingest_imagefolder(tmp_path, dataset="kaggle")
    assert sorted(manifest["split"].unique()) == ["testing", "training"]
    assert manifest["image_id"].tolist() == [
        "Testing/glioma/a",
        "Testing/notumor/a",
        "Training/glioma/a",
        "Training/notumor/a",
    ]
    assert manifest["mask_path"].isna().all()
    assert (manifest["width"] == 12).all()


def test_label_map_renames_and_merges_classes(folder_dataset):
    (folder_dataset / "other").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder_dataset / "other" / "x.png")
    manifest = ingest(
        folder_dataset, dataset="tiny", label_map={"other": "lesion", "healthy": "normal"}
    )
    assert class_names(manifest) == ["lesion", "normal"]
    assert (manifest["label_name"] == "lesion").sum() == 13


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "no images found"),
        (lambda root: (root / "only").mkdir(parents=True), "no images found"),
    ],
)
def test_bad_folders_are_refused_naming_the_dataset(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises((FileNotFoundError, ValueError), match=message) as error:
        ingest(root, dataset="mine")
    assert "'mine'" in str(error.value)


def test_a_single_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "only" / "x.png")
    with pytest.raises(ValueError, match="only one class"):
        ingest(tmp_path, dataset="mine")


def test_unknown_format_names_the_supported_ones(folder_dataset):
    with pytest.raises(ValueError, match="imagefolder"):
        ingest(folder_dataset, dataset="mine", format="dicomdir")
    assert isinstance(pd.DataFrame(), pd.DataFrame)
