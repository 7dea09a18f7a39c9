"""Stratified cross-validation folds, grouped by patient or lesion where the group is known."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold


def assign_folds(manifest: pd.DataFrame, n_folds: int, seed: int = 0) -> pd.DataFrame:
    """One row per image: image_id, fold (0..n_folds-1); each image is held out exactly once.

    Images sharing a `group` (patient, lesion) always land in the same fold, so no patient is
    seen in training and testing at once.
    """
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
