import numpy as np
import pandas as pd
import pytest

from xaimed.data.folds import assign_folds, fold_repeat, fold_rows, fold_seed


def _manifest(labels, groups=None):
    n = len(labels)
    return pd.DataFrame(
        {
            "image_id": [f"img{i:03d}" for i in range(n)],
            "label": labels,
            "label_name": [f"class{label}" for label in labels],
            "group": groups if groups is not None else [None] * n,
        }
    )


def test_every_image_is_held_out_exactly_once_and_classes_are_stratified():
    manifest = _manifest([0] * 30 + [1] * 15)
    folds = assign_folds(manifest, 3, seed=1)
    assert folds["image_id"].tolist() == manifest["image_id"].tolist()
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    per_fold = pd.crosstab(folds["fold"], manifest["label"])
    assert (per_fold[0] == 10).all() and (per_fold[1] == 5).all()


def test_folds_depend_on_the_seed_only():
    manifest = _manifest([0] * 20 + [1] * 20)
    assert assign_folds(manifest, 4, 7).equals(assign_folds(manifest, 4, 7))
    assert not assign_folds(manifest, 4, 7).equals(assign_folds(manifest, 4, 8))


def test_images_of_one_patient_share_a_fold():
    labels = [0] * 24 + [1] * 24
    groups = [f"patient{i // 3}" for i in range(48)]  # three images per patient
    groups[0] = None  # an unknown group is the image's own
    folds = assign_folds(_manifest(labels, groups), 4, seed=0)
    by_patient = folds.assign(group=groups).dropna().groupby("group")["fold"].nunique()
    assert (by_patient == 1).all()
    assert folds["fold"].nunique() == 4


def test_too_few_images_in_a_class_names_the_class():
    with pytest.raises(ValueError, match=r"class 'class1' has only 2 images"):
        assign_folds(_manifest([0] * 10 + [1] * 2), 3)


def _duplicates(pairs):
    return pd.DataFrame(pairs, columns=["image_id_a", "image_id_b"])


def test_duplicates_share_a_fold_even_across_patients():
    labels = [0] * 20 + [1] * 20
    groups = [f"patient{i // 2}" for i in range(40)]
    manifest = _manifest(labels, groups)
    # img000 (patient0) duplicates img021 (patient10), which shares patient10 with img020:
    # all four images of the two patients form one leakage group
    pairs = [("img000", "img021"), ("img005", "img030"), ("img010", "img011")]
    for seed in range(5):
        fold = assign_folds(manifest, 4, seed, duplicates=_duplicates(pairs)).set_index("image_id")[
            "fold"
        ]
        assert fold["img000"] == fold["img001"] == fold["img020"] == fold["img021"]
        assert fold["img005"] == fold["img030"]


def test_duplicates_group_images_without_a_known_patient():
    manifest = _manifest([0] * 12 + [1] * 12)
    without = assign_folds(manifest, 3, 0)
    with_copies = assign_folds(manifest, 3, 0, duplicates=_duplicates([("img000", "img001")]))
    fold = with_copies.set_index("image_id")["fold"]
    assert fold["img000"] == fold["img001"]
    assert list(with_copies.columns) == ["image_id", "fold", "test", "excluded"]
    assert not with_copies["test"].any() and not with_copies["excluded"].any()
    # no groups, no duplicates: plain StratifiedKFold, as before
    assert assign_folds(manifest, 3, 0, duplicates=_duplicates([]))["fold"].equals(without["fold"])


def test_too_many_duplicates_for_the_folds_say_what_to_lower():
    manifest = _manifest([0] * 4 + [1] * 4)
    chain = _duplicates([(f"img{i:03d}", f"img{i + 1:03d}") for i in range(7)])
    with pytest.raises(ValueError, match="near_duplicate_distance"):
        assign_folds(manifest, 2, 0, duplicates=chain)


def test_predefined_split_holds_out_the_test_split_in_every_fold():
    manifest = _manifest([0, 1] * 6, [f"p{i}" for i in range(12)])
    manifest["split"] = ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    manifest.loc[7, "group"] = "p9"  # a val image of a test patient: left out of training
    folds = assign_folds(
        manifest, 3, 0, cv="predefined", duplicates=_duplicates([("img000", "img011")])
    )
    assert folds["test"].tolist() == [False] * 8 + [True] * 4
    assert folds.loc[folds["excluded"], "image_id"].tolist() == ["img000", "img007"]
    for fold in range(3):
        train, held_out = fold_rows(folds, fold)
        assert held_out.tolist() == [8, 9, 10, 11]
        assert train.tolist() == [1, 2, 3, 4, 5, 6]
        assert fold_seed(folds, fold, 10) == 10 + fold


def test_kfold_rows_and_seed():
    folds = assign_folds(_manifest([0] * 6 + [1] * 6), 3, 0)
    train, held_out = fold_rows(folds, 2)
    assert sorted([*train, *held_out]) == list(range(12))
    assert (folds["fold"].to_numpy()[held_out] == 2).all() and len(held_out) == 4
    assert fold_seed(folds, 2, 10) == 10


@pytest.mark.parametrize(
    ("splits", "message"),
    [([None] * 4, "has none"), (["train"] * 4, "training and test"), (["test"] * 4, "test")],
)
def test_predefined_needs_a_train_and_a_test_split(splits, message):
    manifest = _manifest([0, 1, 0, 1])
    manifest["split"] = splits
    with pytest.raises(ValueError, match=message):
        assign_folds(manifest, 2, cv="predefined")


def test_repeats_reshuffle_kfold_and_keep_repeat_zero_as_without_repeats():
    labels = [0] * 18 + [1] * 12
    groups = [f"patient{i // 2}" for i in range(30)]  # two images per patient
    manifest = _manifest(labels, groups)
    once = assign_folds(manifest, 3, 5)
    twice = assign_folds(manifest, 3, 5, repeats=3)
    # repeat 0 is today's assignment; each later repeat has a column, reshuffled
    assert twice[once.columns].equals(once)
    assert list(twice.columns[4:]) == ["fold_repeat1", "fold_repeat2"]
    assert twice["fold_repeat1"].equals(assign_folds(manifest, 3, 1005)["fold"])
    assert not twice["fold_repeat1"].equals(twice["fold"])
    for column in ("fold_repeat1", "fold_repeat2"):
        # grouped and stratified as repeat 0: every patient in one fold, 6 + 4 images per fold
        assert (twice.assign(g=groups).groupby("g")[column].nunique() == 1).all()
        per_fold = pd.crosstab(twice[column], manifest["label"])
        assert (per_fold[0] == 6).all() and (per_fold[1] == 4).all()
    # global fold ids 0..8: fold f is fold f % 3 of repeat f // 3, with the repeat's seed
    for fold in range(9):
        column = "fold" if fold < 3 else f"fold_repeat{fold // 3}"
        train, held_out = fold_rows(twice, fold)
        assert held_out.tolist() == np.flatnonzero(twice[column] == fold % 3).tolist()
        assert sorted([*train, *held_out]) == list(range(30))
        assert fold_seed(twice, fold, 5) == 5 + 1000 * (fold // 3)
    assert fold_repeat(twice, 7) == (2, 1)
    with pytest.raises(ValueError, match="fold 9 is fold 0 of repeat 3 .* has 3 repeat"):
        fold_rows(twice, 9)


def test_a_table_without_repeats_numbers_its_folds_as_before():
    folds = assign_folds(_manifest([0] * 6 + [1] * 6), 3, 0)
    assert fold_repeat(folds, 2) == (0, 2) and fold_seed(folds, 2, 10) == 10
    assert len(fold_rows(folds, 3)[1]) == 0  # no such fold: nothing held out (train refuses)


def test_predefined_and_site_repeats_differ_only_in_their_seed(caplog):
    manifest = _manifest([0, 1] * 6)
    manifest["split"] = ["train"] * 8 + ["test"] * 4
    with caplog.at_level("INFO", logger="xaimed.data.folds"):
        folds = assign_folds(manifest, 2, 0, cv="predefined", repeats=2)
    assert "the 2 repeats of its 2 folds differ only in their seed" in caplog.text
    assert list(folds.columns) == ["image_id", "fold", "test", "excluded"]
    for fold in range(4):
        assert fold_rows(folds, fold)[1].tolist() == [8, 9, 10, 11]
        assert fold_seed(folds, fold, 10) == 10 + fold
    manifest["site"] = ["a", "b", "c"] * 4
    caplog.clear()
    with caplog.at_level("INFO", logger="xaimed.data.folds"):
        sites = assign_folds(manifest, 3, 0, cv="leave_site_out", repeats=2)
    assert "its 2 repeats differ only in their seed" in caplog.text
    assert sites["fold_repeat1"].equals(sites["fold"])
    for fold in range(3):
        assert (fold_rows(sites, fold + 3)[1] == fold_rows(sites, fold)[1]).all()
        assert (fold_seed(sites, fold, 0), fold_seed(sites, fold + 3, 0)) == (0, 1000)
