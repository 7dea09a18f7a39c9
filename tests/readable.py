"""What a reader sees in a saved figure, measured with matplotlib's renderer: text cut off at
the figure's edge, text or a legend lying over another panel's data, error bars outside a
score's range. `saved_figures` keeps each Figure that the code under test saves."""

from __future__ import annotations

import matplotlib.text
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox


@pytest.fixture
def saved_figures(monkeypatch) -> list[Figure]:
    """The figures passed to Figure.savefig, in order (saved to their files as usual)."""
    saved: list[Figure] = []
    savefig = Figure.savefig

    def keep(fig, *args, **kwargs):
        saved.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def _texts(ax) -> list[matplotlib.text.Text]:
    texts = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
    texts += list(ax.texts)
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _tick_labels(ax) -> list[matplotlib.text.Text]:
    """The tick labels drawn: those of ticks inside the axis' view (the others are skipped)."""
    labels = []
    for axis in (ax.xaxis, ax.yaxis):
        low, high = sorted(axis.get_view_interval())
        for tick in axis.get_major_ticks():
            if low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                labels += [tick.label1, tick.label2]
    return labels


def clipped(fig: Figure) -> list[str]:
    """Texts (and panels with their tick labels and legends) that reach past the figure."""
    fig.draw_without_rendering()  # lays the figure out as savefig did
    renderer = fig._get_renderer()
    inside = fig.bbox.padded(1)  # a pixel of rounding
    out = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        box = fig._suptitle.get_window_extent(renderer)
        if not inside.contains(box.x0, box.y0) or not inside.contains(box.x1, box.y1):
            out.append(f"figure title {fig._suptitle.get_text()!r}")
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for artist in [*_texts(ax), *_tick_labels(ax)]:
            if not artist.get_visible() or not artist.get_text().strip():
                continue
            box = artist.get_window_extent(renderer)
            if not (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)):
                out.append(f"{artist.get_text()!r} of panel {ax.get_title()!r}")
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            if not (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)):
                out.append(f"legend of panel {ax.get_title()!r}")
    return out


def _overlap(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1


def covering(fig: Figure) -> list[str]:
    """Texts of one panel lying over another panel, and legends lying over any panel (its
    own included): both hide data."""
    fig.draw_without_rendering()  # lays the figure out as savefig did
    renderer = fig._get_renderer()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    out = []
    for ax in panels:
        for text in _texts(ax):
            if text in ax.texts:
                continue  # text placed inside its own panel on purpose
            box = text.get_window_extent(renderer)
            for other in panels:
                if other is not ax and _overlap(box, other.get_window_extent(renderer)):
                    out.append(
                        f"{text.get_text()!r} of {ax.get_title()!r} over {other.get_title()!r}"
                    )
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            for other in panels:
                if _overlap(box, other.get_window_extent(renderer)):
                    out.append(f"legend of {ax.get_title()!r} over {other.get_title()!r}")
    return out


def error_bar_span(fig: Figure) -> tuple[float, float]:
    """Lowest and highest end of the error bars drawn (in data units)."""
    ends = []
    for ax in fig.axes:
        for container in ax.containers:
            for part in getattr(container, "lines", ()) or ():
                for artist in part if isinstance(part, tuple) else [part]:
                    if hasattr(artist, "get_segments"):
                        for segment in artist.get_segments():
                            ends.extend(np.asarray(segment)[:, 1])
    return (min(ends), max(ends)) if ends else (np.nan, np.nan)
