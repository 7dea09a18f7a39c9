"""All models of a dataset at once: the Friedman test on per-fold ranks, the Iman-Davenport F
version of it, and Nemenyi post-hoc comparisons with their critical difference (Demsar 2006,
"Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30).

Blocks are folds, treatments are models; rank 1 is the best model of a fold (the highest
metric), ties share the average rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps

from xaimed.report.tables import NO_PAIRS, empty_because
from xaimed.stats.compare import adjust_p


def average_ranks(table) -> np.ndarray:
    """Mean rank of each column (treatment) over the rows (blocks) of `table`; in every row
    the highest value gets rank 1, ties the average of their ranks."""
    table = np.asarray(table, dtype=float)
    return sps.rankdata(-table, axis=1).mean(axis=0)


def friedman_from_ranks(mean_ranks, n_blocks: int, tie_correction: float = 1.0) -> dict:
    """Friedman statistics from the treatments' mean ranks R_j over N blocks (Demsar's eqs.):
    chi2 = 12 N / (k (k+1)) * (sum_j R_j^2 - k (k+1)^2 / 4), divided by `tie_correction`,
    df = k - 1; and Iman-Davenport's F = (N - 1) chi2 / (N (k - 1) - chi2), df = (k - 1,
    (k - 1)(N - 1)), which Demsar recommends as less conservative."""
    r = np.asarray(mean_ranks, dtype=float)
    n, k = n_blocks, len(r)
    out = {"n_blocks": n, "n_treatments": k}
    if n < 2 or k < 2:
        return {**out, "chi2": math.nan, "p": math.nan, "f": math.nan, "p_f": math.nan}
    if tie_correction == 0:  # every block is one big tie: no evidence for any difference
        return {**out, "chi2": 0.0, "p": 1.0, "f": 0.0, "p_f": 1.0}
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4) / tie_correction
    p = float(sps.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # the blocks agree perfectly: F is unbounded
        f, p_f = math.inf, 0.0
    else:
        f = (n - 1) * chi2 / denominator
        p_f = float(sps.f.sf(f, k - 1, (k - 1) * (n - 1)))
    return {**out, "chi2": float(chi2), "p": p, "f": float(f), "p_f": p_f}


def friedman(table) -> dict:
    """Friedman test of N blocks (rows) x k treatments (columns), with scipy's tie correction
    1 - sum(t^3 - t) / (N k (k^2 - 1)) over the tied groups t of every block. Unlike scipy's
    friedmanchisquare it accepts k = 2 (then it is a sign test)."""
    table = np.asarray(table, dtype=float)
    n, k = table.shape
    if n == 0 or k == 0:
        return friedman_from_ranks(np.full(k, np.nan), n)
    ranks = sps.rankdata(-table, axis=1)
    ties = sum((c**3 - c).sum() for c in (np.unique(r, return_counts=True)[1] for r in ranks))
    correction = 1 - ties / (n * k * (k * k - 1)) if k > 1 else 1.0
    return friedman_from_ranks(ranks.mean(axis=0), n, correction)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical value q_alpha for k treatments: the studentized range quantile with
    infinite df divided by sqrt(2) (Demsar's Table 5a: k=4, alpha=0.05 -> 2.569)."""
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def nemenyi_cd(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks: q_alpha * sqrt(k (k+1) / (6 N)); two treatments
    whose mean ranks differ by at least this much differ significantly."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_blocks))


def nemenyi_p(rank_a: float, rank_b: float, k: int, n_blocks: int) -> float:
    """p-value of the Nemenyi comparison of two mean ranks (family-wise over all k (k-1)/2
    pairs already, like Tukey's test, so it is not adjusted again)."""
    z = abs(rank_a - rank_b) / math.sqrt(k * (k + 1) / (6 * n_blocks))
    return float(sps.studentized_range.sf(z * math.sqrt(2), k, np.inf))


FRIEDMAN_COLUMNS = [
    "dataset",
    "metric",
    "n_folds",
    "n_models",
    "chi2",
    "p",
    "p_adjusted",
    "f",
    "p_f",
    "cd",
    "alpha",
    "adjust",
    "family",
]
NEMENYI_COLUMNS = [
    "dataset",
    "metric",
    "model_a",
    "model_b",
    "rank_a",
    "rank_b",
    "rank_diff",
    "cd",
    "p_nemenyi",
    "significant",
    "family",
]
RANK_COLUMNS = ["dataset", "metric", "model", "mean_rank", "n_folds"]


def rank_models(
    fold_metrics: pd.DataFrame,
    metrics: Sequence[str] = ("accuracy", "f1_macro"),
    adjust: str = "holm",
    alpha: float = 0.05,
) -> dict[str, pd.DataFrame]:
    """Friedman and Nemenyi over all models of each dataset and metric, on the folds where
    every model has the metric (complete blocks). Returns three tables:
    'friedman' (one row per dataset and metric; p adjusted within the dataset, over metrics),
    'nemenyi' (every pair of models) and 'ranks' (mean rank of every model)."""
    friedman_rows, nemenyi_rows, rank_rows = [], [], []
    for dataset, g in fold_metrics.groupby("dataset", sort=True):
        models = sorted(g["model"].unique())
        for metric in metrics:
            wide = g.pivot(index="fold", columns="model", values=metric)
            wide = wide.reindex(columns=models).dropna()
            k, n = len(models), len(wide)
            res = friedman(wide.to_numpy())
            cd = nemenyi_cd(k, n, alpha) if k >= 2 and n >= 1 else math.nan
            friedman_rows.append(
                {
                    "dataset": dataset,
                    "metric": metric,
                    "n_folds": n,
                    "n_models": k,
                    **{key: res[key] for key in ("chi2", "p", "f", "p_f")},
                    "cd": cd,
                    "alpha": alpha,
                    "adjust": adjust,
                    "family": dataset,
                }
            )
            ranks = average_ranks(wide.to_numpy()) if n else np.full(k, np.nan)
            rank_of = dict(zip(models, ranks, strict=True))
            for model in models:
                rank_rows.append(
                    {
                        "dataset": dataset,
                        "metric": metric,
                        "model": model,
                        "mean_rank": rank_of[model],
                        "n_folds": n,
                    }
                )
            for a, b in combinations(models, 2):
                p = nemenyi_p(rank_of[a], rank_of[b], k, n) if n else math.nan
                diff = rank_of[a] - rank_of[b]
                nemenyi_rows.append(
                    {
                        "dataset": dataset,
                        "metric": metric,
                        "model_a": a,
                        "model_b": b,
                        "rank_a": rank_of[a],
                        "rank_b": rank_of[b],
                        "rank_diff": diff,
                        "cd": cd,
                        "p_nemenyi": p,
                        "significant": bool(abs(diff) >= cd),
                        "family": f"{dataset}/{metric}",
                    }
                )
    friedman_table = pd.DataFrame(friedman_rows, columns=FRIEDMAN_COLUMNS)
    if not friedman_table.empty:
        friedman_table["p_adjusted"] = friedman_table.groupby("dataset", sort=False)["p"].transform(
            lambda s: adjust_p(s.to_numpy(), adjust)
        )
    return {
        "friedman": friedman_table,
        "nemenyi": empty_because(
            pd.DataFrame(nemenyi_rows, columns=NEMENYI_COLUMNS),
            f"{NO_PAIRS}: fewer than two models in every dataset",
        ),
        "ranks": pd.DataFrame(rank_rows, columns=RANK_COLUMNS),
    }
