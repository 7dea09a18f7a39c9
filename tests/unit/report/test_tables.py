"""Tests for xaimed.report.tables: aggregates against numpy, Markdown/CSV writing, parquet
reading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xaimed.report.tables import (
    classification_table,
    confidence_increase_table,
    data_table,
    read_parquets,
    timing_table,
    to_html,
    write_table,
)


def _fold_metrics() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {
            "dataset": dataset,
            "model": model,
            "fold": fold,
            "n_images": 10,
            "accuracy": rng.uniform(),
            "balanced_accuracy": rng.uniform(),
            "f1_macro": rng.uniform(),
            "auroc_macro": rng.uniform(),
        }
        for dataset in ("d2", "d1")
        for model in ("resnet", "densenet")
        for fold in range(3 if model == "resnet" else 5)
    ]
    return pd.DataFrame(rows)


def test_classification_table_means_and_sample_sd():
    fm = _fold_metrics()
    table = classification_table(fm)
    assert list(table.columns) == [
        "dataset",
        "model",
        "n_folds",
        "accuracy_mean",
        "accuracy_sd",
        "f1_macro_mean",
        "f1_macro_sd",
        "balanced_accuracy_mean",
        "balanced_accuracy_sd",
        "auroc_macro_mean",
        "auroc_macro_sd",
    ]
    assert list(zip(table["dataset"], table["model"], strict=True))[0] == ("d1", "densenet")
    row = table[(table["dataset"] == "d2") & (table["model"] == "resnet")].iloc[0]
    values = fm[(fm["dataset"] == "d2") & (fm["model"] == "resnet")]
    assert row["n_folds"] == 3
    for metric in ("accuracy", "f1_macro", "balanced_accuracy", "auroc_macro"):
        x = values[metric].to_numpy()
        assert row[f"{metric}_mean"] == pytest.approx(np.mean(x))
        assert row[f"{metric}_sd"] == pytest.approx(np.std(x, ddof=1))


def _scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": "d",
            "model": "net",
            "fold": [0, 0, 0, 1, 0, 0, 0, 1],
            "method": ["gradcam"] * 4 + ["scorecam"] * 4,
            "image_id": ["i0", "i1", "i2", "i3"] * 2,
            "label_name": ["a", "a", "b", "b"] * 2,
            # image i1 was misclassified: its CAM explains class b
            "pred_name": ["a", "b", "b", "b"] * 2,
            "confidence_increase": [0.2, -0.1, 0.0, 0.3, -0.5, 0.4, 0.1, np.nan],
            "road": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
            "seconds": [1.0, 2.0, 4.0, 8.0, 0.5, 0.5, 0.25, 0.75],
        }
    )


def test_confidence_increase_table_by_predicted_class():
    table = confidence_increase_table(_scores())
    assert list(table.columns) == [
        "dataset",
        "model",
        "method",
        "class",
        "n_images",
        "confidence_increase_mean",
        "confidence_increase_sd",
        "increase_fraction",
        "road_mean",
        "road_sd",
        "n_constant_maps",
    ]
    t = table.set_index(["method", "class"])
    assert list(t.index) == [
        ("gradcam", "a"),
        ("gradcam", "b"),
        ("scorecam", "a"),
        ("scorecam", "b"),
    ]
    gb = t.loc[("gradcam", "b")]
    ci = np.array([-0.1, 0.0, 0.3])
    assert gb["n_images"] == 3
    assert gb["confidence_increase_mean"] == pytest.approx(ci.mean())
    assert gb["confidence_increase_sd"] == pytest.approx(np.std(ci, ddof=1))
    assert gb["increase_fraction"] == pytest.approx(1 / 3)  # 0.0 is not an increase
    assert gb["road_mean"] == pytest.approx(0.3)
    assert gb["road_sd"] == pytest.approx(np.std([0.2, 0.3, 0.4], ddof=1))
    # NaN confidence is left out of the fraction: 2 of 2 scored images increased
    assert t.loc[("scorecam", "b"), "increase_fraction"] == pytest.approx(1.0)
    assert t.loc[("scorecam", "a"), "increase_fraction"] == 0.0
    assert np.isnan(t.loc[("gradcam", "a"), "confidence_increase_sd"])  # one image


def test_timing_table():
    table = timing_table(_scores())
    assert list(table.columns) == [
        "dataset",
        "model",
        "method",
        "n_images",
        "seconds_per_image",
        "seconds_per_image_sd",
    ]
    g = table[table["method"] == "gradcam"].iloc[0]
    assert g["n_images"] == 4
    assert g["seconds_per_image"] == pytest.approx(3.75)
    assert g["seconds_per_image_sd"] == pytest.approx(np.std([1, 2, 4, 8], ddof=1))


def test_write_table_csv_and_markdown(tmp_path):
    df = pd.DataFrame(
        {
            "name": ["a|b", "c"],
            "n": [3, 12],
            "value": [0.123456, 12345.678],
            "sd": [np.nan, 1e-7],
        }
    )
    csv = tmp_path / "deep" / "dir" / "table.csv"
    write_table(df, csv)
    pd.testing.assert_frame_equal(pd.read_csv(csv), df)
    lines = (tmp_path / "deep" / "dir" / "table.md").read_text().splitlines()
    assert len(lines) == 2 + len(df)
    assert lines[0] == "| name | n | value | sd |"
    assert lines[1] == "| --- | ---: | ---: | ---: |"
    assert lines[2] == r"| a\|b | 3 | 0.1235 | NaN |"
    assert lines[3] == "| c | 12 | 1.235e+04 | 1e-07 |"


def test_read_parquets(tmp_path):
    a = pd.DataFrame({"x": [1, 2], "y": ["p", "q"]})
    b = pd.DataFrame({"x": [3], "y": ["r"]})
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    got = read_parquets([tmp_path / "a.parquet", str(tmp_path / "b.parquet")])
    assert got["x"].tolist() == [1, 2, 3] and got.index.tolist() == [0, 1, 2]
    assert read_parquets([]).empty


# --- HTML twins and the data summary -----------------------------------------------------


def test_to_html_escapes_text_and_formats_numbers():
    df = pd.DataFrame({"model": ["a|b", "<script>"], "p": [0.0123456, np.nan], "n": [3, 4]})
    page = to_html(df, title="t")
    assert page.startswith("<!DOCTYPE html>") and "<title>t</title>" in page
    assert "<th>model</th><th>p</th><th>n</th>" in page
    assert "<td>a|b</td>" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert '<td class="num">0.01235</td><td class="num">3</td>' in page
    assert '<td class="num">NaN</td>' in page
    assert page.count("<tr>") == 3


def test_write_table_html_twin(tmp_path):
    df = pd.DataFrame({"a": [1.5]})
    write_table(df, tmp_path / "x.csv", tmp_path / "x.html")
    assert '<td class="num">1.5</td>' in (tmp_path / "x.html").read_text()
    assert (tmp_path / "x.md").exists()


def test_data_table_counts_classes_masks_and_folds(tmp_path):
    drawn = np.zeros((8, 8), np.uint8)
    drawn[2:4, 2:4] = 255
    masks = []
    for name, pixels in (("m0", drawn), ("m1", np.zeros((8, 8), np.uint8)), ("m2", drawn)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        masks.append(str(tmp_path / f"{name}.png"))
    manifest = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(5)],
            "label": [1, 0, 1, 1, 0],
            "label_name": ["sick", "well", "sick", "sick", "well"],
            # a healthy image's all-empty mask is no mask
            "mask_path": [masks[0], masks[1], masks[2], None, None],
        }
    )
    folds = pd.DataFrame({"image_id": [f"i{k}" for k in range(5)], "fold": [0, 1, 1, 0, 0]})
    table = data_table(manifest, folds, "d")
    assert list(table.columns) == ["dataset", "class", "n_images", "n_masks", "fold_0", "fold_1"]
    assert table.to_dict("records") == [
        {"dataset": "d", "class": "well", "n_images": 2, "n_masks": 0, "fold_0": 1, "fold_1": 1},
        {"dataset": "d", "class": "sick", "n_images": 3, "n_masks": 2, "fold_0": 2, "fold_1": 1},
    ]
    with pytest.raises(ValueError, match="i4"):
        data_table(manifest, folds.iloc[:4], "d")


def test_data_table_counts_every_repeat_s_folds_by_their_ids():
    manifest = pd.DataFrame(
        {"image_id": list("abcd"), "label": [0, 0, 1, 1], "label_name": list("xxyy")}
    )
    folds = pd.DataFrame(
        {"image_id": list("abcd"), "fold": [0, 1, 0, 1], "fold_repeat1": [0, 0, 1, 1]}
    )
    table = data_table(manifest, folds, "d")
    assert list(table.columns[4:]) == ["fold_0", "fold_1", "fold_2", "fold_3"]
    # repeat 1 (folds 2 and 3) holds out both x images in fold 2, both y in fold 3
    assert table[["fold_0", "fold_1", "fold_2", "fold_3"]].to_numpy().tolist() == [
        [1, 1, 2, 0],
        [1, 1, 0, 2],
    ]


def test_data_table_shows_a_predefined_split_as_train_test_and_excluded():
    manifest = pd.DataFrame(
        {"image_id": ["a", "b", "c", "d"], "label": [0, 0, 1, 1], "label_name": list("xxyy")}
    )
    folds = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "fold": [-1, -1, -1, -1],
            "test": [True, False, True, False],
            "excluded": [False, False, False, True],
        }
    )
    table = data_table(manifest, folds, "d")
    assert list(table.columns) == [
        "dataset",
        "class",
        "n_images",
        "n_masks",
        "train",
        "test",
        "excluded",
    ]
    assert table[["train", "test", "excluded"]].to_numpy().tolist() == [[1, 1, 0], [0, 1, 1]]


def test_confidence_increase_table_counts_an_image_of_several_repeats_once():
    """cv: predefined: a second repeat explains the same images; each image counts once, with
    its mean over the repeats, and the constant maps of every repeat are counted."""
    first = _scores().assign(constant_map=False)
    second = first.assign(
        fold=first["fold"] + 2,
        confidence_increase=first["confidence_increase"] + 0.2,
        constant_map=first["image_id"] == "i3",
    )
    table = confidence_increase_table(pd.concat([first, second], ignore_index=True))
    gb = table.set_index(["method", "class"]).loc[("gradcam", "b")]
    ci = np.array([-0.1, 0.0, 0.3]) + 0.1  # per image: the mean of x and x + 0.2
    assert gb["n_images"] == 3
    assert gb["confidence_increase_mean"] == pytest.approx(ci.mean())
    assert gb["confidence_increase_sd"] == pytest.approx(np.std(ci, ddof=1))
    assert gb["n_constant_maps"] == 1  # i3's map in the second repeat
