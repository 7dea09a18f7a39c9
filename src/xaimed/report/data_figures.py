"""Figures of the data stage: example images per class."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from xaimed.io import integrity
from xaimed.report.style import DPI, Pathish, _save, check_glyphs

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
