"""Per-fold classification metrics and paired significance tests with Holm correction.

Models are compared on per-fold metrics (paired by fold); CAM methods are compared on
per-image scores (paired by fold and image), separately for each predicted class.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn import metrics as skm

PROB_PREFIX = "prob_"
FOLD_KEYS = ["dataset", "model", "fold"]
FOLD_METRICS = ["accuracy", "balanced_accuracy", "f1_macro", "auroc_macro"]
TEST_COLUMNS = ["n", "mean_diff", "t", "p", "p_adjusted", "family"]


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


def holm(p) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1); NaNs stay NaN, not counted."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    stepped = p[ok][order] * (m - np.arange(m))
    # Step-down: an adjusted p-value never falls below one of a smaller raw p-value.
    adjusted = np.minimum(np.maximum.accumulate(stepped), 1.0)
    sub = np.empty(m)
    sub[order] = adjusted
    out[ok] = sub
    return out


def _differences(a, b) -> np.ndarray:
    """a - b over the pairs where both values are present (NaN pairs are dropped)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return d[~np.isnan(d)]


def paired_ttest(a, b) -> tuple[float, float, float]:
    """(mean_diff a-b, t, p) from scipy.stats.ttest_rel, two-sided, on complete pairs.

    Degenerate cases, where scipy would return NaN with a warning:
    - fewer than 2 pairs: t = p = NaN (mean_diff is NaN for 0 pairs, the difference for 1);
    - all differences identical and zero: t = 0, p = 1 (no evidence of any difference);
    - all differences identical and nonzero: t = +/-inf (sign of the difference), p = 0.
    """
    d = _differences(a, b)
    n = len(d)
    mean_diff = float(d.mean()) if n else float("nan")
    if n < 2:
        return mean_diff, float("nan"), float("nan")
    if np.all(d == d[0]):  # zero variance: scipy would give NaN with a warning
        if d[0] == 0:
            return mean_diff, 0.0, 1.0
        return mean_diff, float(np.sign(d[0]) * np.inf), 0.0
    t, p = sps.ttest_rel(d, np.zeros(n))
    return mean_diff, float(t), float(p)


def _pairwise(wide: pd.DataFrame, names: Sequence[str], label: str) -> list[dict]:
    """Paired t-tests between every unordered pair of `names` (columns of `wide`, whose rows
    are the pairing units); `label` names the output columns `<label>_a`, `<label>_b`."""
    rows = []
    for a, b in combinations(names, 2):
        mean_diff, t, p = paired_ttest(wide[a], wide[b])
        n = len(_differences(wide[a], wide[b]))
        rows.append(
            {f"{label}_a": a, f"{label}_b": b, "n": n, "mean_diff": mean_diff, "t": t, "p": p}
        )
    return rows


def _with_holm(rows: list[dict], family: list[str], label: str) -> pd.DataFrame:
    """Frame of test rows, Holm-adjusted within each family (rows sharing `family` keys)."""
    columns = [*family, f"{label}_a", f"{label}_b", *TEST_COLUMNS]
    df = pd.DataFrame(rows, columns=columns)
    if df.empty:
        return df
    df["p_adjusted"] = df.groupby(family, sort=False)["p"].transform(lambda s: holm(s.to_numpy()))
    df["family"] = df[family].astype(str).agg("/".join, axis=1)
    return df


def compare_models(
    fold_metrics: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "f1_macro")
) -> pd.DataFrame:
    """Paired t-tests between every pair of models per dataset and metric, paired by fold
    (folds where either model lacks the metric are dropped). Holm within (dataset, metric)."""
    rows = []
    for dataset, g in fold_metrics.groupby("dataset", sort=True):
        models = sorted(g["model"].unique())
        for metric in metrics:
            wide = g.pivot(index="fold", columns="model", values=metric)
            for row in _pairwise(wide, models, "model"):
                rows.append({"dataset": dataset, "metric": metric, **row})
    return _with_holm(rows, ["dataset", "metric"], "model")


def compare_methods(scores: pd.DataFrame, value: str = "confidence_increase") -> pd.DataFrame:
    """Paired t-tests on `value` between every pair of CAM methods per dataset, model and
    predicted class (`class`, from pred_name: CAMs explain the predicted class), paired by
    (fold, image_id), so only images scored by both methods count. Holm within
    (dataset, model, class); every method of the (dataset, model) is paired in every class."""
    rows = []
    for (dataset, model), g in scores.groupby(["dataset", "model"], sort=True):
        methods = sorted(g["method"].unique())
        for cls, c in g.groupby("pred_name", sort=True):
            # pivot raises on a duplicated (fold, image_id, method): a pairing must be unique.
            wide = c.pivot(index=["fold", "image_id"], columns="method", values=value)
            wide = wide.reindex(columns=methods)
            for row in _pairwise(wide, methods, "method"):
                rows.append({"dataset": dataset, "model": model, "class": cls, **row})
    return _with_holm(rows, ["dataset", "model", "class"], "method")
