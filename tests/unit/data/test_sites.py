"""Acquisition sites: phantom sites, the manifest's site column, leave-site-out folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import write_folder_dataset
from xaimed.data.folds import assign_folds
from xaimed.data.ingest import ingest
from xaimed.data.phantoms import generate


def read(path) -> np.ndarray:
    with Image.open(path) as handle:
        return np.asarray(handle)


def test_one_site_writes_exactly_the_rendered_images(tmp_path):
    table = generate.write_phantom_dataset("chest_xray", tmp_path / "one", 3, 32, seed=5, sites=1)
    for row in table.itertuples():
        i = int(row.path[-8:-4])
        rng = generate.phantom_rng("chest_xray", row.class_name, i, 5)
        image, _ = generate.render("chest_xray", row.class_name, rng, 32)
        assert np.array_equal(read(row.path), image)
    default = generate.write_phantom_dataset("chest_xray", tmp_path / "default", 3, 32, seed=5)
    for a, b in zip(table["path"], default["path"], strict=True):
        with open(a, "rb") as one, open(b, "rb") as other:
            assert one.read() == other.read()  # byte for byte
    assert not (tmp_path / "one" / "metadata.csv").exists()  # nor does the manifest change


def test_site_zero_images_are_unchanged_and_other_sites_differ(tmp_path):
    one = generate.write_phantom_dataset("skin_lesion", tmp_path / "one", 4, 32, sites=1)
    two = generate.write_phantom_dataset("skin_lesion", tmp_path / "two", 4, 32, sites=2)
    for a, b in zip(one["path"], two["path"], strict=True):
        same = np.array_equal(read(a), read(b))
        assert same == (int(a[-8:-4]) % 2 == 0)  # image i is taken at site i % 2
    manifest = ingest(tmp_path / "two", dataset="skin")
    expected = [f"site{int(i[-4:]) % 2}" for i in manifest["image_id"]]
    assert manifest["site"].tolist() == expected
    with pytest.raises(ValueError, match="sites must be an integer >= 1"):
        generate.write_phantom_dataset("skin_lesion", tmp_path / "bad", 2, 32, sites=0)


def test_leave_site_out_holds_out_one_whole_site_per_fold(tmp_path):
    generate.write_phantom_dataset("brain_mri", tmp_path / "data", 3, 32, sites=3)
    manifest = ingest(tmp_path / "data", dataset="brain")
    folds = assign_folds(manifest, 3, cv="leave_site_out")
    sites_per_fold = manifest.groupby(folds["fold"])["site"].unique()
    assert sorted(s for sites in sites_per_fold for s in sites) == ["site0", "site1", "site2"]
    assert all(len(sites) == 1 for sites in sites_per_fold)
    with pytest.raises(ValueError, match="3 sites in column 'site' cannot fill 4 folds"):
        assign_folds(manifest, 4, cv="leave_site_out")
    with pytest.raises(ValueError, match="needs the manifest column 'scanner'"):
        assign_folds(manifest, 3, cv="leave_site_out", site_column="scanner")
    with pytest.raises(ValueError, match="unknown cv 'loo'"):
        assign_folds(manifest, 3, cv="loo")


def test_any_metadata_column_can_be_the_site_of_a_folder_dataset(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"healthy": 4, "lesion": 4})
    manifest = ingest(root, dataset="folder")
    hospital = ["north" if i % 2 else "south" for i in range(len(manifest))]
    pd.DataFrame({"image_id": manifest["image_id"][::-1], "hospital": hospital[::-1]}).to_csv(
        root / "metadata.csv", index=False
    )
    with_sites = ingest(root, dataset="folder")
    assert with_sites["hospital"].tolist() == hospital  # matched by image_id, not by row
    folds = assign_folds(with_sites, 2, cv="leave_site_out", site_column="hospital")
    assert (with_sites.groupby(folds["fold"])["hospital"].nunique() == 1).all()
    pd.DataFrame({"image_id": manifest["image_id"][:3], "hospital": "x"}).to_csv(
        root / "metadata.csv", index=False
    )
    with pytest.raises(ValueError, match="metadata.csv lacks 5 images"):
        ingest(root, dataset="folder")
