"""Summary tables (classification, CAM confidence increase, CAM timing) and their writers.

Every table is written as CSV (full precision, for machines) and as a Markdown twin
(4 significant digits, for a terminal or a pull request); tables shown in the Snakemake report
also get a self-contained HTML twin (the report renders HTML, but only offers CSV for download).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from xaimed.data.images import UnreadableImage, read_image
from xaimed.io import integrity

log = logging.getLogger("xaimed.report.tables")

NO_PAIRS = "no pairs to compare"

CLASSIFICATION_METRICS = ["accuracy", "f1_macro", "balanced_accuracy", "auroc_macro"]
CAM_KEYS = ["dataset", "model", "method"]


def _mean_sd(
    df: pd.DataFrame,
    keys: Sequence[str],
    count: tuple[str, str, str],
    values: dict[str, str],
) -> pd.DataFrame:
    """Per group of `keys`: a count column (name, input column, aggregation), then
    `<out>_mean` and `<out>_sd` (sample sd, ddof=1) for each input column -> out name."""
    spec = {count[0]: (count[1], count[2])}
    for column, out in values.items():
        spec[f"{out}_mean"] = (column, "mean")
        spec[f"{out}_sd"] = (column, "std")
    return df.groupby(list(keys), sort=True).agg(**spec).reset_index()


def classification_table(fold_metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample sd over folds of each classification metric, per dataset and model."""
    return _mean_sd(
        fold_metrics,
        ["dataset", "model"],
        ("n_folds", "fold", "nunique"),
        {m: m for m in CLASSIFICATION_METRICS},
    )


def constant_counts(scores: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per group of ``keys`` (pred_name as ``class``): ``n_constant_maps``, the maps that are
    constant (explain's ``constant_map``), over every fold and repeat; NA where the scores
    predate that column (a rerun of the explain jobs fills it)."""
    df = scores.rename(columns={"pred_name": "class"})
    if "constant_map" not in df:
        log.warning("scores have no constant_map column (older explain jobs): rerun them")
        counts = df.groupby(list(keys), sort=True).size().reset_index()[list(keys)]
        return counts.assign(n_constant_maps=pd.NA)
    constant = df["constant_map"].astype(bool)
    counts = df.assign(_constant=constant).groupby(list(keys), sort=True)["_constant"].sum()
    return counts.rename("n_constant_maps").reset_index()


def pool_repeats(scores: pd.DataFrame, values: Sequence[str]) -> pd.DataFrame:
    """One row per dataset, model, method, predicted class and image: the mean of ``values``
    over the folds that explained it. Under k-fold CV every image is explained once (rows
    unchanged); under ``cv: predefined`` the repeats explain the same test images, which
    would otherwise count as that many images."""
    keys = [*CAM_KEYS, "pred_name", "image_id"]
    return scores.groupby(keys, sort=True)[list(values)].mean().reset_index()


def confidence_increase_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Confidence increase and ROAD per dataset, model, method and predicted class (`class`,
    the class the CAM explains); increase_fraction = share of images whose confidence rose.
    An image explained by several repeats (``cv: predefined``) counts once, with its mean over
    them (:func:`pool_repeats`); n_constant_maps counts the constant maps of every repeat."""
    ci = scores["confidence_increase"]
    # NaN scores count neither as an increase nor in the denominator (mean skips NaN).
    df = scores.assign(_increase=ci.gt(0).astype(float).where(ci.notna()))
    df = pool_repeats(df, ["confidence_increase", "_increase", "road"])
    df = df.rename(columns={"pred_name": "class"})
    table = _mean_sd(
        df,
        [*CAM_KEYS, "class"],
        ("n_images", "image_id", "size"),
        {"confidence_increase": "confidence_increase", "_increase": "_increase", "road": "road"},
    )
    table = table.rename(columns={"_increase_mean": "increase_fraction"})
    table = table.merge(constant_counts(scores, [*CAM_KEYS, "class"]), on=[*CAM_KEYS, "class"])
    return table.drop(columns="_increase_sd")[
        [*CAM_KEYS, "class", "n_images", "confidence_increase_mean", "confidence_increase_sd"]
        + ["increase_fraction", "road_mean", "road_sd", "n_constant_maps"]
    ]


def timing_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample sd of CAM seconds per image, per dataset, model and method."""
    table = _mean_sd(
        scores, CAM_KEYS, ("n_images", "image_id", "size"), {"seconds": "seconds_per_image"}
    )
    return table.rename(columns={"seconds_per_image_mean": "seconds_per_image"})


def _text(value: object) -> str:
    """Cell text: floats to 4 significant digits, missing values empty."""
    if isinstance(value, float | np.floating):
        return "NaN" if np.isnan(value) else f"{value:.4g}"
    if value is None or value is pd.NA:
        return ""
    return str(value)


# What Markdown (GitHub's, with its $ math) reads as markup in a cell; an underscore only
# where it could open or close emphasis (not inside a word like brain_mri).
_MARKUP = re.compile(r"[\\`*\[\]$~|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def _cell(value: object) -> str:
    """Markdown cell text: as _text, markup characters backslash-escaped, ``<`` as an entity
    (no HTML), line breaks as ``<br>`` (a newline would end the table row)."""
    text = _MARKUP.sub(lambda m: "\\" + m[0], _text(value).replace("<", "&lt;"))
    return re.sub(r"\r\n|\r|\n", "<br>", text)


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub pipe table; numeric columns right-aligned."""
    align = [
        "---:"
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        else "---"
        for c in df.columns
    ]
    lines = [
        "| " + " | ".join(_cell(c) for c in df.columns) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 13px; margin: 12px; color: #1e293b; }
h1 { font-size: 16px; }
table { border-collapse: collapse; }
th, td { border: 1px solid #cbd5e1; padding: 3px 8px; white-space: nowrap; }
th { background: #f1f5f9; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f8fafc; }
"""


NUM_CELL = '<td class="num">'


def to_html(df: pd.DataFrame, title: str = "") -> str:
    """A self-contained HTML page with `df` as a table: cells as in the Markdown twin
    (floats to 4 significant digits), numeric columns right-aligned, text escaped."""
    numeric = [
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        for c in df.columns
    ]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False, name=None):
        cells = (
            (NUM_CELL if num else "<td>") + html.escape(_text(v)) + "</td>"
            for v, num in zip(row, numeric, strict=True)
        )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    heading = f"<h1>{html.escape(title)}</h1>\n" if title else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head>\n"
        f"<body>{heading}<table><thead><tr>{head}</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></body></html>\n"
    )


def empty_because(df: pd.DataFrame, reason: str) -> pd.DataFrame:
    """Mark an empty table with why it is empty (:func:`write_table` says it); ``df``."""
    if df.empty:
        df.attrs["empty"] = reason
    return df


def write_table(
    df: pd.DataFrame, csv_path: str | PathLike, html_path: str | PathLike | None = None
) -> None:
    """Write `df` as CSV and as a Markdown twin next to it (same stem, .md suffix), and as
    an HTML page at `html_path` when given (titled by the CSV's stem). An empty table keeps
    its header in the CSV; the twins and a log line say why it is empty (see
    :func:`empty_because`)."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv_path, index=False)
    note = ""
    if df.empty:
        reason = df.attrs.get("empty", "no rows")
        log.warning("%s is empty: %s", csv_path, reason)
        note = f"({reason})"
    csv_path.with_suffix(".md").write_text(to_markdown(df) + (f"\n{note}\n" if note else ""))
    if html_path is not None:
        page = to_html(df, title=csv_path.stem)
        if note:
            page = page.replace("</table>", f"</table><p>{html.escape(note)}</p>")
        Path(html_path).write_text(page)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_parquets(paths: Iterable[str | PathLike]) -> pd.DataFrame:
    """Concatenate parquet files in the order given; an empty DataFrame for no paths."""
    return _concat([integrity.read_parquet(p) for p in paths])


def collect_parquets(paths: Iterable[str | PathLike], path: str | PathLike) -> None:
    """Concatenate parquet files into one (checksummed), e.g. every explain job's scores of a
    dataset: the tables and figures then read a few files, not hundreds."""
    integrity.write_parquet(read_parquets(paths), path)


def data_table(manifest: pd.DataFrame, folds: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Images of one dataset per class: n_images, n_masks (images whose lesion mask marks
    something) and the count in each cross-validation fold (fold_<k> columns, every repeat's
    folds by their ids: fold_k.. are repeat 1's); a predefined
    split's images, in no fold, are counted as `train`, `test` and `excluded` (a training
    image that shares a group with a test image)."""
    df = manifest.merge(folds, on="image_id", how="left", validate="one_to_one")
    if df["fold"].isna().any():
        missing = df.loc[df["fold"].isna(), "image_id"].iloc[0]
        raise ValueError(f"{dataset}: image {missing!r} of the manifest has no fold")
    if "test" in df:
        out_of_fold = np.where(df["test"], "test", np.where(df["excluded"], "excluded", "train"))
        df["fold"] = df["fold"].astype(object).where(df["fold"].ge(0), out_of_fold)
    has_mask = df["mask_path"].map(_mask_drawn) if "mask_path" in df else False
    table = (
        df.assign(_mask=has_mask)
        .groupby(["label", "label_name"], sort=True)
        .agg(n_images=("image_id", "size"), n_masks=("_mask", "sum"))
        .reset_index()
    )
    per_fold = pd.crosstab(df["label"], df["fold"].map(_fold_column))
    per_fold = per_fold[sorted(per_fold.columns, key=_column_order)]
    table = table.merge(per_fold, left_on="label", right_index=True)
    # repeated cross-validation: the later repeats' folds under their global ids (fold // k)
    repeats = [c for c in folds.columns if c.startswith("fold_repeat")]
    for column in repeats:
        first_id = int(column.removeprefix("fold_repeat")) * (int(folds["fold"].max()) + 1)
        later = pd.crosstab(df["label"], df[column] + first_id)
        table = table.merge(later.add_prefix("fold_"), left_on="label", right_index=True)
    table = table.rename(columns={"label_name": "class"}).drop(columns="label")
    return table.assign(dataset=dataset)[["dataset", *table.columns]]


def _fold_column(fold: object) -> str:
    return fold if isinstance(fold, str) else f"fold_{int(fold)}"


def _column_order(column: str) -> tuple[int, int]:
    extra = ("train", "test", "excluded")
    return (1, extra.index(column)) if column in extra else (0, int(column.removeprefix("fold_")))


def _mask_drawn(path: object) -> bool:
    """Whether a mask marks any pixel (healthy images may carry an all-empty mask); an
    unreadable mask is logged and counts as none."""
    if not isinstance(path, str):
        return False
    try:
        return bool(read_image(path).any())
    except UnreadableImage as error:
        log.warning("mask %s cannot be read (%s); not counted in n_masks", path, error)
        return False
