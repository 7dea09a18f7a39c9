"""Explanation quality in the explain stage and its baseline maps, and the explain job of a
whole fold, on the tiny fold of tests/workflow/test_explain.py with hand-made lesion masks."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from tests.workflow.test_explain import SIZE, fold, settings  # noqa: F401 - the fixture
from xaimed.explain.baselines import BASELINE_COLUMNS, score_baselines
from xaimed.explain.cams import compute_cams
from xaimed.explain.heldout import MAP_SCORES, load_fold, score_maps
from xaimed.explain.metrics.faithfulness import faithfulness_scores
from xaimed.explain.metrics.localisation import (
    image_seed,
    localisation_scores,
    random_map,
    smooth_random_map,
)
from xaimed.explain.metrics.sanity import sanity_check
from xaimed.explain.stage import (
    QUALITY_COLUMNS,
    SANITY_FILE_COLUMNS,
    explain,
    explain_fold,
    score_fold,
)
from xaimed.models.inputs import normalize

QUALITY = {"tolerance": 1, "top_k": 5, "faithfulness_steps": 4}


@pytest.fixture(scope="module")
def masks(fold):  # noqa: F811
    """A lesion in every image of the manifest but the first two (img05, img03: none)."""
    root, _, images, _, _ = fold
    masks = np.zeros((len(images), SIZE, SIZE), dtype=np.uint8)
    for row in range(2, len(images)):
        masks[row, 8 * row : 8 * row + 12, 10:30] = 1
    np.save(root / "masks.npy", masks)
    return root / "masks.npy"


def run(root, out, method, masks_path, **changes):
    return explain(
        root / "model.pt",
        root / "images.npy",
        root / "manifest.parquet",
        root / "predictions.parquet",
        method,
        out / "scores.parquet",
        out / "cams.npz",
        *settings(**{"seed": 3, **QUALITY, **changes}),
        masks_path=masks_path,
        sanity_path=out / "sanity.parquet",
    )


def test_explain_scores_localisation_faithfulness_and_sanity(fold, masks, tmp_path):  # noqa: F811
    root, model, images, ids, _ = fold
    scores = run(root, tmp_path, "gradcam", masks, sanity_images=3, sanity_depths=[1, 2])
    assert set(QUALITY_COLUMNS) <= set(scores.columns)
    rows = [ids.index(i) for i in scores["image_id"]]
    x = normalize(torch.from_numpy(images[rows]))
    targets = scores["pred"].tolist()
    cams = compute_cams(model, "resnet18", "gradcam", x, targets)
    seeds = [image_seed(3, i) for i in scores["image_id"]]
    lesions = np.load(masks)[rows]
    expected = localisation_scores(cams, lesions, tolerance=1, top_k=5, seeds=seeds)
    expected |= faithfulness_scores(model, x, cams, targets, steps=4, seeds=seeds)
    for column, values in expected.items():
        np.testing.assert_allclose(scores[column], values, atol=1e-6, err_msg=column)
    no_lesion = ~lesions.reshape(len(rows), -1).any(axis=1)
    assert no_lesion.any() and scores.loc[no_lesion, "pointing_game"].isna().all()
    assert scores.loc[~no_lesion, "pointing_game"].notna().all()
    assert scores["sign_flipped"].isna().all()  # not a sign-corrected method

    sanity = pd.read_parquet(tmp_path / "sanity.parquet")
    assert list(sanity.columns) == SANITY_FILE_COLUMNS
    assert len(sanity) == 3 * 2 and sanity["image_id"].nunique() == 3
    first = sanity[sanity["stage"] == 1]
    checked = [list(scores["image_id"]).index(i) for i in first["image_id"]]
    direct = sanity_check(
        model,
        "resnet18",
        "gradcam",
        x[checked],
        [targets[i] for i in checked],
        cams[checked],
        list(first["image_id"]),
        depths=[1],
        seed=3,
    )
    np.testing.assert_allclose(first["spearman"], direct["spearman"], atol=1e-6)
    assert set(first["randomised"]) == {"fc"}
    assert sanity["spearman_random"].abs().max() < 0.2  # an unrelated map: near zero


def test_signed_method_records_its_flips(fold, masks, tmp_path):  # noqa: F811
    scores = run(fold[0], tmp_path, "eigengradcam_signed", masks, max_images=3, sanity_images=0)
    assert len(scores) == 3 and set(scores["sign_flipped"].unique()) <= {0.0, 1.0}
    assert pd.read_parquet(tmp_path / "sanity.parquet").empty


def test_baselines_score_the_same_images(fold, masks, tmp_path):  # noqa: F811
    root, model, images, ids, _ = fold
    explained = run(root, tmp_path, "gradcam", masks, max_images=5, sanity_images=0)
    baselines = _baselines(root, masks, tmp_path / "baselines.parquet", max_images=5)
    assert list(baselines.columns) == BASELINE_COLUMNS
    assert pd.read_parquet(tmp_path / "baselines.parquet").equals(baselines)
    for name, part in baselines.groupby("baseline"):
        assert list(part["image_id"]) == list(explained["image_id"]), name
    lesion = explained["pointing_game"].notna().to_numpy()
    mask = baselines[baselines["baseline"] == "mask"]
    assert (mask["pointing_game"].to_numpy()[lesion] == 1).all()
    assert np.isnan(mask["deletion_auc"].to_numpy()[~lesion]).all() and (~lesion).any()
    # the random map of an image is the one localisation.random_map gives for its seed
    random = baselines[baselines["baseline"] == "random"].reset_index(drop=True)
    rows = [ids.index(i) for i in random["image_id"]]
    lesions = np.load(masks)[rows]
    maps = np.stack([random_map((SIZE, SIZE), image_seed(3, i)) for i in random["image_id"]])
    seeds = [image_seed(3, i) for i in random["image_id"]]
    expected = localisation_scores(maps, lesions, tolerance=1, top_k=5, seeds=seeds)
    np.testing.assert_allclose(random["iou_top_k"], expected["iou_top_k"])
    # the smooth random map: noise on resnet18's layer4 grid, 2x2 at 64 px
    smooth = baselines[baselines["baseline"] == "smooth_random"].reset_index(drop=True)
    maps = np.stack([smooth_random_map((SIZE, SIZE), (2, 2), s) for s in seeds])
    expected = localisation_scores(maps, lesions, tolerance=1, top_k=5, seeds=seeds)
    np.testing.assert_allclose(smooth["energy_pointing_game"], expected["energy_pointing_game"])


def _baselines(root, masks, out, **changes):
    return score_baselines(
        root / "model.pt",
        root / "images.npy",
        root / "manifest.parquet",
        root / "predictions.parquet",
        masks,
        out,
        *settings(**{"seed": 3, **QUALITY, **changes}),
    )


def _explain_fold(root, masks, out, methods, cams=True, **changes):
    """The cams job (unless ``cams`` is False: the maps are there) and the scores job of one
    fold, as the workflow runs them."""
    paths = {
        kind: [out / method / f"{kind}.{ext}" for method in methods]
        for kind, ext in (("scores", "parquet"), ("cams", "npz"), ("sanity", "parquet"))
    }
    for method in methods:
        (out / method).mkdir(parents=True, exist_ok=True)
    args = (root / "model.pt", root / "images.npy", root / "manifest.parquet")
    args += (root / "predictions.parquet",)
    explain, quality = settings(
        **{"seed": 3, "sanity_images": 2, "sanity_depths": [1], **QUALITY, **changes}
    )
    if cams:
        explain_fold(*args, methods, paths["cams"], explain)
    return score_fold(
        *args,
        methods,
        paths["cams"],
        paths["scores"],
        paths["sanity"],
        explain,
        quality,
        masks_path=masks,
        baselines_path=out / "baselines.parquet",
    )


def test_explain_fold_writes_what_a_job_per_method_writes(fold, masks, tmp_path):  # noqa: F811
    """One job per fold: each method's files equal those of explain() run alone for it (the
    seconds aside), and the baselines those of score_baselines(), in one process."""
    root = fold[0]
    methods = ["ablationcam", "eigengradcam_signed", "gradcampp"]
    together = _explain_fold(root, masks, tmp_path / "fold", methods, max_images=5)
    assert list(together["method"].unique()) == methods
    for method in methods:
        alone = tmp_path / "alone" / method
        alone.mkdir(parents=True)
        run(root, alone, method, masks, max_images=5, sanity_images=2, sanity_depths=[1])
        in_fold = tmp_path / "fold" / method
        pd.testing.assert_frame_equal(
            pd.read_parquet(in_fold / "scores.parquet").drop(columns="seconds"),
            pd.read_parquet(alone / "scores.parquet").drop(columns="seconds"),
            obj=method,
        )
        pd.testing.assert_frame_equal(
            pd.read_parquet(in_fold / "sanity.parquet"),
            pd.read_parquet(alone / "sanity.parquet"),
            obj=method,
        )
        with np.load(in_fold / "cams.npz") as a, np.load(alone / "cams.npz") as b:
            for key in ("image_id", "cams", "target"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{method} {key}")
    alone = _baselines(root, masks, tmp_path / "baselines.parquet", max_images=5)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "fold" / "baselines.parquet"), alone)


@pytest.mark.parametrize(
    ("methods", "layer", "message"),
    [
        (["gradcam", "gradcam++"], None, "unknown CAM method 'gradcam++'"),
        (["gradcam", "layercam"], "layer9", "layer9"),
    ],
)
def test_explain_fold_checks_every_method_and_the_layer_first(
    fold,  # noqa: F811
    masks,
    tmp_path,
    methods,
    layer,
    message,
):
    with pytest.raises((ValueError, KeyError), match=re.escape(message)):
        _explain_fold(fold[0], masks, tmp_path, methods, layer_path=layer)
    assert not list(tmp_path.rglob("*.*"))  # nothing written for the first method


def test_scores_come_from_the_stored_maps_and_rescoring_keeps_them(fold, masks, tmp_path):  # noqa: F811
    """The scores job reads the maps the cams job stored: those maps scored by the loop that
    scores a baseline's give the method's scores exactly; other quality settings rescore
    without touching cams.npz; maps of other images are refused, naming the file."""
    root = fold[0]
    out = tmp_path / "fold"
    first = _explain_fold(root, masks, out, ["gradcam"], max_images=5)
    cams = out / "gradcam" / "cams.npz"
    stamp = (cams.read_bytes(), cams.stat().st_mtime_ns)
    loaded = load_fold(
        *(root / name for name in ("model.pt", "images.npy", "manifest.parquet")),
        root / "predictions.parquet",
        masks_path=masks,
        device="cpu",
        max_images=5,
    )
    _, quality = settings(**QUALITY)
    direct = score_maps(loaded, np.load(cams)["cams"], quality, seed=3, batch_size=4)
    for column in MAP_SCORES:
        np.testing.assert_array_equal(first[column], direct[column], err_msg=column)

    rescored = _explain_fold(
        root, masks, out, ["gradcam"], cams=False, max_images=5, road_percentiles=[50]
    )
    assert (cams.read_bytes(), cams.stat().st_mtime_ns) == stamp
    kept = [c for c in first.columns if c != "road"]
    pd.testing.assert_frame_equal(rescored[kept], first[kept])
    assert not np.allclose(rescored["road"], first["road"])

    with pytest.raises(ValueError, match=re.escape(f"{cams} holds the maps of other images")):
        _explain_fold(root, masks, out, ["gradcam"], cams=False, max_images=4)
