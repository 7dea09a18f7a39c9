"""xaimed.stats.repeatability on hand-made cams.npz files: the pairing of images across
folds, the table and the method tests, checked against independent computations."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from xaimed.report.tables import write_table
from xaimed.stats.repeatability import (
    NO_REPEATS,
    compare_methods_repeatability,
    repeatability_pairs,
    repeatability_table,
)

S = 16  # map side


def write_cams(path, ids, cams, targets):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh,
            image_id=np.asarray(ids, dtype=str),
            cams=np.asarray(cams, np.float32),
            target=np.asarray(targets, np.int64),
        )


@pytest.fixture
def repeated(tmp_path):
    """Three folds of resnet18 on 'toy' with two methods. Images a and b are held out by
    folds 0 and 1, a also by fold 2, c by fold 2 only. 'steady' gives every model the same
    map of an image; 'shaky' a different random map per model. Fold 1 predicts another class
    for b."""
    rng = np.random.default_rng(0)
    base = {i: rng.random((S, S)) for i in "abc"}
    held_out = {0: ["a", "b"], 1: ["a", "b"], 2: ["a", "c"]}
    paths, maps = [], []
    for method in ("steady", "shaky"):
        for fold, ids in held_out.items():
            cams = [base[i] if method == "steady" else rng.random((S, S)) for i in ids]
            targets = [1 if (fold == 1 and i == "b") else 0 for i in ids]
            path = tmp_path / f"fold{fold}/{method}/cams.npz"
            write_cams(path, ids, cams, targets)
            paths.append(path)
            maps.append({"dataset": "toy", "model": "resnet18", "fold": fold, "method": method})
    return paths, maps


def test_pairs_every_image_held_out_twice(repeated, caplog):
    paths, maps = repeated
    with caplog.at_level("INFO", logger="xaimed.stats.repeatability"):
        pairs = repeatability_pairs(
            paths, maps, top_k=10, seed=0, target_layers={"resnet18": "layer2"}
        )
    methods = pairs[pairs["kind"] == "method"]
    for method in ("steady", "shaky"):
        mine = methods[methods["method"] == method]
        found = sorted(zip(mine["image_id"], mine["fold_a"], mine["fold_b"], strict=True))
        assert found == [("a", 0, 1), ("a", 0, 2), ("a", 1, 2), ("b", 0, 1)]
    # each pair's agreement is that of the two stored maps
    row = methods[(methods["method"] == "shaky") & (methods["image_id"] == "a")].iloc[1]
    stored = {f: np.load(paths[3 + f]) for f in (0, 2)}
    a0 = stored[0]["cams"][list(stored[0]["image_id"]).index("a")]
    a2 = stored[2]["cams"][list(stored[2]["image_id"]).index("a")]
    assert (row["fold_a"], row["fold_b"]) == (0, 2)
    expected = stats.spearmanr(a0.ravel(), a2.ravel()).statistic
    assert row["spearman"] == pytest.approx(expected)
    np.testing.assert_allclose(methods.loc[methods["method"] == "steady", "spearman"], 1.0)
    # b: fold 1 predicted another class
    assert methods.loc[methods["image_id"] == "b", "same_class"].tolist() == [False, False]
    assert "explain different predicted classes" in caplog.text
    assert "toy/resnet18/steady: 2 images explained by two or more of 3 folds" in caplog.text

    # the baselines: the same pairs, maps drawn independently per model, so they do not agree
    baselines = pairs[pairs["kind"] == "baseline"]
    assert sorted(baselines["method"].unique()) == ["random", "smooth_random"]
    assert len(baselines) == 2 * 4
    random = baselines[baselines["method"] == "random"]
    assert (random["spearman"].abs() < 0.3).all()
    assert (random["ssim"] < 0.5).all()


def test_table_counts_images_once_beside_the_baselines(repeated):
    paths, maps = repeated
    pairs = repeatability_pairs(paths, maps, top_k=10, target_layers={"resnet18": "layer2"})
    table = repeatability_table(pairs).set_index(["method", "metric"])
    counted = pairs[pairs["same_class"] & (pairs["kind"] == "method")]
    for method in ("steady", "shaky"):
        row = table.loc[(method, "spearman")]
        mine = counted[counted["method"] == method]
        per_image = mine.groupby("image_id")["spearman"].mean()  # only a: b's pair differs
        assert row["n_images"] == len(per_image) == 1
        assert row["n_pairs"] == 3 and row["n_models"] == 3
        assert row["n_pairs_other_class"] == 1 and row["n_pairs_constant"] == 0
        assert row["mean"] == pytest.approx(per_image.mean())
        assert row["median"] == pytest.approx(per_image.median())
        random = pairs[(pairs["method"] == "random") & (pairs["image_id"] == "a")]
        assert row["baseline_random"] == pytest.approx(random["spearman"].mean())
        assert np.isfinite(row["baseline_smooth_random"])
    assert table.loc[("steady", "ssim"), "mean"] == pytest.approx(1.0)
    assert table.loc[("steady", "iou_top_k"), "top_k"] == 10
    assert np.isnan(table.loc[("steady", "spearman"), "top_k"])


def test_method_tests_pair_by_image():
    """Two methods on four images: the test is scipy's paired t-test on the per-image means."""
    rng = np.random.default_rng(3)
    rows = []
    for method, shift in (("steady", 0.3), ("shaky", 0.0)):
        for i in range(4):
            for fold_b in (1, 2):  # two pairs per image: its mean counts
                rows.append(
                    {
                        "dataset": "toy",
                        "model": "resnet18",
                        "method": method,
                        "kind": "method",
                        "image_id": f"img{i}",
                        "fold_a": 0,
                        "fold_b": fold_b,
                        "same_class": True,
                        "spearman": 0.4 + shift + rng.normal(0, 0.1),
                        "ssim": 0.5,
                        "iou_top_k": 0.2 + shift,
                    }
                )
    pairs = pd.DataFrame(rows)
    tests = compare_methods_repeatability(pairs).set_index("metric")
    means = pairs.groupby(["method", "image_id"])["spearman"].mean().unstack(0)
    expected = stats.ttest_rel(means["shaky"], means["steady"])
    row = tests.loc["spearman"]
    assert (row["method_a"], row["method_b"], row["n"]) == ("shaky", "steady", 4)
    assert row["p"] == pytest.approx(expected.pvalue)
    assert row["mean_diff"] == pytest.approx((means["shaky"] - means["steady"]).mean())
    assert tests.loc["ssim", "p"] == 1.0  # no difference at all
    assert tests["family_size"].tolist() == [1, 1, 1]


def test_no_image_explained_twice_says_so(tmp_path, caplog):
    """k-fold CV: each image held out once. The pairs, table and tests are empty and say why,
    in the log and in the Markdown and HTML twins."""
    rng = np.random.default_rng(0)
    paths, maps = [], []
    for fold, ids in ((0, ["a", "b"]), (1, ["c", "d"])):
        path = tmp_path / f"fold{fold}/gradcam/cams.npz"
        write_cams(path, ids, rng.random((2, S, S)), [0, 1])
        paths.append(path)
        maps.append({"dataset": "toy", "model": "resnet18", "fold": fold, "method": "gradcam"})
    with caplog.at_level("INFO"):
        pairs = repeatability_pairs(paths, maps)
        table = repeatability_table(pairs)
        tests = compare_methods_repeatability(pairs)
        write_table(table, tmp_path / "repeatability.csv", tmp_path / "repeatability.html")
    assert pairs.empty and table.empty and tests.empty
    assert f"toy/resnet18: {NO_REPEATS}" in caplog.text
    assert NO_REPEATS in (tmp_path / "repeatability.md").read_text()
    assert html.escape(NO_REPEATS) in (tmp_path / "repeatability.html").read_text()
    assert list(pd.read_csv(tmp_path / "repeatability.csv").columns)[:4] == [
        "dataset",
        "model",
        "method",
        "metric",
    ]


def test_a_repeated_image_in_one_file_is_an_error(tmp_path):
    path = tmp_path / "cams.npz"
    write_cams(path, ["a", "a"], np.zeros((2, S, S)), [0, 0])
    maps = [{"dataset": "toy", "model": "resnet18", "fold": 0, "method": "gradcam"}]
    with pytest.raises(ValueError, match=r"image 'a' appears twice in CAM file .*cams.npz"):
        repeatability_pairs([path], maps)


def test_models_that_never_agree_on_the_class_leave_counted_empty_rows(tmp_path):
    """Every pair explains two different classes: no agreement counts, and the table says how
    many pairs it left out rather than dropping the method."""
    rng = np.random.default_rng(0)
    paths, maps = [], []
    for fold in (0, 1):
        path = tmp_path / f"fold{fold}/gradcam/cams.npz"
        write_cams(path, ["a", "b"], rng.random((2, S, S)), [fold, fold])
        paths.append(path)
        maps.append({"dataset": "toy", "model": "resnet18", "fold": fold, "method": "gradcam"})
    pairs = repeatability_pairs(paths, maps, target_layers={"resnet18": "layer2"})
    table = repeatability_table(pairs)
    assert len(table) == 3
    assert (table["n_images"] == 0).all() and table["mean"].isna().all()
    assert (table["n_pairs_other_class"] == 2).all()
    tests = compare_methods_repeatability(pairs)
    assert tests.empty and "explains the same class" in tests.attrs["empty"]
