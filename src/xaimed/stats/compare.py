"""Per-fold classification metrics and paired comparisons with multiple-comparison adjustment.

Models are compared on per-fold metrics (paired by fold); CAM methods are compared on
per-image scores (paired by fold and image), separately for each predicted class.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from xaimed.report.tables import NO_PAIRS, empty_because
from xaimed.stats.paired import paired_summary, paired_ttest  # noqa: F401 (paired_ttest re-exported)

log = logging.getLogger("xaimed.stats.compare")

PROB_PREFIX = "prob_"
FOLD_KEYS = ["dataset", "model", "fold"]
FOLD_METRICS = ["accuracy", "balanced_accuracy", "f1_macro", "auroc_macro"]
TEST_COLUMNS = ["n", "mean_diff", "t", "p", "p_adjusted", "family"]
# Added after the contract columns (the p_* ones also get a p_*_adjusted column).
METHOD_EXTRA = ["ci_low", "ci_high", "cohens_dz", "wilcoxon_w", "p_wilcoxon"]
MODEL_EXTRA = [*METHOD_EXTRA, "t_nb", "p_nb", "ci_low_nb", "ci_high_nb"]
# The corrected repeated k-fold t-test over every repeat's folds (Bouckaert & Frank 2004).
MODEL_EXTRA += ["t_rcv", "p_rcv", "ci_low_rcv", "ci_high_rcv", "repeats", "test_train_ratio"]


def _auroc(group: pd.DataFrame) -> float:
    """Macro one-vs-rest AUROC; NaN when the fold lacks a class (AUROC is undefined then)."""
    # Only the prob_ columns this dataset filled: concatenated datasets may differ in classes.
    prob_cols = [c for c in group.columns if c.startswith(PROB_PREFIX) and group[c].notna().any()]
    y = group["label"].to_numpy()
    if len(prob_cols) < 2 or len(np.unique(y)) < len(prob_cols):
        return float("nan")
    # Every class occurs, so label_name maps each label index to its prob_ column.
    names = group.drop_duplicates("label").set_index("label")["label_name"].sort_index()
    cols = [PROB_PREFIX + str(n) for n in names]
    if sorted(cols) != sorted(prob_cols) or list(names.index) != list(range(len(cols))):
        raise ValueError(f"labels {list(names.items())} do not match columns {prob_cols}")
    scores = group[cols].to_numpy(dtype=float)
    if len(cols) == 2:
        return float(skm.roc_auc_score(y == 1, scores[:, 1]))
    return float(
        skm.roc_auc_score(y, scores, multi_class="ovr", average="macro", labels=list(names.index))
    )


def fold_metrics(predictions: pd.DataFrame, n_folds: int | None = None) -> pd.DataFrame:
    """One row per (dataset, model, fold): its repeat of the cross-validation (fold //
    `n_folds`; None: no repeats, 0), n_images, accuracy, balanced_accuracy, f1_macro,
    auroc_macro. F1 is macro over the classes present in labels or predictions (sklearn's
    default); a class never predicted has precision 0 (zero_division=0), not NaN."""
    rows = []
    for key, g in predictions.groupby(FOLD_KEYS, sort=True):
        y, yhat = g["label"].to_numpy(), g["pred"].to_numpy()
        with warnings.catch_warnings():
            # A one-class fold (tiny smoke runs) is legitimate; its metrics stay defined.
            warnings.filterwarnings("ignore", message="A single label was found")
            rows.append(
                {
                    **dict(zip(FOLD_KEYS, key, strict=True)),
                    "repeat": 0 if n_folds is None else int(key[-1]) // n_folds,
                    "n_images": len(g),
                    "accuracy": skm.accuracy_score(y, yhat),
                    "balanced_accuracy": skm.balanced_accuracy_score(y, yhat),
                    "f1_macro": skm.f1_score(y, yhat, average="macro", zero_division=0),
                    "auroc_macro": _auroc(g),
                }
            )
    return pd.DataFrame(rows, columns=[*FOLD_KEYS, "repeat", "n_images", *FOLD_METRICS])


def _stepwise(p, step) -> np.ndarray:
    """Apply `step` (sorted p-values, m) -> adjusted to the non-NaN p-values, in their order;
    NaNs stay NaN and are not counted in m."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    sub = np.empty(m)
    sub[order] = np.minimum(step(p[ok][order], m), 1.0)
    out[ok] = sub
    return out


def holm(p) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1); NaNs stay NaN, not counted."""

    def step(sorted_p: np.ndarray, m: int) -> np.ndarray:
        # Step-down: an adjusted p-value never falls below one of a smaller raw p-value.
        return np.maximum.accumulate(sorted_p * (m - np.arange(m)))

    return _stepwise(p, step)


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate; monotone, capped at 1);
    NaNs stay NaN, not counted."""

    def step(sorted_p: np.ndarray, m: int) -> np.ndarray:
        # Step-up: from the largest p down, an adjusted p-value never exceeds a larger one's.
        return np.minimum.accumulate((sorted_p * m / np.arange(1, m + 1))[::-1])[::-1]

    return _stepwise(p, step)


ADJUSTMENTS = {"holm": holm, "bh": benjamini_hochberg}


def adjust_p(p, method: str = "holm") -> np.ndarray:
    """Multiple-comparison adjustment by name: 'holm' (family-wise error) or 'bh'
    (Benjamini-Hochberg false discovery rate)."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown p-value adjustment {method!r}; choose from {list(ADJUSTMENTS)}")
    return ADJUSTMENTS[method](p)


def fold_test_train_ratio(g: pd.DataFrame) -> float:
    """n_test / n_train of one dataset's folds (mean over folds): the test fold against all
    other folds of its repeat (the training folds, validation part included). Without
    n_images, equal folds are assumed: 1 / (k - 1)."""
    folds = g.drop_duplicates([c for c in ("repeat", "fold") if c in g])
    by_repeat = folds.groupby("repeat") if "repeat" in folds else [(0, folds)]
    k = min(len(f) for _, f in by_repeat)
    if "n_images" not in g or k < 2:
        return 1 / (k - 1) if k > 1 else float("nan")
    ratios = [
        n / (n.sum() - n) for n in (f["n_images"].to_numpy(dtype=float) for _, f in by_repeat)
    ]
    return float(np.mean(np.concatenate(ratios)))


def table_columns(block: Sequence[str], compared: Sequence[str], folds_paired: bool) -> list[str]:
    """Columns of every paired-test table, in order: the family's keys (`block`), what is
    compared (`compared`), the contract columns, then the added ones; the Nadeau-Bengio ones
    only where folds are paired (`folds_paired`): images are no resampled training sets."""
    extra = MODEL_EXTRA if folds_paired else METHOD_EXTRA
    tests = [c for c in extra if c.startswith("p_")]
    adjusted = [f"{c}_adjusted" for c in tests]
    return [*block, *compared, *TEST_COLUMNS, *extra, *adjusted, "adjust", "family_size"]


def _levels(long: pd.DataFrame, compare: str, within: Sequence[str]) -> dict[tuple, list]:
    """The sorted levels of `compare` per value of the `within` columns."""
    unique = long.groupby(list(within), sort=False)[compare].unique()
    return {k if isinstance(k, tuple) else (k,): sorted(set(v)) for k, v in unique.items()}


def paired_tests(
    long: pd.DataFrame,
    block: Sequence[str],
    compare: str | Sequence[str],
    pair_by: str | Sequence[str],
    value: str,
    *,
    adjust: str = "holm",
    alpha: float = 0.05,
    reference=None,
    levels_within: Sequence[str] | None = None,
    once_per: str | None = None,
    test_train_ratio: Callable[[pd.DataFrame], float] | None = None,
    repeat: str | None = None,
) -> pd.DataFrame:
    """The statistics engine that every paired-test table goes through.

    `long` has one row per block, level of `compare` and pairing unit (`pair_by`). Each
    `block` is one family: its levels are paired on the units and compared on `value`
    (:func:`xaimed.stats.paired.paired_summary`: t-test, Wilcoxon, mean difference with its
    (1 - `alpha`) CI, d_z), and every p-value column is adjusted (`adjust`) within it.
    Compared are every unordered pair of levels (columns `<compare>_a`, `<compare>_b`; the
    levels of the `levels_within` columns, default the block, sorted: a level without values
    in a block still gets its pairs, n = 0), or, with `reference`, every other level against
    it (the level in the `compare` columns; mean_diff = level - reference; a block without the
    reference is skipped with a warning). `once_per` (a `pair_by` column): where its values
    repeat, each pair is averaged per value over the repeats that have both, so it counts
    once. `test_train_ratio(block_rows)`, for folds of a cross-validation, adds the
    Nadeau-Bengio columns (the first repeat's folds) and the corrected repeated k-fold ones
    (every repeat's), the repeats named by the column `repeat` (None: one repeat; see
    :func:`xaimed.stats.paired.paired_summary`). Blocks come in the order of their first row."""
    compare = [compare] if isinstance(compare, str) else list(compare)
    pair_by = [pair_by] if isinstance(pair_by, str) else list(pair_by)
    block = list(block)
    if reference is None and len(compare) != 1:
        raise ValueError(f"pairs of levels need one compare column, got {compare}")
    adjust_p([], adjust)  # an unknown adjustment fails before any test is run
    compared = compare if reference is not None else [f"{compare[0]}_a", f"{compare[0]}_b"]
    within = list(levels_within or block)
    levels_of = _levels(long, compare[0], within) if reference is None else {}
    rows = []
    for key, g in long.groupby(block, sort=False):
        keys = dict(zip(block, key, strict=True))
        # pivot raises on a duplicated unit and level: a pairing must be unique.
        wide = g.pivot(
            index=pair_by, columns=compare if reference is not None else compare[0], values=value
        )
        if reference is None:
            levels = levels_of[tuple(keys[c] for c in within)]
            wide = wide.reindex(columns=levels)
            pairs = [((a,), (b,), a, b) for a, b in combinations(levels, 2)]
        elif reference in wide.columns:
            pairs = [(c, (), c, reference) for c in wide.columns if c != reference]
        else:
            log.warning(
                "%s: no %s %s to test against; skipped",
                "/".join(map(str, key)),
                "/".join(compare),
                reference,
            )
            continue
        ratio = None if test_train_ratio is None else test_train_ratio(g)
        # each pairing unit's repeat of the cross-validation (a unit is within one repeat)
        unit_repeat = (
            g.groupby(pair_by)[repeat].first().reindex(wide.index).to_numpy()
            if repeat is not None and ratio is not None
            else None
        )
        repeats = once_per is not None and wide.index.get_level_values(once_per).duplicated().any()
        for named_a, named_b, a, b in pairs:
            x, y = wide[a], wide[b]
            if repeats:
                both = wide[[a, b]].dropna().groupby(level=once_per).mean()
                x, y = both[a], both[b]
            rows.append(keys | dict(zip(compared, (*named_a, *named_b), strict=True)))
            rows[-1].update(paired_summary(x, y, alpha, ratio, None if repeats else unit_repeat))
            if ratio is not None:
                rows[-1]["test_train_ratio"] = ratio
    columns = table_columns(block, compared, test_train_ratio is not None)
    df = pd.DataFrame(rows, columns=[c for c in columns if c not in ("p_adjusted", "family")])
    df = df.reindex(columns=columns)
    if df.empty:
        why = (
            f"fewer than two {compare[0]}s"
            if reference is None
            else f"no {'/'.join(compare)} beside {reference}"
        )
        return empty_because(df, f"{NO_PAIRS}: {why} in every {', '.join(block)}")
    grouped = df.groupby(block, sort=False)
    for raw in [c for c in columns if c.startswith("p") and c.endswith("_adjusted")]:
        tested = raw.removesuffix("_adjusted") if raw != "p_adjusted" else "p"
        df[raw] = grouped[tested].transform(lambda s: adjust_p(s.to_numpy(), adjust))
    df["adjust"] = adjust
    df["family"] = df[block].astype(str).agg("/".join, axis=1)
    df["family_size"] = grouped["p"].transform("size")
    return df


def compare_models(
    fold_metrics: pd.DataFrame,
    metrics: Sequence[str] = ("accuracy", "f1_macro"),
    adjust: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired comparisons between every pair of models per dataset and metric, paired by fold
    (folds where either model lacks the metric are dropped): the paired t-test, the
    Nadeau-Bengio corrected t-test (the first repeat's folds), the corrected repeated k-fold
    t-test (every repeat's folds), Wilcoxon, the mean difference with its CI and d_z.
    p-values adjusted (`adjust`) within each family (dataset, metric)."""
    # Long: one row per dataset, metric, model and fold; the datasets sorted, metrics as given.
    long = pd.concat(
        [fold_metrics.assign(metric=m, value=fold_metrics[m]) for m in metrics], ignore_index=True
    ).sort_values("dataset", kind="stable")
    return paired_tests(
        long,
        ["dataset", "metric"],
        "model",
        "fold",
        "value",
        adjust=adjust,
        alpha=alpha,
        levels_within=["dataset"],
        test_train_ratio=fold_test_train_ratio,
        # fold metrics from before repeats have no repeat column: one repeat
        repeat="repeat" if "repeat" in fold_metrics else None,
    )


def compare_methods(
    scores: pd.DataFrame,
    value: str = "confidence_increase",
    adjust: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired comparisons on `value` between every pair of CAM methods per dataset, model and
    predicted class (`class`, from pred_name: CAMs explain the predicted class), paired by
    (fold, image_id), so only images scored by both methods count (an image of several
    repeats, ``cv: predefined``, once: its mean over them): the paired t-test,
    Wilcoxon, the mean difference with its CI and d_z. p-values adjusted (`adjust`) within
    each family (dataset, model, class); every method of the (dataset, model) is paired in
    every class."""
    block = ["dataset", "model", "class"]
    long = scores.rename(columns={"pred_name": "class"}).sort_values(block, kind="stable")
    return paired_tests(
        long,
        block,
        "method",
        ["fold", "image_id"],
        value,
        adjust=adjust,
        alpha=alpha,
        levels_within=["dataset", "model"],
        once_per="image_id",
    )
