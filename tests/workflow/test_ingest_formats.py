"""Real datasets in the layouts people download: tiny copies of each layout, ingested and split
by the real ingest and folds rules (Snakemake), plus the image readers they rely on."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import REPO, job_counts, snakemake
from xaimed.data.duplicates import DUPLICATE_COLUMNS
from xaimed.data.images import UnreadableImage, perceptual_hash, read_image
from xaimed.data.ingest import IngestOptions, ingest_dataset
from xaimed.data.manifest import REJECTED_COLUMNS

pydicom = pytest.importorskip("pydicom")

SIZE = 40


def texture(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth random grayscale image: distinct seeds give unrelated images (no accidental
    near-duplicates), yet resizing and recompression keep it recognisable."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def save(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def near_copy(source: Path, target: Path) -> Path:
    """The image resized and recompressed as JPEG, as copies in public sets often are."""
    with Image.open(source) as image:
        copy = image.convert("RGB").resize((SIZE + 8, SIZE + 8), Image.Resampling.BILINEAR)
    target.parent.mkdir(parents=True, exist_ok=True)
    copy.save(target, quality=85)
    return target


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def sixteen_bit(seed: int) -> np.ndarray:
    return (texture(seed).astype(np.uint16) * 16 + 100).astype(np.uint16)  # 12-bit range


def palette(seed: int) -> Image.Image:
    return Image.fromarray(texture(seed)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)


# --------------------------------------------------------------------------- layouts


def brain_layout(root: Path) -> Path:
    """Kaggle brain tumour MRI (Training/Testing, the glioma_tumor/no_tumor naming), with every
    kind of file the readers must handle and a copy of a training image in Testing."""
    seed = 100
    for split, n in (("Training", 6), ("Testing", 3)):
        for name in ("glioma_tumor", "no_tumor"):
            for i in range(n):
                seed += 1
                save(root / split / name / f"{split[:2]}-{name[:2]}_{i:04d}.jpg", texture(seed))
    train = root / "Training"
    save(train / "glioma_tumor" / "gray16.png", sixteen_bit(1))
    palette(2).save(train / "glioma_tumor" / "palette.png")
    save(train / "no_tumor" / "rgb.png", np.dstack([texture(3), texture(4), texture(5)]))
    save(train / "no_tumor" / "scan.tif", sixteen_bit(6))
    write_dicom(
        train / "no_tumor" / "scan.dcm",
        texture(7).astype(np.uint16) * 8,
        slope=2.0,
        intercept=-50.0,
        photometric="MONOCHROME1",
    )
    (train / "glioma_tumor" / "empty.png").write_bytes(b"")
    whole = (train / "glioma_tumor" / "Tr-gl_0000.jpg").read_bytes()
    (train / "glioma_tumor" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (train / "no_tumor" / "notes.txt").write_text("not an image")
    # copies across splits: one exact, one resized and recompressed
    test = root / "Testing"
    shutil.copy(train / "glioma_tumor" / "Tr-gl_0001.jpg", test / "glioma_tumor" / "dup.jpg")
    near_copy(train / "no_tumor" / "Tr-no_0002.jpg", test / "no_tumor" / "near.jpg")
    save(root / "__MACOSX" / "Training" / "._x.png", texture(8))  # archive debris
    return root


def chest_layout(root: Path) -> Path:
    """Kermany pneumonia: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}, next to the nested
    chest_xray/chest_xray copy and __MACOSX that the Kaggle archive carries."""
    seed = 300
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for name in ("NORMAL", "PNEUMONIA"):
            for i in range(n):
                seed += 1
                save(root / split / name / f"person{seed}_{i}.jpeg", texture(seed))
    shutil.copytree(root / "test", root / "chest_xray" / "test")
    (root / "__MACOSX").mkdir()
    normal = root / "train" / "NORMAL"
    shutil.copy(normal / "person301_0.jpeg", root / "test" / "NORMAL" / "dup.jpeg")
    # a second X-ray of a test child, in train: only its name (group_pattern) tells
    save(root / "train" / "PNEUMONIA" / "person313_9.jpeg", texture(913))
    return root


def ham_layout(root: Path) -> Path:
    rows = []
    for i in range(12):
        dx = ["nv", "bkl", "mel", "bcc"][i % 4]
        lesion = "HAM_0000000" if i in (0, 4) else f"HAM_{i + 1:07d}"  # two images of one lesion
        part = "HAM10000_images_part_1" if i < 6 else "HAM10000_images_part_2"
        image_id = f"ISIC_{i:07d}"
        save(root / part / f"{image_id}.jpg", np.dstack([texture(400 + i)] * 3))
        rows.append(
            {
                "lesion_id": lesion,
                "image_id": image_id,
                "dx": dx,
                "dx_type": "histo",
                "age": 50.0,
                "sex": "male",
                "localization": "back",
            }
        )
    rows.append(
        {
            "lesion_id": "HAM_0000099",
            "image_id": "ISIC_0000099",
            "dx": "nv",
            "dx_type": "histo",
            "age": 40.0,
            "sex": "female",
            "localization": "trunk",
        }
    )
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    # Kaggle's copy holds every image a second time in lower-case folders
    shutil.copytree(root / "HAM10000_images_part_1", root / "ham10000_images_part_1")
    return root


def medmnist_file(path: Path) -> Path:
    arrays = {}
    seed = 500
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        images = []
        for _ in range(n):
            seed += 1
            images.append(texture(seed, 28))
        arrays[f"{split}_images"] = np.stack(images)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(-1, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # as the medmnist package stores them
    return path


def csv_layout(root: Path) -> Path:
    rows = []
    for i in range(10):
        name = f"img/{i:02d}.png"
        save(root / name, texture(600 + i))
        rows.append(
            {
                "file": name,
                "diagnosis": "sick" if i % 2 else "well",
                "patient": f"p{i // 2}",
                "set": "train" if i < 8 else "test",
            }
        )
    rows.append({"file": "img/missing.png", "diagnosis": "well", "patient": "p9", "set": "test"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


BRAIN_MAP = {"glioma_tumor": "glioma", "no_tumor": "no_tumor", "notumor": "no_tumor"}
HAM_MAP = {"nv": "benign", "bkl": "benign", "mel": "malignant", "bcc": "malignant"}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> Path:
    """Every layout ingested and split by the real rules in one Snakemake run."""
    workdir = tmp_path_factory.mktemp("formats")
    data = workdir / "data"
    brain_layout(data / "brain")
    chest_layout(data / "chest_xray")
    ham_layout(data / "ham")
    medmnist_file(data / "pathmnist.npz")
    table = csv_layout(data / "own")
    config = {
        "seed": 0,
        "folds": 2,
        "image_size": 32,
        "datasets": {
            "brain": {"format": "imagefolder", "path": "data/brain", "label_map": BRAIN_MAP},
            "chest": {
                "format": "imagefolder",
                "path": "data/chest_xray",
                "cv": "predefined",
                # the paper config's pattern, on Kermany's names
                "group_pattern": yaml.safe_load((REPO / "config" / "paper.yaml").read_text())[
                    "datasets"
                ]["chest_xray"]["group_pattern"],
            },
            "ham": {"format": "ham10000", "path": "data/ham", "label_map": HAM_MAP},
            "mnist": {
                "format": "medmnist",
                "path": "data/pathmnist.npz",
                "label_map": {2: "tumour"},
            },
            "own": {
                "format": "csv",
                "path": str(table.relative_to(workdir)),
                "path_column": "file",
                "label_column": "diagnosis",
                "group_column": "patient",
                "split_column": "set",
            },
        },
        "models": ["resnet18"],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/data/{name}/folds.parquet" for name in config["datasets"]]
    targets += ["results/data/brain/images.npy", "results/data/mnist/images.npy"]
    snakemake(workdir, *targets)
    return workdir


def tables(workdir: Path, dataset: str) -> dict[str, pd.DataFrame]:
    base = workdir / "results" / "data" / dataset
    return {
        name: pd.read_parquet(base / f"{name}.parquet")
        for name in ("manifest", "rejected", "duplicates", "folds")
    }


# --------------------------------------------------------------------------- imagefolder


@pytest.mark.workflow
def test_kaggle_brain_layout_reads_every_kind_and_rejects_bad_files(layouts):
    t = tables(layouts, "brain")
    manifest, rejected = t["manifest"], t["rejected"]
    ids = set(manifest["image_id"])
    for name in ("gray16", "palette", "rgb"):
        assert any(i.endswith(f"/{name}") for i in ids), name
    assert {"Training/no_tumor/scan.dcm", "Training/no_tumor/scan.tif"} <= ids  # same stem
    assert not any("__MACOSX" in i for i in ids)
    assert sorted(manifest["label_name"].unique()) == ["glioma", "no_tumor"]  # label_map
    assert set(manifest["split"]) == {"training", "testing"}
    assert len(manifest) == 2 * 6 + 2 * 3 + 5 + 2  # plain + special kinds + copies
    assert list(rejected.columns) == REJECTED_COLUMNS
    names = rejected["image_id"].str.rsplit("/", n=1).str[1]
    reasons = dict(zip(names, rejected["reason"], strict=True))
    assert set(reasons) == {"empty", "truncated"}
    assert reasons["empty"] == "empty file" and "decode" in reasons["truncated"]
    log = (layouts / "logs" / "ingest" / "brain.log").read_text()
    assert "2 unreadable image(s)" in log and "duplicates: 1 exact and 1 near" in log

    store = np.load(layouts / "results" / "data" / "brain" / "images.npy")
    assert store.shape == (len(manifest), 3, 32, 32)
    gray16 = store[manifest.index[manifest["image_id"].str.endswith("gray16")][0]]
    assert gray16.min() <= 5 and gray16.max() >= 250  # 12-bit range stretched, not clipped


@pytest.mark.workflow
def test_copies_across_training_and_testing_are_found_and_kept_in_one_fold(layouts):
    t = tables(layouts, "brain")
    duplicates = t["duplicates"]
    assert list(duplicates.columns) == DUPLICATE_COLUMNS
    pairs = {(r.image_id_a, r.image_id_b): r for r in duplicates.itertuples()}
    exact = pairs[("Testing/glioma_tumor/dup", "Training/glioma_tumor/Tr-gl_0001")]
    near = pairs[("Testing/no_tumor/near", "Training/no_tumor/Tr-no_0002")]
    assert len(pairs) == 2
    assert exact.kind == "exact" and exact.distance == 0
    assert near.kind == "near" and 0 <= near.distance <= 4
    assert (exact.split_a, exact.split_b) == ("testing", "training")
    fold = t["folds"].set_index("image_id")["fold"]
    for a, b in pairs:
        assert fold[a] == fold[b]
    assert sorted(fold.unique()) == [0, 1]


@pytest.mark.workflow
def test_chest_predefined_split_tests_on_its_test_folder_in_every_fold(layouts):
    t = tables(layouts, "chest")
    manifest, folds = t["manifest"], t["folds"]
    assert list(folds.columns) == ["image_id", "fold", "test", "excluded"]
    assert folds["image_id"].equals(manifest["image_id"])
    assert not manifest["image_id"].str.startswith(("chest_xray/", "__MACOSX")).any()
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert (folds["test"] == (manifest["split"] == "test")).all()
    assert (folds["fold"] == -1).all()
    groups = manifest.set_index("image_id")["group"]
    assert groups["test/PNEUMONIA/person313_0"] == groups["train/PNEUMONIA/person313_9"]
    assert groups.drop("test/NORMAL/dup").notna().all() and pd.isna(groups["test/NORMAL/dup"])
    log = (layouts / "logs" / "ingest" / "chest.log").read_text()
    assert "1 of 16 image names do not match group_pattern" in log
    # the training copy of a test image, and the test child's other X-ray, are left out
    excluded = folds.loc[folds["excluded"], "image_id"].tolist()
    assert excluded == ["train/NORMAL/person301_0", "train/PNEUMONIA/person313_9"]
    assert t["duplicates"][["image_id_a", "image_id_b"]].values.tolist() == [
        ["test/NORMAL/dup", "train/NORMAL/person301_0"]
    ]


# --------------------------------------------------------------------------- other formats


@pytest.mark.workflow
def test_ham10000_lesions_are_groups_and_missing_images_rejected(layouts):
    t = tables(layouts, "ham")
    manifest, folds = t["manifest"], t["folds"]
    assert len(manifest) == 12  # each image once, although Kaggle's copy holds some twice
    assert set(manifest["label_name"]) == {"benign", "malignant"}
    assert manifest.set_index("image_id").loc["ISIC_0000004", "group"] == "HAM_0000000"
    assert t["rejected"]["image_id"].tolist() == ["ISIC_0000099"]
    assert t["rejected"]["reason"].tolist() == ["file not found"]
    fold = folds.set_index("image_id")["fold"]
    assert fold["ISIC_0000000"] == fold["ISIC_0000004"]
    assert t["duplicates"].empty


@pytest.mark.workflow
def test_medmnist_npz_images_are_read_in_place(layouts):
    t = tables(layouts, "mnist")
    manifest = t["manifest"]
    assert len(manifest) == 11 and set(manifest["split"]) == {"train", "val", "test"}
    first = manifest.set_index("image_id").loc["train/0"]
    assert first["path"].endswith("pathmnist.npz#train/0")
    assert (first["label_name"], first["height"], first["width"]) == ("0", 28, 28)
    assert sorted(manifest["label_name"].unique()) == ["0", "1", "tumour"]  # label_map {2: ...}
    store = np.load(layouts / "results" / "data" / "mnist" / "images.npy")
    with np.load(layouts / "data" / "pathmnist.npz") as archive:
        original = archive["train_images"][0]
    row = int(np.flatnonzero(manifest["image_id"] == "train/0")[0])
    expected = np.asarray(Image.fromarray(original).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(store[row, 0], expected) and np.array_equal(store[row, 2], expected)


@pytest.mark.workflow
def test_csv_table_with_group_and_split_columns(layouts):
    t = tables(layouts, "own")
    manifest, folds = t["manifest"], t["folds"]
    assert len(manifest) == 10 and t["rejected"]["image_id"].tolist() == ["img/missing"]
    assert manifest["group"].tolist() == [f"p{i // 2}" for i in range(10)]
    assert set(manifest["split"]) == {"train", "test"}
    by_patient = folds.assign(group=manifest["group"]).groupby("group")["fold"].nunique()
    assert (by_patient == 1).all()


# --------------------------------------------------------------------------- readers


def test_sixteen_bit_and_palette_images_read_as_uint8(tmp_path):
    values = sixteen_bit(1)
    save(tmp_path / "a.png", values)
    got = read_image(tmp_path / "a.png")
    expected = np.round((values - values.min()) / np.ptp(values) * 255).astype(np.uint8)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    image = palette(2)
    image.save(tmp_path / "p.png")
    assert np.array_equal(read_image(tmp_path / "p.png"), np.asarray(image.convert("RGB")))


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    stored = np.array([[0, 100], [200, 400]], dtype=np.uint16)
    # rescaled: 2 * stored - 100 = [[-100, 100], [300, 700]]
    plain = read_image(write_dicom(tmp_path / "a.dcm", stored, slope=2, intercept=-100))
    assert plain.tolist() == [[0, 64], [128, 255]]  # full range: (v + 100) / 800 * 255
    inverted = read_image(
        write_dicom(tmp_path / "b.dcm", stored, slope=2, intercept=-100, photometric="MONOCHROME1")
    )
    assert (inverted == 255 - plain).all()
    # the file's window (centre 100, width 400 -> -100..300) clips 700 to white
    windowed = read_image(
        write_dicom(tmp_path / "c", stored, slope=2, intercept=-100, window=(100, 400))
    )
    assert windowed.tolist() == [[0, 128], [255, 255]]
    # a window from the config wins over the file's
    assert read_image(tmp_path / "c", dicom_window=(300, 800)).tolist() == plain.tolist()


def test_bad_files_raise_unreadable(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG not really")
    for name, reason in (("empty.png", "empty"), ("junk.png", "decode"), ("no.png", "not found")):
        with pytest.raises(UnreadableImage, match=reason):
            read_image(tmp_path / name)


def test_perceptual_hash_survives_resizing_and_recompression(tmp_path):
    source = save(tmp_path / "a.png", texture(1))
    copy = near_copy(source, tmp_path / "b.jpg")
    other = save(tmp_path / "c.png", texture(2))
    a, b, c = (perceptual_hash(read_image(p)) for p in (source, copy, other))
    assert bin(a ^ b).count("1") <= 2 < bin(a ^ c).count("1")


def test_on_bad_image_fail_names_the_file(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        for i in range(2):
            save(root / name / f"{i}.png", texture(10 * i + len(name)))
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="broken.png") as error:
        ingest_dataset(
            root, dataset="mine", options=IngestOptions.with_defaults(on_bad_image="fail")
        )
    assert "'mine'" in str(error.value)
    assert (
        ingest_dataset(root, dataset="mine", options=IngestOptions.with_defaults())
        .rejected["path"]
        .str.endswith("broken.png")
        .all()
    )


def test_multi_label_medmnist_is_refused(tmp_path):
    path = tmp_path / "chestmnist.npz"
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.zeros((2, 14)))
    with pytest.raises(ValueError, match="multi-label"):
        ingest_dataset(
            path, dataset="chest", options=IngestOptions.with_defaults(format="medmnist")
        )


# --------------------------------------------------------------------------- the study's config


@pytest.mark.workflow
def test_paper_config_needs_only_the_dataset_paths(tmp_path):
    """config/paper.yaml with its paths filled in plans the whole study, also when run where the
    demo config lies (as from a checkout: the two must not be merged)."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for name, entry in paper["datasets"].items():
        entry["path"] = str(tmp_path / "data" / name)
        (tmp_path / "data" / name).mkdir(parents=True)
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(paper))
    counts = job_counts(snakemake(tmp_path, "--dry-run", config="paper.yaml"))
    # every fold once per repeat (5 x 2): the count README's power paragraph gives
    n_data, n_folds = len(paper["datasets"]), paper["folds"] * paper["repeats"]
    assert "phantom" not in counts
    assert counts["ingest"] == n_data
    assert counts["train"] == n_data * len(paper["models"]) * n_folds
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"its dry run plans {counts['train']} train jobs: {n_data} datasets × " in readme
    # one cams and one scores job per explained model and fold, every method in each
    per_fold = n_data * n_folds * len(paper["explain"]["models"])
    assert counts["cams"] == counts["scores"] == per_fold


def test_dicom_files_without_a_suffix_are_found_by_their_preamble(tmp_path, caplog):
    """PACS exports name files by UID or number, with no suffix: the DICM magic at byte 128
    marks them; other files without a suffix are skipped and counted."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(("ct/1.2.840.113619.2.55.1", "ct/IM00001", "xr/IM00002")):
        write_dicom(tmp_path / name, rng.integers(0, 4000, (SIZE, SIZE)) + k)
    save(tmp_path / "xr" / "photo.png", texture(5))
    (tmp_path / "xr" / "DICOMDIR").write_bytes(b"\0" * 200)  # no DICM at byte 128
    with caplog.at_level(logging.WARNING, logger="xaimed.data"):
        ingested = ingest_dataset(tmp_path, dataset="pacs", options=IngestOptions.with_defaults())
    assert ingested.manifest["image_id"].tolist() == [
        "ct/1.2.840.113619.2.55.1",  # a dotted UID keeps its dots
        "ct/IM00001",
        "xr/IM00002",
        "xr/photo",
    ]
    assert (ingested.manifest["height"] == SIZE).all() and ingested.rejected.empty
    assert "1 file(s) that are not images skipped, e.g. xr/DICOMDIR" in caplog.text
