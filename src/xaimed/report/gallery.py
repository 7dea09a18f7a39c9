"""Figures for the report: a gallery of class activation maps, one example image per class.

Uses matplotlib's object API (Figure, no pyplot), so no global backend or state is touched
and figures are rendered with Agg.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xaimed.explain.metrics.confidence import constant_maps
from xaimed.io import integrity
from xaimed.report.style import fit_text  # also: labels as plain text, CJK fonts
from xaimed.report.tables import read_parquets
from xaimed.stats.compare import PROB_PREFIX

log = logging.getLogger("xaimed.report.gallery")

CELL_INCHES = 2.0  # size of one grid cell; the figure grows with the grid
TITLE_INCHES = 0.4
DPI = 100
CAM_ALPHA = 0.5
CHOSEN_COLUMNS = ["class", "image_id", "fold", "prob"]

Pathish = str | PathLike


def load_cams(paths: Sequence[Pathish]) -> dict[str, dict[int, np.ndarray]]:
    """image_id -> {position of its file in ``paths``: CAM (H x W float)} over one method's
    cams.npz files (one per fold).

    Under k-fold CV an image is in one file; the repeats of ``cv: predefined`` (and any set-up
    where several trained models explain one image) put it in several. Within one file a
    repeated image_id is an error rather than a silent pick of one of its maps.
    """
    cams: dict[str, dict[int, np.ndarray]] = {}
    for position, path in enumerate(paths):
        npz = integrity.read_npz(path)
        for image_id, cam in zip(npz["image_id"], npz["cams"], strict=True):
            maps = cams.setdefault(str(image_id), {})
            if position in maps:
                raise ValueError(f"image {image_id!r} appears twice in CAM file {path}")
            maps[position] = cam
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
    (ties broken by image_id, then fold) -> columns label, class, image_id, fold, prob."""
    df = predictions.assign(prob=predicted_prob(predictions))
    df = df[(df["label"] == df["pred"]) & df["image_id"].astype(str).isin(candidates)]
    df = df.sort_values(  # repeats of one image tie: the first fold
        ["label", "prob", "image_id", "fold"], ascending=[True, False, True, True], kind="stable"
    )
    chosen = df.drop_duplicates("label").rename(columns={"label_name": "class"})
    extra = ["_file"] if "_file" in chosen else []  # which file (fold) the row came from
    return chosen[["label", *CHOSEN_COLUMNS, *extra]].reset_index(drop=True)


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
    # the predictions of file i go with the maps of file i (both in fold order)
    predictions = pd.concat(
        [read_parquets([p]).assign(_file=i) for i, p in enumerate(predictions_paths)],
        ignore_index=True,
    )
    candidates = set(row_of).intersection(*(c.keys() for c in cams.values()))
    explained = predictions[
        [
            all(position in cams[m].get(str(i), {}) for m in methods)
            for i, position in zip(predictions["image_id"], predictions["_file"], strict=True)
        ]
    ]
    chosen = choose_examples(explained, candidates).set_index("label")
    repeats = max((len(maps) for c in cams.values() for maps in c.values()), default=1)
    if repeats > 1:
        title += f"\n(each row: the maps of the fold named beside it; {repeats} folds explain each)"
        log.info(
            "%d folds explain the same images (repeats): each row shows the maps of the fold "
            "whose prediction it shows",
            repeats,
        )

    nrows, ncols = len(classes), 1 + len(methods)
    title_inches = TITLE_INCHES * (2 if repeats > 1 else 1)
    height = CELL_INCHES * nrows + title_inches
    fig = Figure(figsize=(CELL_INCHES * ncols, height), dpi=DPI)
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
        if repeats > 1:  # which repeat's maps, beside the class (always visible)
            row[0].set_ylabel(f"{class_name}\nfold {pick['fold']}", fontsize=10)
        row[0].set_xlabel(f"{pick['image_id']} (p={pick['prob']:.2f})", fontsize=7)
        for ax, method in zip(row[1:], methods, strict=True):
            ax.imshow(image)
            cam = np.asarray(cams[method][str(pick["image_id"])][pick["_file"]], dtype=float)
            if constant_maps(cam[None])[0]:  # an overlay of one colour would look like a map
                log.warning(
                    "gallery: the %s map of %s (class %s, fold %s) is constant: marked "
                    "'constant map'",
                    method,
                    pick["image_id"],
                    class_name,
                    pick["fold"],
                )
                ax.text(
                    0.5,
                    0.1,
                    "constant map",
                    ha="center",
                    fontsize=8,
                    color="white",
                    transform=ax.transAxes,
                    bbox={"facecolor": "black", "alpha": 0.7, "pad": 2},
                )
            ax.imshow(
                cam,
                cmap="jet",
                alpha=CAM_ALPHA,
                vmin=0,
                vmax=1,
                extent=extent,
                interpolation="bilinear",
            )
    fit_text(fig, lambda: fig.tight_layout(rect=(0, 0, 1, 1 - title_inches / height)))
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI)
    return chosen.reset_index()[CHOSEN_COLUMNS]
