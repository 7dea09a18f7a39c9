import pandas as pd
import pytest

from xaimed.folds import assign_folds


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
