"""The look every report figure shares: sizes, fonts and glyph checks, text that fits its
panel, legends outside the axes, and saving.

Figures themselves live in one module per stage (``data_figures``, ``train_figures``,
``explain_figures``, ``stats_figures``, ``quality_figures``, ``generalise_figures`` and the CAM
``gallery``): matplotlib's object API (Figure, no pyplot), rendered with Agg; every figure
function takes tables and writes one PNG, and returns what it computed on the way (counts,
AUCs, intervals), so the drawn numbers can be checked.
"""

from __future__ import annotations

import functools
import logging
import textwrap
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure

log = logging.getLogger("xaimed.report.style")


DPI = 100

PANEL_INCHES = 3.2

MIN_FIGURE_INCHES = 4.8

Pathish = str | PathLike

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
    """How every figure draws text (xaimed.report.gallery, quality_figures and generalise_report
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
