"""Tests of the synthetic phantom datasets: API, determinism, masks, anatomy and learnability."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xaimed.data.folds import assign_folds
from xaimed.data.ingest import IngestOptions, ingest_dataset
from xaimed.data.phantoms import brain
from xaimed.data.phantoms.generate import (
    MASK_SUFFIX,
    PHANTOM_CLASSES,
    phantom_rng,
    render,
    write_phantom_dataset,
)

SIZE = 64
HEALTHY = {"brain_mri": "no_tumor", "chest_xray": "normal"}
ALL_CLASSES = [(kind, c) for kind, classes in PHANTOM_CLASSES.items() for c in classes]
LESION_CLASSES = [(kind, c) for kind, c in ALL_CLASSES if c not in HEALTHY.values()]


def _render(kind: str, class_name: str, i: int, seed: int = 0, size: int = SIZE):
    return render(kind, class_name, phantom_rng(kind, class_name, i, seed), size)


def _gray(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) if img.ndim == 2 else img.astype(np.float64).mean(axis=2)


def _twins(kind: str, class_name: str, twin_class: str, i: int):
    """Render two classes from the same generator: the same patient, lesion or not."""
    seed = [12345, i]
    return (
        render(kind, class_name, np.random.default_rng(seed), SIZE),
        render(kind, twin_class, np.random.default_rng(seed), SIZE),
    )


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


# ----------------------------------------------------------------------------- API


def test_class_table_and_mask_suffix_are_the_agreed_ones():
    assert PHANTOM_CLASSES == {
        "brain_mri": ("glioma", "meningioma", "no_tumor", "pituitary"),
        "skin_lesion": ("benign", "malignant"),
        "chest_xray": ("normal", "pneumonia"),
    }
    assert MASK_SUFFIX == "_mask"


@pytest.mark.parametrize(("kind", "class_name"), ALL_CLASSES)
@pytest.mark.parametrize("size", [32, 64])
def test_render_shapes_dtypes_and_mask_presence(kind, class_name, size):
    for i in range(3):
        img, mask = _render(kind, class_name, i, size=size)
        expected = (size, size, 3) if kind == "skin_lesion" else (size, size)
        assert img.shape == expected
        assert img.dtype == np.uint8
        assert mask.shape == (size, size)
        assert mask.dtype == np.bool_
        assert img.std() > 5, "a blank image"
        if class_name in HEALTHY.values():
            assert not mask.any(), "healthy images must have an empty mask"
        else:
            assert mask.sum() >= 10, "lesion classes must have a visible lesion"


def test_render_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="ct_scan"):
        render("ct_scan", "normal", rng, 64)
    with pytest.raises(ValueError, match="melanoma"):
        render("skin_lesion", "melanoma", rng, 64)
    with pytest.raises(ValueError, match="size"):
        render("chest_xray", "normal", rng, 16)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(("kind", "class_name"), LESION_CLASSES)
def test_same_seed_same_image_and_different_seed_different_image(kind, class_name):
    img_a, mask_a = _render(kind, class_name, 3, seed=1)
    img_b, mask_b = _render(kind, class_name, 3, seed=1)
    np.testing.assert_array_equal(img_a, img_b)
    np.testing.assert_array_equal(mask_a, mask_b)
    img_c, mask_c = _render(kind, class_name, 3, seed=2)
    assert not np.array_equal(img_a, img_c)
    assert not np.array_equal(mask_a, mask_c)
    img_d, _ = _render(kind, class_name, 4, seed=1)
    assert not np.array_equal(img_a, img_d), "images of a class must differ from each other"


# ----------------------------------------------------------------------------- masks and signal


@pytest.mark.parametrize(("kind", "class_name"), LESION_CLASSES)
def test_mask_covers_exactly_what_the_lesion_changed(kind, class_name):
    """The same generator renders the same patient; the lesion's pixels are where the mask is.

    Skin has no healthy class, so there the twin is the other class and the union is used.
    """
    twin_class = HEALTHY.get(kind) or ({"benign", "malignant"} - {class_name}).pop()
    for i in range(6):
        (img, mask), (twin, twin_mask) = _twins(kind, class_name, twin_class, i)
        diff = np.abs(img.astype(np.float64) - twin).reshape(SIZE, SIZE, -1).sum(axis=2)
        # Blurred borders may spill a little: allow 2.5 px (sub-pixel at the sharp borders).
        near = ndimage.distance_transform_edt(~(mask | twin_mask)) <= 2.5
        assert diff[near].sum() >= 0.98 * diff.sum(), "lesion drawn outside its mask"
        assert diff[~near].max(initial=0) <= 6, "lesion drawn outside its mask"
        # The change inside the mask is large against the noise (a few grey levels).
        assert diff[mask].mean() > 30


@pytest.mark.parametrize(
    ("kind", "class_name", "sign"),
    [
        ("brain_mri", "glioma", +1),
        ("brain_mri", "pituitary", +1),
        ("skin_lesion", "benign", -1),
        ("skin_lesion", "malignant", -1),
        ("chest_xray", "pneumonia", +1),
    ],
)
def test_lesion_differs_in_intensity_from_surrounding_tissue(kind, class_name, sign):
    gaps = []
    for i in range(8):
        img, mask = _render(kind, class_name, i)
        gray = _gray(img)
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask
        gaps.append(sign * (gray[mask].mean() - gray[ring].mean()))
    # Brain tumours and consolidation are brighter, skin lesions darker, on every image.
    assert min(gaps) > 10
    assert np.mean(gaps) > 15


def test_meningioma_lies_against_the_skull_and_glioma_inside_the_brain():
    def stats(class_name: str) -> tuple[np.ndarray, np.ndarray]:
        dists, skull_contact = [], []
        for i in range(12):
            (_, mask), (healthy, _) = _twins("brain_mri", class_name, "no_tumor", i)
            dists.append(np.hypot(*(_centroid(mask) - (SIZE - 1) / 2)) / SIZE)
            # The skull ring is the brightest structure of the healthy twin: does the
            # lesion's immediate neighbourhood reach it?
            ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
            skull_level = np.percentile(healthy, 99)
            skull_contact.append(healthy[ring].max() >= 0.82 * skull_level)
        return np.array(dists), np.array(skull_contact)

    men_dist, men_contact = stats("meningioma")
    gli_dist, gli_contact = stats("glioma")
    assert men_dist.mean() > gli_dist.mean() + 0.08
    assert men_contact.mean() >= 0.9
    assert gli_contact.mean() <= 0.1


def test_pituitary_is_small_midline_and_lower_central():
    pit_areas, gli_areas = [], []
    for i in range(12):
        _, mask = _render("brain_mri", "pituitary", i)
        cy, cx = _centroid(mask) / SIZE
        assert abs(cx - 0.5) < 0.06, "pituitary mass must be near the midline"
        assert 0.55 < cy < 0.85, "pituitary mass must be in the lower-central brain"
        pit_areas.append(mask.sum())
        gli_areas.append(_render("brain_mri", "glioma", i)[1].sum())
    assert max(pit_areas) < np.median(gli_areas)


def test_pneumonia_consolidation_sits_in_one_lung_field():
    for i in range(10):
        _, mask = _render("chest_xray", "pneumonia", i)
        columns = np.flatnonzero(mask.any(axis=0)) / SIZE
        left, right = (columns < 0.5).any(), (columns > 0.5).any()
        assert left != right, "consolidation must stay in one lung"


# ----------------------------------------------------------------------------- learnability


def _crude_features(img: np.ndarray) -> np.ndarray:
    """16 x 16 block means of every channel: no masks, no deep learning."""
    x = img.astype(np.float32) / 255.0
    x = x[..., None] if x.ndim == 2 else x
    block = x.shape[0] // 16
    return x.reshape(16, block, 16, block, -1).mean(axis=(1, 3)).ravel()


def _dataset(kind: str, indices: range) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for label, class_name in enumerate(PHANTOM_CLASSES[kind]):
        for i in indices:
            features.append(_crude_features(_render(kind, class_name, i)[0]))
            labels.append(label)
    return np.array(features), np.array(labels)


@pytest.mark.parametrize("kind", list(PHANTOM_CLASSES))
def test_task_is_learnable_from_crude_features_but_not_from_brightness(kind):
    x_train, y_train = _dataset(kind, range(40))
    x_test, y_test = _dataset(kind, range(500, 520))
    chance = 1.0 / len(PHANTOM_CLASSES[kind])

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    accuracy = model.fit(x_train, y_train).score(x_test, y_test)
    assert accuracy > chance + 0.2, f"{kind}: held-out accuracy {accuracy:.2f} near chance"

    # Nuisance (gain, contrast, anatomy) keeps global brightness from giving the class away.
    train_mean, test_mean = x_train.mean(axis=1), x_test.mean(axis=1)
    centroids = np.array([train_mean[y_train == k].mean() for k in np.unique(y_train)])
    predicted = np.abs(test_mean[:, None] - centroids).argmin(axis=1)
    assert (predicted == y_test).mean() < chance + 0.25


def test_rendering_is_fast():
    start = time.perf_counter()
    for kind, class_name in ALL_CLASSES:
        for i in range(3):
            _render(kind, class_name, i, size=128)
    # 24 images at 128 px; the budget is ~30 ms each, allowing for a busy machine.
    assert time.perf_counter() - start < 6.0


# ----------------------------------------------------------------------------- writing


def test_write_phantom_dataset_layout_table_and_files(tmp_path):
    out = tmp_path / "new" / "brain"
    table = write_phantom_dataset("brain_mri", out, n_per_class=2, image_size=48, seed=3)
    assert list(table.columns) == ["path", "mask_path", "class_name"]
    assert len(table) == 2 * len(PHANTOM_CLASSES["brain_mri"])
    assert sorted(table["class_name"].unique()) == sorted(PHANTOM_CLASSES["brain_mri"])
    assert sorted(p.name for p in out.iterdir()) == sorted(PHANTOM_CLASSES["brain_mri"])
    for row in table.itertuples():
        image_path, mask_path = Path(row.path), Path(row.mask_path)
        assert image_path.parent == out / row.class_name == mask_path.parent
        assert image_path.name.startswith(f"brain_mri_{row.class_name}_")
        assert mask_path.name == image_path.stem + MASK_SUFFIX + ".png"
        with Image.open(image_path) as im:
            assert im.mode == "L" and im.size == (48, 48)
            pixels = np.asarray(im)
        with Image.open(mask_path) as im:
            assert im.mode == "L" and im.size == (48, 48)
            mask = np.asarray(im)
        assert set(np.unique(mask)) <= {0, 255}
        assert (mask.max() == 0) == (row.class_name == "no_tumor")
        # The files hold exactly what render gives for that (seed, class, index).
        index = int(image_path.stem.rsplit("_", 1)[1])
        expected, expected_mask = _render("brain_mri", row.class_name, index, seed=3, size=48)
        np.testing.assert_array_equal(pixels, expected)
        np.testing.assert_array_equal(mask == 255, expected_mask)
    assert (out / "glioma" / "brain_mri_glioma_0001.png").exists()


def test_write_phantom_dataset_writes_rgb_for_skin(tmp_path):
    table = write_phantom_dataset("skin_lesion", tmp_path, n_per_class=1, image_size=32)
    for path in table["path"]:
        with Image.open(path) as im:
            assert im.mode == "RGB" and im.size == (32, 32)


def test_write_phantom_dataset_is_byte_identical_and_independent_of_count(tmp_path):
    small = write_phantom_dataset("chest_xray", tmp_path / "a", n_per_class=2, image_size=32)
    again = write_phantom_dataset("chest_xray", tmp_path / "b", n_per_class=2, image_size=32)
    larger = write_phantom_dataset("chest_xray", tmp_path / "c", n_per_class=3, image_size=32)
    other = write_phantom_dataset("chest_xray", tmp_path / "d", 2, image_size=32, seed=1)
    assert len(larger) == 6
    for column in ("path", "mask_path"):
        for a, b, d in zip(small[column], again[column], other[column], strict=True):
            data = Path(a).read_bytes()
            assert data == Path(b).read_bytes()
            # Image i is the same however many images are written.
            assert data == (tmp_path / "c" / Path(a).relative_to(tmp_path / "a")).read_bytes()
            if not (column == "mask_path" and "normal" in a):  # empty masks never differ
                assert data != Path(d).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"kind": "mammography"}, "mammography"),
        ({"kind": "mammography"}, "brain_mri"),
        ({"n_per_class": 0}, "n_per_class"),
        ({"image_size": 31}, "image_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_write_phantom_dataset_rejects_bad_arguments(tmp_path, kwargs, word):
    arguments = {"kind": "chest_xray", "out_dir": tmp_path / "x", "n_per_class": 1}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=word):
        write_phantom_dataset(**arguments)


def test_difficulty_knobs_are_read_at_render_time(monkeypatch):
    before, mask = _render("brain_mri", "glioma", 0)
    monkeypatch.setattr(brain, "GLIOMA_CONTRAST", 0.0)
    after, mask_after = _render("brain_mri", "glioma", 0)
    np.testing.assert_array_equal(mask, mask_after)
    assert before[mask].mean() > after[mask].mean() + 20


@pytest.mark.parametrize("kind", list(PHANTOM_CLASSES))
def test_planted_copies_are_found_grouped_and_the_relabelled_one_reported(kind, tmp_path, caplog):
    table = write_phantom_dataset(kind, tmp_path, 6, 64, sites=2, copies=True)
    planted = table.dropna(subset=["copy_of"])
    assert len(planted) == 3 and len(table) == 3 + 6 * len(PHANTOM_CLASSES[kind])
    with caplog.at_level(logging.WARNING, logger="xaimed.data.duplicates"):
        ingested = ingest_dataset(tmp_path, dataset=kind, options=IngestOptions.with_defaults())
    # every planted copy is paired with its source, and no two distinct phantoms are
    found = {
        frozenset(pair)
        for pair in ingested.duplicates[["image_id_a", "image_id_b"]].itertuples(index=False)
    }

    def image_id(path: str) -> str:
        return Path(path).relative_to(tmp_path).with_suffix("").as_posix()

    assert found == {
        frozenset((image_id(c.path), image_id(c.copy_of))) for c in planted.itertuples()
    }
    assert sorted(ingested.duplicates["kind"]) == ["exact", "near", "near"]
    relabelled = ingested.duplicates[
        ingested.duplicates["label_a"] != ingested.duplicates["label_b"]
    ]
    assert len(relabelled) == 1 and relabelled["kind"].item() == "exact"
    assert "1 exact and 2 near pairs in 3 clusters" in caplog.text
    assert "1 pairs with different labels" in caplog.text
    manifest = ingested.manifest
    folds = assign_folds(manifest, 2, duplicates=ingested.duplicates).set_index("image_id")["fold"]
    for pair in found:
        assert folds[list(pair)].nunique() == 1, pair
    # a copy is taken at its source's site (metadata.csv lists it too)
    sites = manifest.set_index("image_id")["site"]
    for copy in planted.itertuples():
        assert sites[image_id(copy.path)] == sites[image_id(copy.copy_of)]
