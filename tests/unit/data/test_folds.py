import pandas as pd
import pytest

from xaimed.data.folds import assign_folds, fold_rows, fold_seed


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
