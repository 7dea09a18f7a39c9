import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import write_folder_dataset
from xaimed.data.folds import assign_folds
from xaimed.data.ingest import IngestOptions, ingest, ingest_dataset, ingest_imagefolder
from xaimed.data.manifest import MANIFEST_COLUMNS, class_names, file_sha256


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


def _noise(path, seed: int, size: int = 24) -> None:
    """An image unlike any other (no near-duplicates to group it by)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)


KERMANY_PATTERN = r"((?:NORMAL2-)?IM-\d+|person\d+)[-_]"


def test_group_pattern_keeps_a_childs_xrays_in_one_fold_and_counts_other_names(tmp_path, caplog):
    root = tmp_path / "chest_xray"
    seed = 0
    for person in range(1940, 1947):
        for image in (1, 2):
            seed += 1
            _noise(root / "PNEUMONIA" / f"person{person}_bacteria_{4870 + seed}.jpeg", seed)
            _noise(root / "NORMAL" / f"IM-0{person}-000{image}.jpeg", 100 + seed)
    _noise(root / "NORMAL" / "scan.jpeg", 999)
    with caplog.at_level(logging.WARNING, logger="xaimed.data"):
        manifest = ingest(root, dataset="chest", group_pattern=KERMANY_PATTERN)
    assert "1 of 29 image names do not match group_pattern" in caplog.text
    assert "NORMAL/scan.jpeg" in caplog.text
    groups = manifest.set_index("image_id")["group"]
    assert groups["PNEUMONIA/person1946_bacteria_4883"] == "person1946"
    assert groups["NORMAL/IM-01946-0001"] == "IM-01946"
    assert pd.isna(groups["NORMAL/scan"])
    assert manifest["group"].nunique() == 14
    for seed in range(3):
        folds = assign_folds(manifest, 3, seed).set_index("image_id")["fold"]
        per_group = folds.groupby(groups.reindex(folds.index)).nunique()
        assert (per_group == 1).all(), per_group[per_group > 1]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("person\\d+", "needs a group"), ("(person", "not a regular expression")],
)
def test_a_bad_group_pattern_is_named(tmp_path, pattern, message):
    write_folder_dataset(tmp_path, {"a": 2, "b": 2}, masks=False)
    with pytest.raises(ValueError, match=f"group_pattern .*{message}"):
        ingest(tmp_path, dataset="mine", group_pattern=pattern)


def test_mask_dir_finds_masks_in_a_tree_that_mirrors_the_classes(tmp_path, caplog):
    root = tmp_path / "data"
    for name, seed in (("benign/a", 1), ("benign/b", 2), ("malignant/c", 3)):
        _noise(root / f"{name}.png", seed)
    mask = np.zeros((24, 24), np.uint8)
    mask[4:9, 4:9] = 255
    for name in ("benign/a", "malignant/c_mask"):  # either the image's name or with the suffix
        (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    with caplog.at_level(logging.INFO, logger="xaimed.data"):
        manifest = ingest(root, dataset="mine", mask_dir="masks")
    assert class_names(manifest) == ["benign", "malignant"]  # the mask tree is no class
    masks = manifest.set_index("image_id")["mask_path"]
    assert masks["benign/a"] == str(root / "masks" / "benign" / "a.png")
    assert masks["malignant/c"] == str(root / "masks" / "malignant" / "c_mask.png")
    assert pd.isna(masks["benign/b"])
    assert "2 of 3 images have a mask" in caplog.text
    with pytest.raises(FileNotFoundError, match="mask_dir .*nowhere"):
        ingest(root, dataset="mine", mask_dir="nowhere")


def test_folder_symlinks_are_not_followed_and_every_skipped_file_is_told(tmp_path, caplog):
    root = tmp_path / "data"
    write_folder_dataset(root, {"a": 3, "b": 3}, masks=False)
    (root / "toploop").symlink_to(".")  # the dataset root again, as a "class"
    (root / "a" / "up").symlink_to("..")
    (root / "a" / "self.png").symlink_to("self.png")
    (root / "b" / "notes.txt").write_text("read me")
    (root / "LICENSE").write_text("CC BY")  # beside the classes: in none
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a" / "gone_mask.png")
    (root / "empty").mkdir()
    with caplog.at_level(logging.INFO, logger="xaimed.data"):
        ingested = ingest_dataset(root, dataset="mine", options=IngestOptions.with_defaults())
    assert ingested.manifest["label_name"].value_counts().to_dict() == {"a": 3, "b": 3}
    assert "toploop: a symlink to a folder; not followed" in caplog.text
    assert "up: a symlink to a folder; not followed" in caplog.text
    assert "empty: class folder holds no images" in caplog.text
    assert "2 file(s) that are not images skipped, e.g. LICENSE" in caplog.text
    assert "1 mask(s) without an image skipped, e.g. " in caplog.text
    rejected = ingested.rejected.set_index("image_id")["reason"].to_dict()
    assert rejected == {"a/self": "broken or looping symlink"}


def test_a_dataset_without_one_readable_image_says_so(tmp_path):
    for name in ("a/x.png", "a/y.png", "b/z.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"no readable images in dataset 'mine': all 3 "):
        ingest(tmp_path, dataset="mine")
