"""Report figures besides the CAM gallery: example images, confusion matrices, ROC curves,
per-fold metrics, the critical-difference diagram, confidence increase and CAM timing.

Like xaimed.figures: matplotlib's object API (Figure, no pyplot), rendered with Agg; every
function takes tables and writes one PNG; those that compute something on the way (counts,
AUCs, intervals, groups of a CD diagram) return it, so the drawn numbers can be checked.
"""

from __future__ import annotations

import functools
import logging
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn import metrics as skm

from xaimed import integrity
from xaimed.paired import mean_ci
from xaimed.stats import PROB_PREFIX

DPI = 100
PANEL_INCHES = 3.2
MIN_FIGURE_INCHES = 4.8
CONFIDENCE_INCREASE_RANGE = (-1.0, 1.0)  # a difference of two probabilities
Pathish = str | PathLike

log = logging.getLogger("xaimed.plots")

# Fonts that draw CJK text, tried in this order after DejaVu Sans where installed.
CJK_FONTS = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "IPAGothic",
    "IPAexGothic",
    "AR PL UMing CN",
    "Unifont",
    "Microsoft YaHei",
    "SimHei",
    "Hiragino Sans",
    "PingFang SC",
    "Arial Unicode MS",
)


def set_up_text() -> None:
    """How every figure draws text (xaimed.figures, quality_figures and generalise_report
    import this module for it). Labels are data (class, dataset, model names): drawn as
    written, never as mathtext (a class 'x$(id)$y' would be set as a formula); matplotlib falls
    back glyph by glyph along the font list, so an installed CJK font draws what DejaVu lacks."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    matplotlib.rcParams["text.parse_math"] = False
    matplotlib.rcParams["font.family"] = ["sans-serif"]
    matplotlib.rcParams["font.sans-serif"] = [
        "DejaVu Sans",
        *(name for name in CJK_FONTS if name in installed),
    ]


set_up_text()


@functools.cache
def _drawable_characters(fonts: tuple[str, ...]) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    codes: set[int] = set()
    for name in fonts:
        path = font_manager.findfont(
            font_manager.FontProperties(family=name), fallback_to_default=False
        )
        codes.update(FT2Font(path).get_charmap())
    return frozenset(codes)


def check_glyphs(labels: Iterable[object], what: str = "class") -> None:
    """Log each label that has characters no configured font draws (they come out as empty
    boxes), naming it, so that the figure is not silently wrong."""
    codes = _drawable_characters(tuple(matplotlib.rcParams["font.sans-serif"]))
    for label in labels:
        missing = sorted({c for c in str(label) if not c.isspace() and ord(c) not in codes})
        if missing:
            log.warning(
                "%s %r: no installed font draws %s; they show as empty boxes in the figures "
                "(install a CJK font such as Noto Sans CJK, e.g. the fonts-noto-cjk package)",
                what,
                str(label),
                " ".join(missing),
            )


def _wrap(text, width_px: float, room_px: float) -> None:
    """Re-wrap `text` into lines of about `room_px` when it is `width_px` wide."""
    chars = max(len(line) for line in text.get_text().splitlines() or [""])
    columns = max(8, int(chars * room_px / width_px))
    lines = text.get_text().splitlines()
    text.set_text("\n".join(textwrap.fill(line, columns, break_long_words=True) for line in lines))


def fit_text(fig: Figure, layout: Callable[[], None] | None = None) -> None:
    """Wrap the figure title, panel titles and x labels that are wider than the room they
    have (the figure; their panel), so a long dataset, model or image name is never cut off
    at the figure's edge or run into its neighbour. `layout` (default: tight_layout) is redone
    after each wrap, as it moves the panels."""
    # a wider pad than tight_layout's 1.08: with it, descenders of x labels under square
    # panels (confusion matrices) were cut by a pixel
    layout = layout or (lambda: fig.tight_layout(pad=1.4))
    renderer = fig._get_renderer()  # Agg, also for a Figure made without pyplot
    for _ in range(3):
        layout()
        wrapped = False
        figure_px = fig.bbox.width * 0.96
        title = fig._suptitle
        if title is not None and title.get_text():
            width = title.get_window_extent(renderer).width
            if width > figure_px:
                _wrap(title, width, figure_px)
                wrapped = True
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            box = ax.get_window_extent(renderer)
            centre = (box.x0 + box.x1) / 2
            # centred on the panel: inside the figure, and not far over the next panel
            room = min(2 * min(centre, fig.bbox.width - centre) * 0.96, box.width * 1.1)
            for text in (ax.title, ax.xaxis.label):
                if text.get_text():
                    width = text.get_window_extent(renderer).width
                    if width > room:
                        _wrap(text, width, room)
                        wrapped = True
        if not wrapped:
            return
    layout()


def legend_outside(ax: Axes, **kwargs) -> None:
    """The legend right of the panel, where it covers no data (tight_layout makes room)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), **kwargs
        )


def _save(fig: Figure, out_png: Pathish) -> None:
    fit_text(fig)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI)


def _panels(n: int, title: str, ncols: int | None = None, height: float = PANEL_INCHES):
    """A figure with n panels in a row (or ncols per row) and a title; axes as a flat list."""
    ncols = min(n, ncols or n) or 1
    nrows = max(1, -(-n // ncols))
    # one panel alone is still wide enough for the figure's title and an outside legend
    width = max(PANEL_INCHES * ncols, MIN_FIGURE_INCHES)
    fig = Figure(figsize=(width, height * nrows + 0.4), dpi=DPI)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:n]


def _classes(predictions: pd.DataFrame) -> list[str]:
    """Class names in label order."""
    names = predictions.drop_duplicates("label").sort_values("label")["label_name"]
    names = [str(n) for n in names]
    check_glyphs(names)
    return names


# --- Data ------------------------------------------------------------------------------


def data_examples(
    images_path: Pathish, manifest_path: Pathish, out_png: Pathish, title: str, per_class: int = 4
) -> None:
    """The first `per_class` images of every class (manifest order), one row per class."""
    manifest = integrity.read_parquet(manifest_path)
    images = integrity.load_array(images_path)
    classes = manifest.drop_duplicates("label").sort_values("label")
    check_glyphs(classes["label_name"])
    fig = Figure(figsize=(1.6 * per_class, 1.6 * len(classes) + 0.4), dpi=DPI)
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    fig.suptitle(title)
    for row, (label, name) in zip(
        axes, classes[["label", "label_name"]].itertuples(index=False), strict=True
    ):
        rows = np.flatnonzero(manifest["label"].to_numpy() == label)[:per_class]
        for i, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if i < len(rows):
                ax.imshow(np.asarray(images[rows[i]]).transpose(1, 2, 0))
            else:
                ax.set_frame_on(False)
        row[0].set_ylabel(str(name), fontsize=9)
    _save(fig, out_png)


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


# --- Explanations ----------------------------------------------------------------------


def _mean_and_ci(values: pd.Series, alpha: float) -> tuple[float, float, float]:
    v = values.dropna().to_numpy(dtype=float)
    low, high = mean_ci(v, alpha)
    return (float(v.mean()) if len(v) else np.nan), low, high


def _errors(stats: Sequence[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Means and the (2, n) error-bar lengths below and above them (0 where undefined)."""
    mean = np.array([m for m, _, _ in stats])
    err = np.array([[m - lo, hi - m] for m, lo, hi in stats]).reshape(-1, 2).T
    return mean, np.nan_to_num(err)


def confidence_increase_plot(
    scores: pd.DataFrame, out_png: Pathish, title: str, alpha: float = 0.05
) -> pd.DataFrame:
    """One panel per explained model: mean confidence increase per predicted class (x) and
    method (colour), with (1 - alpha) t-intervals over the images clipped to [-1, 1]: the
    score is a difference of two probabilities, and a t-interval of a few images can reach
    past what it can take. Returns one row per point: model, method, class, n, mean, ci_low,
    ci_high (clipped)."""
    models = sorted(scores["model"].unique())
    methods = sorted(scores["method"].unique())
    fig, axes = _panels(len(models), title)
    width = 0.8 / max(len(methods), 1)
    drawn = []
    for ax, model in zip(axes, models, strict=True):
        s = scores[scores["model"] == model].assign(_class=lambda d: d["pred_name"].astype(str))
        classes = sorted(s["_class"].unique())
        check_glyphs(classes)
        for j, method in enumerate(methods):
            points = []
            for c in classes:
                values = s.loc[(s["method"] == method) & (s["_class"] == c), "confidence_increase"]
                mean, low, high = _mean_and_ci(values, alpha)
                points.append((mean, *np.clip([low, high], *CONFIDENCE_INCREASE_RANGE)))
                drawn.append(
                    {"model": model, "method": method, "class": c, "n": int(values.notna().sum())}
                    | dict(zip(["mean", "ci_low", "ci_high"], points[-1], strict=True))
                )
            mean, err = _errors(points)
            x = np.arange(len(classes)) - 0.4 + width * (j + 0.5)
            ax.errorbar(x, mean, yerr=err, fmt="o", capsize=3, label=method)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("confidence increase")
        ax.set_title(model, fontsize=10)
    legend_outside(axes[-1], title="method")
    _save(fig, out_png)
    return pd.DataFrame(drawn)


def timing_plot(
    scores: pd.DataFrame, out_png: Pathish, title: str, alpha: float = 0.05
) -> pd.DataFrame:
    """One panel per dataset and explained model: mean seconds per image of each method with
    (1 - alpha) t-intervals over the images. Returns one row per bar: dataset, model,
    method, mean, ci_low, ci_high."""
    keys = sorted(scores[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None))
    fig, axes = _panels(len(keys), title, ncols=3)
    drawn = []
    for ax, (dataset, model) in zip(axes, keys, strict=True):
        s = scores[(scores["dataset"] == dataset) & (scores["model"] == model)]
        methods = sorted(s["method"].unique())
        bars = [_mean_and_ci(s.loc[s["method"] == m, "seconds"], alpha) for m in methods]
        for method, bar in zip(methods, bars, strict=True):
            drawn.append(
                {"dataset": dataset, "model": model, "method": method}
                | dict(zip(["mean", "ci_low", "ci_high"], bar, strict=True))
            )
        mean, err = _errors(bars)
        ax.bar(range(len(methods)), mean, yerr=err, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("seconds per image")
        ax.set_title(f"{dataset}: {model}", fontsize=10)
    _save(fig, out_png)
    return pd.DataFrame(drawn)
