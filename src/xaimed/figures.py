"""Figures for the report: a gallery of class activation maps, one example image per class.

Uses matplotlib's object API (Figure, no pyplot), so no global backend or state is touched
and figures are rendered with Agg.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import xaimed.plots  # noqa: F401 - its text set-up: labels as plain text, CJK fonts
from xaimed import integrity
from xaimed.stats import PROB_PREFIX
from xaimed.tables import read_parquets

CELL_INCHES = 2.0  # size of one grid cell; the figure grows with the grid
TITLE_INCHES = 0.4
DPI = 100
CAM_ALPHA = 0.5
CHOSEN_COLUMNS = ["class", "image_id", "fold", "prob"]

Pathish = str | PathLike


def load_cams(paths: Sequence[Pathish]) -> dict[str, np.ndarray]:
    """image_id -> CAM (H x W float) over one method's cams.npz files (one per fold).

    Each image is expected in exactly one file (k-fold CV: an image is tested in one fold);
    a repeated image_id is an error rather than a silent pick of one fold's CAM.
    """
    cams: dict[str, np.ndarray] = {}
    for path in paths:
        npz = integrity.read_npz(path)
        for image_id, cam in zip(npz["image_id"], npz["cams"], strict=True):
            if str(image_id) in cams:
                raise ValueError(f"image {image_id!r} appears twice in CAM files {paths}")
            cams[str(image_id)] = cam
    return cams


def predicted_prob(predictions: pd.DataFrame) -> np.ndarray:
    """Softmax probability of each row's predicted class (its prob_<pred_name> column)."""
    cols = pd.Index([c for c in predictions.columns if c.startswith(PROB_PREFIX)])
    idx = cols.get_indexer(PROB_PREFIX + predictions["pred_name"].astype(str))
    if (idx < 0).any():
        raise ValueError(f"no probability column for some predicted classes among {list(cols)}")
    return predictions[cols].to_numpy(dtype=float)[np.arange(len(predictions)), idx]


def choose_examples(predictions: pd.DataFrame, candidates: set[str]) -> pd.DataFrame:
    """Per true class, the most confident correct prediction among `candidates`
    (ties broken by image_id) -> columns label, class, image_id, fold, prob."""
    df = predictions.assign(prob=predicted_prob(predictions))
    df = df[(df["label"] == df["pred"]) & df["image_id"].astype(str).isin(candidates)]
    df = df.sort_values(["label", "prob", "image_id"], ascending=[True, False, True])
    chosen = df.drop_duplicates("label").rename(columns={"label_name": "class"})
    return chosen[["label", *CHOSEN_COLUMNS]].reset_index(drop=True)


def _blank(ax: Axes) -> None:
    """No ticks (keeps the y label, unlike axis('off'))."""
    ax.set_xticks([])
    ax.set_yticks([])


def cam_gallery(
    images_path: Pathish,
    manifest_path: Pathish,
    cams_paths: Mapping[str, Sequence[Pathish]],
    predictions_paths: Sequence[Pathish],
    out_png: Pathish,
    title: str,
) -> pd.DataFrame:
    """Grid of rows = classes (label order) x columns = image + one CAM overlay per method
    (dict order), for one correctly classified image per class that every method explains.

    Saves `out_png` and returns the chosen images (class, image_id, fold, prob).
    """
    manifest = integrity.read_parquet(manifest_path)
    images = integrity.load_array(images_path)  # N x 3 x H x W uint8, manifest row order
    row_of = {str(i): r for r, i in enumerate(manifest["image_id"])}
    classes = manifest.drop_duplicates("label").sort_values("label")[["label", "label_name"]]

    methods = list(cams_paths)
    cams = {m: load_cams(cams_paths[m]) for m in methods}
    candidates = set(row_of).intersection(*(c.keys() for c in cams.values()))
    chosen = choose_examples(read_parquets(predictions_paths), candidates).set_index("label")

    nrows, ncols = len(classes), 1 + len(methods)
    fig = Figure(figsize=(CELL_INCHES * ncols, CELL_INCHES * nrows + TITLE_INCHES), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.suptitle(title)
    for ax, name in zip(axes[0], ["image", *methods], strict=True):
        ax.set_title(name, fontsize=10)
    for row, (label, class_name) in zip(axes, classes.itertuples(index=False), strict=True):
        for ax in row:
            _blank(ax)
        row[0].set_ylabel(str(class_name), fontsize=10)
        if label not in chosen.index:
            for ax in row:
                ax.set_frame_on(False)
            row[0].text(
                0.5,
                0.5,
                "no correct prediction",
                ha="center",
                va="center",
                fontsize=8,
                transform=row[0].transAxes,
                wrap=True,
            )
            continue
        pick = chosen.loc[label]
        image = np.asarray(images[row_of[str(pick["image_id"])]]).transpose(1, 2, 0)
        h, w = image.shape[:2]
        # Stretch the CAM over the image even if it was computed at another resolution.
        extent = (-0.5, w - 0.5, h - 0.5, -0.5)
        row[0].imshow(image)
        row[0].set_xlabel(f"{pick['image_id']} (p={pick['prob']:.2f})", fontsize=7)
        for ax, method in zip(row[1:], methods, strict=True):
            ax.imshow(image)
            cam = np.asarray(cams[method][str(pick["image_id"])], dtype=float)
            ax.imshow(
                cam,
                cmap="jet",
                alpha=CAM_ALPHA,
                vmin=0,
                vmax=1,
                extent=extent,
                interpolation="bilinear",
            )
    fig.tight_layout(rect=(0, 0, 1, 1 - TITLE_INCHES / fig.get_figheight()))
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI)
    return chosen.reset_index()[CHOSEN_COLUMNS]
