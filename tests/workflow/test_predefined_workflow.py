"""`cv: predefined` through the whole default DAG: its repeats explain the same test images,
which the gallery, the tables and the method t-tests must take as repeats of one image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import snakemake

CONFIG = {
    "seed": 0,
    "folds": 2,  # two repeats of the dataset's own split
    "image_size": 32,
    "datasets": {"mnist": {"format": "medmnist", "path": "tiny.npz", "cv": "predefined"}},
    "models": ["resnet18"],
    "training": {"epochs": 1, "batch_size": 8},
    "explain": {
        "models": ["resnet18"],
        "methods": ["gradcampp", "xgradcam"],
        "batch_size": 8,
        "target_layers": {"resnet18": "layer2"},  # 4x4 at 32 px; layer4 (1x1) is refused
    },
    "shift": {"models": []},
    "quality": {"sanity": {"images": 2}},
}


def write_medmnist(path, seed: int = 0) -> None:
    """A MedMNIST-style .npz: 28 px grey images, two classes told apart by where a bright
    block sits. 19 training images (16 after the validation part: no batch of one)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 15), ("val", 4), ("test", 6)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            top = 4 if label == 0 else 16
            images[i, top : top + 8, 8:18] = 230
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="module")
def predefined_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("predefined")
    write_medmnist(workdir / "tiny.npz")
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(workdir)  # the default target: every table and figure, the gallery included
    return workdir


def test_the_repeats_run_the_whole_default_dag(predefined_run):
    workdir = predefined_run
    folds = pd.read_parquet(workdir / "results/data/mnist/folds.parquet")
    test_ids = set(folds.loc[folds["test"], "image_id"])
    assert len(test_ids) == 6
    scores = pd.read_parquet(workdir / "results/explain/mnist/scores.parquet")
    # both repeats explained every test image with every method
    assert scores.groupby(["fold", "method"])["image_id"].apply(set).map(test_ids.__eq__).all()
    assert len(scores) == 2 * 2 * 6 and scores["constant_map"].dtype == bool

    assert (workdir / "results/figures/cams_mnist.png").stat().st_size > 0
    gallery_log = (workdir / "logs/report/cam_gallery/mnist.log").read_text()
    assert "2 folds explain the same images (repeats)" in gallery_log

    # tables pool the repeats: one row per image (its mean over the repeats)
    table = pd.read_csv(workdir / "results/tables/confidence_increase.csv")
    for (method, cls), row in table.set_index(["method", "class"]).iterrows():
        mine = scores[(scores["method"] == method) & (scores["pred_name"].astype(int) == cls)]
        per_image = mine.groupby("image_id")["confidence_increase"].mean()
        assert row["n_images"] == len(per_image) <= 6
        assert row["confidence_increase_mean"] == pytest.approx(per_image.mean())
        assert row["n_constant_maps"] == mine["constant_map"].sum()
    faithfulness = pd.read_csv(workdir / "results/tables/faithfulness.csv")
    assert faithfulness["n_images"].max() <= 6
    checked = pd.read_parquet(workdir / "results/explain/mnist/sanity.parquet")
    sanity = pd.read_csv(workdir / "results/tables/sanity.csv")
    assert len(sanity) >= 1
    for row in sanity.to_dict("records"):
        mine = checked[
            (checked["method"] == row["method"])
            & (checked["pred_name"].astype(int) == row["class"])
            & (checked["stage"] == row["stage"])
        ].dropna(subset=[row["metric"]])
        assert row["n_images"] == mine["image_id"].nunique()

    # t-tests pair the methods within each repeat and count each image once
    tests = pd.read_csv(workdir / "results/tables/ttest_methods.csv")
    assert len(tests) >= 1
    for row in tests.to_dict("records"):
        part = scores[scores["pred_name"].astype(int) == row["class"]]
        wide = part.pivot(
            index=["fold", "image_id"], columns="method", values="confidence_increase"
        )
        assert row["n"] == wide.dropna().index.get_level_values("image_id").nunique()


def test_the_repeats_maps_agreement_is_measured_per_image(predefined_run):
    """The two repeats explain the same 6 test images: the repeatability table and its tests
    hold each method's agreement across the two models, recomputed here from the maps."""
    from scipy import stats

    from xaimed.explain.metrics.confidence import CONSTANT_RANGE

    workdir = predefined_run
    maps = {
        (fold, method): np.load(
            workdir / f"results/explain/mnist/resnet18/fold{fold}/{method}/cams.npz"
        )
        for fold in (0, 1)
        for method in CONFIG["explain"]["methods"]
    }
    table = pd.read_csv(workdir / "results/tables/repeatability.csv")
    assert set(zip(table["method"], table["metric"], strict=True)) == {
        (method, metric)
        for method in CONFIG["explain"]["methods"]
        for metric in ("spearman", "ssim", "iou_top_k")
    }
    for method in CONFIG["explain"]["methods"]:
        a, b = maps[(0, method)], maps[(1, method)]
        assert list(a["image_id"]) == list(b["image_id"])  # the same test images, same order
        rhos = [
            stats.spearmanr(x.ravel(), y.ravel()).statistic
            for x, y, same in zip(a["cams"], b["cams"], a["target"] == b["target"], strict=True)
            if same and min(np.ptp(x), np.ptp(y)) > CONSTANT_RANGE
        ]
        row = table[(table["method"] == method) & (table["metric"] == "spearman")].iloc[0]
        assert row["n_images"] == len(rhos) >= 1
        assert row["n_models"] == 2
        assert row["n_pairs_other_class"] == int((a["target"] != b["target"]).sum())
        assert row["mean"] == pytest.approx(np.mean(rhos))
        # random maps drawn per model: no agreement, whatever the methods show
        assert abs(row["baseline_random"]) < 0.2
    assert (table.loc[table["metric"] == "iou_top_k", "top_k"] == 10).all()

    tests = pd.read_csv(workdir / "results/tables/ttest_repeatability.csv")
    assert sorted(tests["metric"]) == ["iou_top_k", "spearman", "ssim"]
    assert (tests[["method_a", "method_b"]].to_numpy() == ["gradcampp", "xgradcam"]).all()
    assert (tests["n"] <= 6).all()
    assert (workdir / "results/figures/repeatability_mnist.png").stat().st_size > 0
