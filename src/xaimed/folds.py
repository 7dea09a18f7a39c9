"""Stratified cross-validation folds, grouped by patient or lesion where the group is known."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

CV_MODES = ("kfold", "leave_site_out")


def assign_folds(
    manifest: pd.DataFrame,
    n_folds: int,
    seed: int = 0,
    cv: str = "kfold",
    site_column: str = "site",
) -> pd.DataFrame:
    """One row per image: image_id, fold (0..n_folds-1); each image is held out exactly once.

    Images sharing a `group` (patient, lesion) always land in the same fold, so no patient is
    seen in training and testing at once. With `cv="leave_site_out"` the folds are whole sites
    (the manifest column `site_column`): each fold is tested by a model that never saw its
    site(s); with as many sites as folds, one site per fold.
    """
    if cv == "leave_site_out":
        return _site_folds(manifest, n_folds, site_column)
    if cv != "kfold":
        raise ValueError(f"unknown cv {cv!r}; choose one of {CV_MODES}")
    counts = manifest["label_name"].value_counts()
    smallest = counts.idxmin()
    if counts[smallest] < n_folds:
        raise ValueError(
            f"cannot make {n_folds} stratified folds: class {smallest!r} has only "
            f"{counts[smallest]} images; lower `folds` in the config or add images"
        )
    labels = manifest["label"].to_numpy()
    groups = manifest["group"]
    if groups.notna().any():
        # An image without a known group is its own group.
        groups = groups.fillna(manifest["image_id"]).astype(str).to_numpy()
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(manifest, labels, groups)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(manifest, labels)
    fold = pd.Series(-1, index=manifest.index, dtype="int64")
    for k, (_, test_rows) in enumerate(splits):
        fold.iloc[test_rows] = k
    return pd.DataFrame({"image_id": manifest["image_id"], "fold": fold})


def _site_folds(manifest: pd.DataFrame, n_folds: int, site_column: str) -> pd.DataFrame:
    if site_column not in manifest.columns:
        raise ValueError(
            f"cv leave_site_out needs the manifest column {site_column!r} (site_column); the "
            f"manifest has {list(manifest.columns)}"
        )
    sites = manifest[site_column]
    if sites.isna().any():
        raise ValueError(f"manifest column {site_column!r} is empty for some images")
    n_sites = sites.nunique()
    if n_sites < n_folds:
        raise ValueError(
            f"cv leave_site_out: {n_sites} sites in column {site_column!r} cannot fill "
            f"{n_folds} folds; set `folds` to at most {n_sites}"
        )
    fold = pd.Series(-1, index=manifest.index, dtype="int64")
    splits = GroupKFold(n_splits=n_folds).split(manifest, groups=sites.astype(str).to_numpy())
    for k, (_, test_rows) in enumerate(splits):
        fold.iloc[test_rows] = k
    return pd.DataFrame({"image_id": manifest["image_id"], "fold": fold})
