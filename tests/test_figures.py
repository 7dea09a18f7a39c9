"""Tests for xaimed.figures.cam_gallery on tiny fake images, manifest, CAMs and predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xaimed import figures
from xaimed.figures import cam_gallery, load_cams

H = W = 16
CLASSES = ["benign", "malignant", "normal"]


def _write_inputs(tmp_path):
    """7 images, 3 classes, 2 folds. Class 'normal' has no correct prediction."""
    ids = [f"img{i}" for i in range(7)]
    label = [0, 0, 0, 1, 1, 2, 2]
    fold = [0, 1, 1, 0, 1, 0, 1]
    pred = [0, 0, 0, 1, 1, 0, 1]
    # p(pred): img1 highest benign but missing from one method's CAMs; img3/img4 tie
    p_pred = [0.7, 0.95, 0.6, 0.8, 0.8, 0.9, 0.99]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 3, H, W), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    manifest = pd.DataFrame(
        {"image_id": ids, "label": label, "label_name": [CLASSES[i] for i in label]}
    )
    manifest.to_parquet(tmp_path / "manifest.parquet")

    pred_paths = []
    for f in (0, 1):
        rows = [i for i in range(7) if fold[i] == f]
        probs = np.full((len(rows), 3), 0.0)
        for r, i in enumerate(rows):
            probs[r, :] = (1 - p_pred[i]) / 2
            probs[r, pred[i]] = p_pred[i]
        df = pd.DataFrame(
            {
                "image_id": [ids[i] for i in rows],
                "fold": f,
                "label": [label[i] for i in rows],
                "label_name": [CLASSES[label[i]] for i in rows],
                "pred": [pred[i] for i in rows],
                "pred_name": [CLASSES[pred[i]] for i in rows],
                **{f"prob_{c}": probs[:, k] for k, c in enumerate(CLASSES)},
            }
        )
        path = tmp_path / f"pred{f}.parquet"
        df.to_parquet(path)
        pred_paths.append(str(path))

    cams_paths = {}
    for method, missing in (("gradcam", set()), ("scorecam", {"img1"})):
        cams_paths[method] = []
        for f in (0, 1):
            rows = [i for i in range(7) if fold[i] == f and ids[i] not in missing]
            # a CAM at lower resolution than the image: the overlay stretches it
            cams = rng.uniform(size=(len(rows), H // 2, W // 2)).astype(np.float16)
            path = tmp_path / f"{method}_fold{f}.npz"
            np.savez(
                path,
                image_id=np.array([ids[i] for i in rows]),
                cams=cams,
                target=np.array([pred[i] for i in rows]),
            )
            cams_paths[method].append(str(path))
    return cams_paths, pred_paths


def _gallery(tmp_path, cams_paths, pred_paths, name):
    out = tmp_path / "figs" / name
    chosen = cam_gallery(
        tmp_path / "images.npy",
        tmp_path / "manifest.parquet",
        cams_paths,
        pred_paths,
        out,
        title="toy / net",
    )
    return chosen, out


def test_cam_gallery_chooses_most_confident_correct_image(tmp_path):
    cams_paths, pred_paths = _write_inputs(tmp_path)
    chosen, out = _gallery(tmp_path, cams_paths, pred_paths, "gallery.png")
    assert list(chosen.columns) == ["class", "image_id", "fold", "prob"]
    # benign: img1 (0.95) lacks a scorecam CAM -> img0 (0.7) beats img2 (0.6);
    # malignant: img3 and img4 tie at 0.8 -> smaller image_id; normal: none correct
    assert chosen["class"].tolist() == ["benign", "malignant"]
    assert chosen["image_id"].tolist() == ["img0", "img3"]
    assert chosen["fold"].tolist() == [0, 0]
    np.testing.assert_allclose(chosen["prob"], [0.7, 0.8])

    # grid 3 rows x 3 columns (image + 2 methods); figure size follows the grid
    with Image.open(out) as png:
        size = png.size
    cell = figures.CELL_INCHES * figures.DPI
    assert size == (round(3 * cell), round(3 * cell + figures.TITLE_INCHES * figures.DPI))


def test_cam_gallery_width_grows_with_methods(tmp_path):
    cams_paths, pred_paths = _write_inputs(tmp_path)
    chosen, out = _gallery(tmp_path, {"gradcam": cams_paths["gradcam"]}, pred_paths, "one.png")
    # with gradcam only, img1 (0.95) is eligible for benign
    assert chosen["image_id"].tolist() == ["img1", "img3"]
    with Image.open(out) as png:
        width, height = png.size
    assert width == pytest.approx(2 * figures.CELL_INCHES * figures.DPI, abs=1)
    assert height == pytest.approx(
        (3 * figures.CELL_INCHES + figures.TITLE_INCHES) * figures.DPI, abs=1
    )


def test_load_cams_rejects_an_image_in_two_files(tmp_path):
    for f in (0, 1):
        np.savez(
            tmp_path / f"c{f}.npz",
            image_id=np.array(["x"]),
            cams=np.zeros((1, 2, 2), np.float16),
            target=np.array([0]),
        )
    with pytest.raises(ValueError, match="appears twice"):
        load_cams([tmp_path / "c0.npz", tmp_path / "c1.npz"])
