"""Per-fold classification metrics and paired comparisons with multiple-comparison adjustment.

Models are compared on per-fold metrics (paired by fold); CAM methods are compared on
per-image scores (paired by fold and image), separately for each predicted class.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from xaimed.paired import paired_summary, paired_ttest  # noqa: F401 (paired_ttest re-exported)
from xaimed.tables import NO_PAIRS, empty_because

PROB_PREFIX = "prob_"
FOLD_KEYS = ["dataset", "model", "fold"]
FOLD_METRICS = ["accuracy", "balanced_accuracy", "f1_macro", "auroc_macro"]
TEST_COLUMNS = ["n", "mean_diff", "t", "p", "p_adjusted", "family"]
# Added after the contract columns (the p_* ones also get a p_*_adjusted column).
METHOD_EXTRA = ["ci_low", "ci_high", "cohens_dz", "wilcoxon_w", "p_wilcoxon"]
MODEL_EXTRA = [*METHOD_EXTRA, "t_nb", "p_nb", "ci_low_nb", "ci_high_nb", "test_train_ratio"]


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


def fold_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, fold): n_images, accuracy, balanced_accuracy, f1_macro,
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
                    "n_images": len(g),
                    "accuracy": skm.accuracy_score(y, yhat),
                    "balanced_accuracy": skm.balanced_accuracy_score(y, yhat),
                    "f1_macro": skm.f1_score(y, yhat, average="macro", zero_division=0),
                    "auroc_macro": _auroc(g),
                }
            )
    return pd.DataFrame(rows, columns=[*FOLD_KEYS, "n_images", *FOLD_METRICS])


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


def _pairwise(
    wide: pd.DataFrame,
    names: Sequence[str],
    label: str,
    alpha: float,
    test_train_ratio: float | None = None,
) -> list[dict]:
    """Paired comparisons (xaimed.paired.paired_summary) between every unordered pair of
    `names` (columns of `wide`, whose rows are the pairing units); `label` names the output
    columns `<label>_a`, `<label>_b`."""
    return [
        {
            f"{label}_a": a,
            f"{label}_b": b,
            **paired_summary(wide[a], wide[b], alpha, test_train_ratio),
        }
        for a, b in combinations(names, 2)
    ]


def _pairwise_by_image(wide: pd.DataFrame, names: Sequence[str], alpha: float) -> list[dict]:
    """:func:`_pairwise` over methods, paired within each (fold, image_id) row. Where the
    repeats of ``cv: predefined`` explain an image more than once, each pair of methods is
    averaged per image over the repeats that scored both, so an image counts once."""
    if not wide.index.get_level_values("image_id").duplicated().any():
        return _pairwise(wide, names, "method", alpha)
    rows = []
    for a, b in combinations(names, 2):
        both = wide[[a, b]].dropna().groupby(level="image_id").mean()
        rows.append({"method_a": a, "method_b": b, **paired_summary(both[a], both[b], alpha)})
    return rows


def _adjusted(
    rows: list[dict], family: list[str], label: str, adjust: str, extra: Sequence[str]
) -> pd.DataFrame:
    """Frame of test rows with p-values adjusted (`adjust`) within each family (rows sharing
    `family` keys): p -> p_adjusted, and p_<x> -> p_<x>_adjusted for the other tests. The
    contract columns come first, the added ones (`extra`) after them."""
    columns = [*family, f"{label}_a", f"{label}_b", *TEST_COLUMNS]
    tests = [c for c in extra if c.startswith("p_")]
    out = [*columns, *extra, *(f"{c}_adjusted" for c in tests), "adjust", "family_size"]
    df = pd.DataFrame(rows, columns=[c for c in out if c not in ("p_adjusted", "family")])
    df = df.reindex(columns=out)
    if df.empty:
        return empty_because(
            df, f"{NO_PAIRS}: fewer than two {label}s in every {', '.join(family)}"
        )
    grouped = df.groupby(family, sort=False)
    for raw in ["p", *tests]:
        adjusted = "p_adjusted" if raw == "p" else f"{raw}_adjusted"
        df[adjusted] = grouped[raw].transform(lambda s: adjust_p(s.to_numpy(), adjust))
    df["adjust"] = adjust
    df["family"] = df[family].astype(str).agg("/".join, axis=1)
    df["family_size"] = grouped["p"].transform("size")
    return df


def _test_train_ratio(g: pd.DataFrame) -> float:
    """n_test / n_train of one dataset's folds (mean over folds): the test fold against all
    other folds (the training folds, validation part included). Without n_images, equal
    folds are assumed: 1 / (k - 1)."""
    folds = g.drop_duplicates("fold")
    k = len(folds)
    if "n_images" not in g or k < 2:
        return 1 / (k - 1) if k > 1 else float("nan")
    n_test = folds["n_images"].to_numpy(dtype=float)
    return float(np.mean(n_test / (n_test.sum() - n_test)))


def compare_models(
    fold_metrics: pd.DataFrame,
    metrics: Sequence[str] = ("accuracy", "f1_macro"),
    adjust: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired comparisons between every pair of models per dataset and metric, paired by fold
    (folds where either model lacks the metric are dropped): the paired t-test, the
    Nadeau-Bengio corrected t-test, Wilcoxon, the mean difference with its CI and d_z.
    p-values adjusted (`adjust`) within each family (dataset, metric)."""
    rows = []
    for dataset, g in fold_metrics.groupby("dataset", sort=True):
        models = sorted(g["model"].unique())
        ratio = _test_train_ratio(g)
        for metric in metrics:
            wide = g.pivot(index="fold", columns="model", values=metric)
            for row in _pairwise(wide, models, "model", alpha, ratio):
                rows.append({"dataset": dataset, "metric": metric, **row})
                rows[-1]["test_train_ratio"] = ratio
    return _adjusted(rows, ["dataset", "metric"], "model", adjust, MODEL_EXTRA)


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
    rows = []
    for (dataset, model), g in scores.groupby(["dataset", "model"], sort=True):
        methods = sorted(g["method"].unique())
        for cls, c in g.groupby("pred_name", sort=True):
            # pivot raises on a duplicated (fold, image_id, method): a pairing must be unique.
            wide = c.pivot(index=["fold", "image_id"], columns="method", values=value)
            wide = wide.reindex(columns=methods)
            for row in _pairwise_by_image(wide, methods, alpha):
                rows.append({"dataset": dataset, "model": model, "class": cls, **row})
    return _adjusted(rows, ["dataset", "model", "class"], "method", adjust, METHOD_EXTRA)
