"""Which images each fold trains on and holds out, grouped so that nothing leaks.

`folds.parquet` has one row per manifest image:

- `fold`: the fold that holds the image out (0..k-1); -1 when no fold does;
- `test`: held out in EVERY fold (the dataset's own test split, `cv: predefined`);
- `excluded`: used in no fold (a training image that duplicates a test image).

`cv: kfold` (the default) splits all images into k stratified folds, grouped by patient or
lesion (`group`) and by duplicate cluster, so no patient and no copy of an image sits on both
sides. `cv: predefined` keeps the dataset's own split: every "fold" trains on the training
split (train and val folders) and tests on the test split; the folds are repeats that differ
only in their seed (`seed + fold`: initialisation, validation part, augmentation, batch order).

`repeats: r` (repeated k-fold cross-validation) makes r * k folds, numbered 0..r*k-1: fold f is
fold f % k of repeat f // k. Repeat 0 is the table's `fold` column (the same as without
repeats); repeat i > 0 is column `fold_repeat<i>`, assigned as repeat 0 with the random state
`seed + 1000 i` under `cv: kfold`. Under `leave_site_out` the sites fix the assignment, so every
repeat's column equals `fold`; under `predefined` the split fixes it. Training seeds: k-fold and
leave-site-out folds of repeat i train with `seed + 1000 i`, predefined folds with `seed + f`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

from xaimed.data.manifest import TEST_SPLITS

log = logging.getLogger("xaimed.data.folds")

FOLD_COLUMNS = ["image_id", "fold", "test", "excluded"]
CV_SCHEMES = ("kfold", "predefined", "leave_site_out")
# Seeds of repeat i: seed + REPEAT_SEED_STEP * i, far from the seeds of other repeats' folds.
REPEAT_SEED_STEP = 1000


def repeat_column(repeat: int) -> str:
    """The folds table's column of one repeat's fold assignment."""
    return "fold" if repeat == 0 else f"fold_repeat{repeat}"


def leakage_groups(manifest: pd.DataFrame, duplicates: pd.DataFrame | None) -> np.ndarray | None:
    """One group label per image: images connected by a shared `group` or by a duplicate pair
    share a label. None when neither is known (plain stratified folds)."""
    has_groups = manifest["group"].notna().any()
    has_duplicates = duplicates is not None and len(duplicates) > 0
    if not has_groups and not has_duplicates:
        return None
    n = len(manifest)
    position = pd.Series(np.arange(n), index=manifest["image_id"])
    a, b = [], []
    if has_groups:
        for rows in manifest.groupby("group", sort=False).indices.values():
            a += [rows[0]] * (len(rows) - 1)
            b += list(rows[1:])
    if has_duplicates:
        known = duplicates["image_id_a"].isin(position.index) & duplicates["image_id_b"].isin(
            position.index
        )
        a += list(position[duplicates.loc[known, "image_id_a"]])
        b += list(position[duplicates.loc[known, "image_id_b"]])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def assign_folds(
    manifest: pd.DataFrame,
    n_folds: int,
    seed: int = 0,
    *,
    duplicates: pd.DataFrame | None = None,
    cv: str = "kfold",
    site_column: str = "site",
    repeats: int = 1,
) -> pd.DataFrame:
    """The fold table of `manifest` (see the module docstring); `duplicates` is ingest's
    duplicate-pair table (None or empty: images are only grouped by `group`). With
    `cv="leave_site_out"` the folds are whole sites (the manifest column `site_column`): each
    fold is tested by a model that never saw its site(s). `repeats` > 1 adds a column
    `fold_repeat<i>` per further repeat (k-fold: reshuffled with `seed + 1000 i`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be 1 or more, got {repeats}")
    table = _assign_once(manifest, n_folds, seed, duplicates, cv, site_column)
    if repeats > 1 and cv == "predefined":
        log.info(
            "cv predefined: the dataset's own split fixes the held-out images; the %d repeats "
            "of its %d folds differ only in their seed",
            repeats,
            n_folds,
        )
        return table
    if repeats > 1 and cv == "leave_site_out":
        log.info(
            "cv leave_site_out: the sites fix the fold assignment; its %d repeats differ only "
            "in their seed",
            repeats,
        )
    for repeat in range(1, repeats):
        if cv == "kfold":
            step = REPEAT_SEED_STEP * repeat
            log.info("repeat %d: folds reshuffled with random state %d", repeat, seed + step)
            again = _assign_once(manifest, n_folds, seed + step, duplicates, cv, site_column)
            table[repeat_column(repeat)] = again["fold"]
        else:
            table[repeat_column(repeat)] = table["fold"]
    return table


def _assign_once(
    manifest: pd.DataFrame,
    n_folds: int,
    seed: int,
    duplicates: pd.DataFrame | None,
    cv: str,
    site_column: str,
) -> pd.DataFrame:
    """One fold assignment (one repeat): the table with its `fold` column."""
    if cv == "predefined":
        return _predefined(manifest, duplicates)
    if cv == "leave_site_out":
        return _site_folds(manifest, n_folds, site_column)
    if cv != "kfold":
        raise ValueError(f"unknown cv {cv!r}; use one of {CV_SCHEMES}")
    counts = manifest["label_name"].value_counts()
    smallest = counts.idxmin()
    if counts[smallest] < n_folds:
        raise ValueError(
            f"cannot make {n_folds} stratified folds: class {smallest!r} has only "
            f"{counts[smallest]} images; lower `folds` in the config or add images"
        )
    labels = manifest["label"].to_numpy()
    groups = leakage_groups(manifest, duplicates)
    if groups is not None:
        sizes = np.bincount(groups)
        if (sizes > 0).sum() < n_folds:
            raise ValueError(
                f"cannot make {n_folds} folds: the images form only {(sizes > 0).sum()} "
                "groups (patients, lesions, duplicate clusters); lower `folds` or "
                "`near_duplicate_distance`"
            )
        log.info(
            "grouped folds: %d groups for %d images (largest %d)",
            len(sizes),
            len(groups),
            sizes.max(),
        )
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(manifest, labels, groups)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(manifest, labels)
    fold = pd.Series(-1, index=manifest.index, dtype="int64")
    for k, (_, test_rows) in enumerate(splits):
        fold.iloc[test_rows] = k
    _warn_small_training_parts(manifest["label_name"], fold)
    return _table(manifest, fold.to_numpy(), np.zeros(len(manifest), bool))


def _warn_small_training_parts(label_name: pd.Series, fold: pd.Series) -> None:
    """Name, before any training, each class that a fold trains on with a single image: too
    few for the stratified validation part (training then keeps it out of that part)."""
    for k in sorted(fold.unique()):
        counts = label_name[fold != k].value_counts()
        for name in label_name.unique():
            if counts.get(name, 0) < 2:
                log.warning(
                    "class %r has %d image(s): fold %d trains on %d, too few for the stratified "
                    "validation part; its training keeps them in the training part (add images "
                    "or lower `folds`)",
                    name,
                    (label_name == name).sum(),
                    k,
                    counts.get(name, 0),
                )


def _predefined(manifest: pd.DataFrame, duplicates: pd.DataFrame | None) -> pd.DataFrame:
    if manifest["split"].isna().all():
        raise ValueError(
            "cv: predefined needs the dataset's own train/test split (split folders or a "
            "split column); this dataset has none: use cv: kfold"
        )
    split = manifest["split"].fillna("").str.lower()
    test = split.isin(TEST_SPLITS).to_numpy()
    if not test.any() or test.all():
        raise ValueError(
            f"cv: predefined needs training and test images; splits found: "
            f"{sorted(split.unique())} (test splits are named {sorted(TEST_SPLITS)})"
        )
    groups = leakage_groups(manifest, duplicates)
    excluded = np.zeros(len(manifest), bool)
    if groups is not None:
        # A training image of the same patient, lesion or duplicate cluster as a test image
        # would leak it: such training images are left out.
        excluded = np.isin(groups, groups[test]) & ~test
    if excluded.any():
        log.warning(
            "cv predefined: %d training image(s) share a group or duplicate cluster with a "
            "test image and are left out of training",
            excluded.sum(),
        )
    return _table(manifest, np.full(len(manifest), -1), test, excluded)


def _table(
    manifest: pd.DataFrame, fold: np.ndarray, test: np.ndarray, excluded: np.ndarray | None = None
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": manifest["image_id"].to_numpy(),
            "fold": fold.astype("int64"),
            "test": test.astype(bool),
            "excluded": (np.zeros(len(fold), bool) if excluded is None else excluded).astype(bool),
        }
    )


def _is_predefined(folds: pd.DataFrame) -> bool:
    return "test" in folds and bool(folds["test"].any())


def fold_repeat(folds: pd.DataFrame, fold: int) -> tuple[int, int]:
    """(repeat, fold within the repeat) of the global fold id `fold` of a k-fold or
    leave-site-out table; k is read from the table (its folds are numbered 0..k-1). A table
    without repeats numbers its folds as it is (`fold`, repeat 0), as before repeats."""
    repeats = 1 + sum(c.startswith("fold_repeat") for c in folds.columns)
    if repeats == 1:
        return 0, fold
    k = int(folds["fold"].max()) + 1
    repeat, within = divmod(fold, k)
    if repeat >= repeats:
        raise ValueError(
            f"fold {fold} is fold {within} of repeat {repeat} ({k} folds per repeat), but the "
            f"folds table has {repeats} repeat(s): rerun its folds job with `repeats` set"
        )
    return repeat, within


def fold_rows(folds: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of the global fold id `fold` (see the module docstring),
    as positions in the table."""
    if _is_predefined(folds):  # the split fixes what every fold holds out
        fold_column = folds["fold"].to_numpy()
    else:
        repeat, fold = fold_repeat(folds, fold)
        fold_column = folds[repeat_column(repeat)].to_numpy()
    test = folds["test"].to_numpy() if "test" in folds else np.zeros(len(folds), bool)
    excluded = folds["excluded"].to_numpy() if "excluded" in folds else np.zeros(len(folds), bool)
    held_out = (fold_column == fold) | test
    return np.flatnonzero(~held_out & ~excluded), np.flatnonzero(held_out)


def fold_seed(folds: pd.DataFrame, fold: int, seed: int) -> int:
    """The training seed of the global fold id `fold`: `seed + 1000 * repeat` for k-fold and
    leave-site-out (`seed` without repeats); `seed + fold` for the repeats of a predefined
    split (they hold out the same images, so only the seed tells them apart)."""
    if _is_predefined(folds):
        return seed + fold
    return seed + REPEAT_SEED_STEP * fold_repeat(folds, fold)[0]


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
    return _table(manifest, fold.to_numpy(), np.zeros(len(manifest), bool))
