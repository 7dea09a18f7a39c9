"""Figures of the training stage: confusion matrices, ROC curves, per-fold metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from xaimed.report.style import PANEL_INCHES, Pathish, _classes, _panels, _save
from xaimed.stats.compare import PROB_PREFIX

# --- Training --------------------------------------------------------------------------


def confusion_matrices(
    predictions: pd.DataFrame, out_png: Pathish, title: str
) -> dict[str, np.ndarray]:
    """One panel per model: held-out predictions of all folds (each image once), rows = true
    class, columns = predicted class; colour = share of the true class, text = count.
    Returns model -> count matrix."""
    models = sorted(predictions["model"].unique())
    classes = _classes(predictions)
    fig, axes = _panels(len(models), title)
    drawn = {}
    for ax, model in zip(axes, models, strict=True):
        p = predictions[predictions["model"] == model]
        counts = drawn[model] = skm.confusion_matrix(
            p["label"], p["pred"], labels=range(len(classes))
        )
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), c in np.ndenumerate(counts):
            ax.text(
                j,
                i,
                str(c),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(model, fontsize=10)
    _save(fig, out_png)
    return drawn


def roc_curves(predictions: pd.DataFrame, out_png: Pathish, title: str) -> pd.DataFrame:
    """One panel per model: one-vs-rest ROC curve of every class (binary: of the second
    class) from the held-out probabilities of all folds, with its AUC in the legend.
    Returns one row per curve: model, class, auc."""
    models = sorted(predictions["model"].unique())
    classes = _classes(predictions)
    shown = classes[1:] if len(classes) == 2 else classes
    fig, axes = _panels(len(models), title, height=PANEL_INCHES + 0.8)  # legend below
    drawn = []
    for ax, model in zip(axes, models, strict=True):
        p = predictions[predictions["model"] == model]
        for name in shown:
            positive = (p["label_name"].astype(str) == name).to_numpy()
            score = p[PROB_PREFIX + name].to_numpy(dtype=float)
            if positive.all() or not positive.any():
                continue  # ROC undefined without both classes
            fpr, tpr, _ = skm.roc_curve(positive, score)
            drawn.append({"model": model, "class": name, "auc": skm.auc(fpr, tpr)})
            ax.plot(fpr, tpr, label=f"{name} (AUC {drawn[-1]['auc']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(model, fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28))
    _save(fig, out_png)
    return pd.DataFrame(drawn, columns=["model", "class", "auc"])


def fold_metric_boxes(
    fold_metrics: pd.DataFrame, metrics: Sequence[str], out_png: Pathish, title: str
) -> None:
    """One panel per metric: a box per model over its folds, with each fold as a dot."""
    models = sorted(fold_metrics["model"].unique())
    fig, axes = _panels(len(metrics), title)
    for ax, metric in zip(axes, metrics, strict=True):
        values = [
            fold_metrics.loc[fold_metrics["model"] == m, metric].dropna().to_numpy() for m in models
        ]
        ax.boxplot(values, tick_labels=models, widths=0.5)
        for i, v in enumerate(values, start=1):
            # Fixed horizontal offsets instead of random jitter: the figure is reproducible.
            offsets = np.linspace(-0.12, 0.12, len(v)) if len(v) > 1 else np.zeros(len(v))
            ax.plot(i + offsets, v, "o", color="black", markersize=4, alpha=0.7)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    _save(fig, out_png)
