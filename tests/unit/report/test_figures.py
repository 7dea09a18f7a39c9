"""Tests for xaimed.report.gallery.cam_gallery on tiny fake images, manifest, CAMs and
predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests import readable
from tests.readable import clipped, covering
from xaimed.report import gallery
from xaimed.report.gallery import cam_gallery, load_cams

saved_figures = readable.saved_figures  # the fixture, for this module

H = W = 16
CLASSES = ["benign", "malignant", "normal"]


def _write_inputs(tmp_path, prefix=""):
    """7 images, 3 classes, 2 folds. Class 'normal' has no correct prediction."""
    ids = [f"{prefix}img{i}" for i in range(7)]
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
    for method, missing in (("gradcam", set()), ("scorecam", {ids[1]})):
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
    cell = gallery.CELL_INCHES * gallery.DPI
    assert size == (round(3 * cell), round(3 * cell + gallery.TITLE_INCHES * gallery.DPI))


def test_cam_gallery_width_grows_with_methods(tmp_path):
    cams_paths, pred_paths = _write_inputs(tmp_path)
    chosen, out = _gallery(tmp_path, {"gradcam": cams_paths["gradcam"]}, pred_paths, "one.png")
    # with gradcam only, img1 (0.95) is eligible for benign
    assert chosen["image_id"].tolist() == ["img1", "img3"]
    with Image.open(out) as png:
        width, height = png.size
    assert width == pytest.approx(2 * gallery.CELL_INCHES * gallery.DPI, abs=1)
    assert height == pytest.approx(
        (3 * gallery.CELL_INCHES + gallery.TITLE_INCHES) * gallery.DPI, abs=1
    )


def _npz(path, ids, cams):
    np.savez(
        path, image_id=np.array(ids), cams=np.asarray(cams, np.float16), target=np.zeros(len(ids))
    )
    return path


def test_load_cams_keeps_repeats_and_rejects_an_image_twice_in_one_file(tmp_path):
    a = _npz(tmp_path / "c0.npz", ["x"], np.zeros((1, 2, 2)))
    b = _npz(tmp_path / "c1.npz", ["x"], np.ones((1, 2, 2)))
    cams = load_cams([a, b])
    assert sorted(cams["x"]) == [0, 1]  # one map per file (repeat)
    np.testing.assert_array_equal(cams["x"][1], np.ones((2, 2)))
    twice = _npz(tmp_path / "c2.npz", ["x", "x"], np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"appears twice in CAM file .*c2.npz"):
        load_cams([twice])


def test_cam_gallery_of_repeats_shows_the_fold_it_names_and_marks_constant_maps(tmp_path, caplog):
    """Two repeats explain the same images (cv: predefined): each row takes the maps of the
    fold whose prediction it shows; a constant map is logged and marked."""
    cams_paths, pred_paths = _write_inputs(tmp_path)
    repeat = pd.read_parquet(pred_paths[0]).assign(fold=1)  # fold 1 explains fold 0's images
    prob = [c for c in repeat.columns if c.startswith("prob_")]
    repeat.loc[repeat["image_id"] == "img0", prob] = [[0.96, 0.02, 0.02]]  # now most confident
    repeat.to_parquet(pred_paths[1])
    ids = repeat["image_id"].tolist()
    rng = np.random.default_rng(1)
    for method in cams_paths:
        _npz(cams_paths[method][1], ids, rng.uniform(size=(len(ids), H // 2, W // 2)))
    # fold 0's gradcam map of img0 is constant; the gallery must not show it (fold 1 wins)
    _npz(cams_paths["gradcam"][0], ids, np.zeros((len(ids), H // 2, W // 2)))
    caplog.set_level("INFO", logger="xaimed.report.gallery")
    chosen, out = _gallery(tmp_path, cams_paths, pred_paths, "repeats.png")
    assert chosen["image_id"].tolist() == ["img0", "img3"]
    assert chosen["fold"].tolist() == [1, 0]  # img3: the tie broken by the earlier file
    assert "2 folds explain the same images" in caplog.text
    constant = [r.getMessage() for r in caplog.records if "constant" in r.getMessage()]
    assert constant == [  # img3 comes from fold 0, whose gradcam maps are all zero
        "gallery: the gradcam map of img3 (class malignant, fold 0) is constant: marked "
        "'constant map'"
    ]
    with Image.open(out) as png:  # a two-line title
        assert png.size[1] == round((3 * gallery.CELL_INCHES + 2 * gallery.TITLE_INCHES) * 100)


def test_localisation_figure_says_no_lesion_masks_only_without_masks(tmp_path, caplog):
    """All-zero maps leave the energy pointing game undefined although the images have
    lesion masks: the panel says so instead of 'no lesion masks'."""
    from xaimed.explain.metrics.localisation import (
        baseline_maps,
        energy_pointing_game,
        pointing_game,
    )
    from xaimed.report.quality_figures import localisation_figure

    masks = np.zeros((2, H, W))
    masks[:, 4:8, 4:8] = 1
    cams = np.zeros((2, H, W))  # constant maps, as a 1x1 target layer gives
    ids = ["a", "b"]
    keys = {"dataset": "toy", "model": "net", "fold": 0, "image_id": ids, "pred_name": "x"}
    scores = pd.DataFrame(
        {
            **keys,
            "method": "gradcam",
            "pointing_game": pointing_game(cams, masks),
            "energy_pointing_game": energy_pointing_game(cams, masks),
            "iou_top_k": np.nan,
            "constant_map": True,
        }
    )
    random = baseline_maps(masks, ids, 0, grid=(1, 1))["random"]
    baselines = pd.DataFrame(
        {
            **keys,
            "baseline": "random",
            "pointing_game": pointing_game(random, masks),
            "energy_pointing_game": energy_pointing_game(random, masks),
            "iou_top_k": np.nan,
        }
    )
    assert scores["energy_pointing_game"].isna().all()
    caplog.set_level("INFO", logger="xaimed.report.quality_figures")
    localisation_figure(scores, baselines, tmp_path / "loc.png", "toy")
    epg = [r.getMessage() for r in caplog.records if "energy_pointing_game" in r.getMessage()]
    assert epg == [
        "toy, net energy_pointing_game: lesion masks, but the score is undefined for every map "
        "(2 of 2 maps constant)"
    ]
    assert "no lesion masks" not in caplog.text.split("iou_top_k")[0]

    caplog.clear()
    no_masks = scores.assign(pointing_game=np.nan, energy_pointing_game=np.nan)
    localisation_figure(no_masks, baselines.iloc[:0], tmp_path / "none.png", "toy")
    assert caplog.text.count("no lesion masks") == 3


def test_cam_gallery_captions_stay_inside_and_off_the_next_image(tmp_path, saved_figures):
    """Long image ids (as ISIC's) under each image: wrapped inside the figure, never over the
    image below or beside."""
    cams_paths, pred_paths = _write_inputs(
        tmp_path, prefix="HAM10000_images_part_1/ISIC_0024306_dermoscopy_"
    )
    out = tmp_path / "long.png"
    cam_gallery(
        tmp_path / "images.npy",
        tmp_path / "manifest.parquet",
        cams_paths,
        pred_paths,
        out,
        title="skin_lesion_dermoscopy_2019: efficientnet_b0",
    )
    (fig,) = saved_figures
    assert "ISIC_0024306_dermoscopy" in fig.axes[0].xaxis.label.get_text().replace("\n", "")
    assert clipped(fig) == []
    assert covering(fig) == []


def test_localisation_figure_labels_bars_and_keeps_the_legend_off_the_data(tmp_path, saved_figures):
    from xaimed.report.quality_figures import localisation_figure

    keys = {"dataset": "toy", "fold": 0, "image_id": ["a", "b"], "pred_name": "x"}
    scores = pd.concat(
        pd.DataFrame(
            {
                **keys,
                "model": model,
                "method": method,
                "pointing_game": value,
                "energy_pointing_game": value,
                "iou_top_k": value,
            }
        )
        for model in ("resnet50", "efficientnet_b0_pretrained_imagenet")
        for method, value in (("gradcam", 0.0), ("layercam", 1.0))
    )
    baselines = pd.concat(
        scores[scores["method"] == "gradcam"]
        .drop(columns="method")
        .assign(baseline=name, pointing_game=v, energy_pointing_game=v, iou_top_k=v)
        for name, v in (("random", 0.3), ("smooth_random", 0.4), ("centre", 0.5), ("mask", 1.0))
    )
    means = localisation_figure(scores, baselines, tmp_path / "loc.png", "skin_lesion: maps")
    assert (means.loc[means["map"] == "gradcam", "mean"] == 0).all()  # bars of height 0
    (fig,) = saved_figures
    for ax in fig.axes:  # every bar's value is written on the panel, 0.00 included
        labels = sorted(t.get_text() for t in ax.texts if t.get_visible())
        assert labels == ["0.00", "1.00"], ax.get_title()
    assert clipped(fig) == []
    assert covering(fig) == []
