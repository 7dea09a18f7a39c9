"""Figures of the statistics stage: critical-difference diagrams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xaimed.report.style import DPI, Pathish, _save

# --- Statistics ------------------------------------------------------------------------


def _cliques(names: Sequence[str], ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last index) of rank-sorted treatments whose mean ranks differ by
    less than `cd`: the groups a CD diagram joins with a bar (no significant difference)."""
    runs = []
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return runs


def cd_axes(ax: Axes, mean_ranks: Mapping[str, float], cd: float, title: str) -> list[list[str]]:
    """Critical-difference diagram (Demsar 2006, Fig. 1) on `ax`: the mean-rank axis with
    rank 1 (best) on the left, each model hung from its rank, a bar of length CD, and thick
    bars joining groups of models whose ranks differ by less than CD. Returns those groups."""
    items = sorted(mean_ranks.items(), key=lambda kv: (kv[1], kv[0]))
    names, ranks = [n for n, _ in items], [float(r) for _, r in items]
    k = len(names)
    half = (k + 1) // 2
    ax.set_xlim(0.5 - 1.2, k + 0.5 + 1.2)
    depth = 1.0 + 0.5 * max(half, k - half)
    ax.set_ylim(depth + 0.3, -1.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    ax.plot([1, k], [0, 0], color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, -0.12], color="black", linewidth=1)
        ax.text(r, -0.2, str(r), ha="center", va="bottom", fontsize=8)
    if np.isfinite(cd):
        ax.plot([1, 1 + cd], [-0.95, -0.95], color="black", linewidth=1.5)
        for x in (1, 1 + cd):
            ax.plot([x, x], [-1.05, -0.85], color="black", linewidth=1)
        ax.text(1 + cd / 2, -1.1, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    for i, (name, rank) in enumerate(zip(names, ranks, strict=True)):
        left = i < half
        level = 0.9 + 0.5 * (i if left else k - 1 - i)
        edge = 0.5 - 0.3 if left else k + 0.5 + 0.3
        ax.plot([rank, rank, edge], [0, level, level], color="black", linewidth=0.8)
        label = f"{name} ({rank:.2f})"
        ax.text(edge, level, label, ha="right" if left else "left", va="center", fontsize=8)
    cliques = _cliques(names, ranks, cd) if np.isfinite(cd) else []
    for n, (a, b) in enumerate(cliques):
        y = 0.25 + 0.15 * n
        ax.plot([ranks[a] - 0.03, ranks[b] + 0.03], [y, y], color="tab:red", linewidth=3)
    return [names[a : b + 1] for a, b in cliques]


def cd_diagrams(
    ranks: pd.DataFrame, friedman: pd.DataFrame, out_png: Pathish, title: str
) -> dict[str, list[list[str]]]:
    """One CD diagram per metric of one dataset, stacked: `ranks` has metric, model,
    mean_rank; `friedman` has metric, cd, p (the Friedman p shown in the panel title).
    Returns metric -> the groups of models joined by a bar."""
    metrics = list(dict.fromkeys(ranks["metric"]))
    k = ranks["model"].nunique()
    height = 1.2 + 0.35 * k
    fig = Figure(figsize=(7, height * len(metrics) + 0.4), dpi=DPI)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    fig.suptitle(title)
    groups = {}
    for ax, metric in zip(axes, metrics, strict=True):
        r = ranks[ranks["metric"] == metric]
        f = friedman[friedman["metric"] == metric].iloc[0]
        panel = f"{metric}: Friedman p = {f['p']:.3g}, {int(f['n_folds'])} folds"
        mean_ranks = dict(zip(r["model"], r["mean_rank"], strict=True))
        groups[metric] = cd_axes(ax, mean_ranks, float(f["cd"]), panel)
    _save(fig, out_png)
    return groups
