"""Exact and near-duplicate images within a dataset.

Public medical sets carry copies: the Kaggle brain tumour MRI set has the same scans in its
Training and Testing folders, some resized or recompressed. A copy on both sides of a
train/test split inflates the test score, so ingest lists every duplicate pair and the folds
rule keeps each cluster of copies in one fold.

Exact duplicates share a content hash (sha256). Near-duplicates are images whose 64-bit
perceptual hashes (:func:`xaimed.data.images.perceptual_hash`) differ in at most
``max_distance`` bits AND whose 32x32 grayscale thumbnails correlate at least
:data:`MIN_CORRELATION`. The hash alone is too coarse for medical images: scans of different
patients share their anatomy, and on the built-in phantoms distinct images lie 0-4 bits apart
(thumbnail correlation at most 0.98), while resized and JPEG-recompressed copies lie at most 2
bits apart with a correlation of 0.999 or more.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

log = logging.getLogger("xaimed.data.duplicates")

DUPLICATE_COLUMNS = [
    "image_id_a",
    "image_id_b",
    "kind",
    "distance",
    "split_a",
    "split_b",
    "label_a",
    "label_b",
    "cluster",
]
MIN_CORRELATION = 0.99


#: Rows of a hash bucket compared at once: bounds memory (rows x bucket size) in crowded buckets.
CHUNK_ROWS = 512


def _near_pairs(hashes: np.ndarray, thumbnails: np.ndarray, max_distance: int) -> np.ndarray:
    """Index pairs (i < j), shape (k, 2), whose hashes differ in at most ``max_distance`` bits
    and whose thumbnails correlate at least :data:`MIN_CORRELATION`.

    Pigeonhole: split the 64 bits into ``max_distance + 1`` blocks; two hashes that differ in
    at most that many bits agree exactly on at least one block. So only images sharing a block
    value are compared, instead of all N^2 pairs (HAM10000 alone has 10,015 images). Scans of
    one anatomy crowd the buckets (thousands of images each), so a bucket is compared a chunk
    of rows at a time and its candidates are filtered by correlation as they are found: memory
    stays bounded and no per-pair Python loop runs over millions of candidates.
    """
    hashes = hashes.astype(np.uint64)
    size = thumbnails.shape[1]
    n_blocks = max_distance + 1
    edges = np.linspace(0, 64, n_blocks + 1).astype(int)
    found = []
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        mask = np.uint64((1 << (stop - start)) - 1)
        block = (hashes >> np.uint64(start)) & mask
        order = np.argsort(block, kind="stable")  # members of a bucket in index order
        _, first, counts = np.unique(block[order], return_index=True, return_counts=True)
        for begin, count in zip(first[counts > 1], counts[counts > 1], strict=True):
            members = order[begin : begin + count]
            for top in range(0, count - 1, CHUNK_ROWS):
                rows, cols = members[top : top + CHUNK_ROWS], members[top + 1 :]
                close = np.bitwise_count(hashes[rows][:, None] ^ hashes[cols][None, :])
                close = close <= max_distance
                close &= np.arange(len(rows))[:, None] <= np.arange(len(cols))[None, :]
                r, c = np.nonzero(close)
                if len(r) == 0:
                    continue
                if len(r) > close.size // 16:  # dense: one matrix product is cheaper
                    correlation = (thumbnails[rows] @ thumbnails[cols].T)[r, c]
                else:
                    correlation = np.einsum("ij,ij->i", thumbnails[rows[r]], thumbnails[cols[c]])
                keep = correlation / size >= MIN_CORRELATION
                found.append(np.stack([rows[r[keep]], cols[c[keep]]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def find_duplicates(
    manifest: pd.DataFrame,
    hashes: np.ndarray,
    thumbnails: np.ndarray,
    max_distance: int = 4,
) -> pd.DataFrame:
    """One row per duplicate pair (image_id_a before image_id_b in manifest order).

    ``hashes``: the perceptual hash of each manifest row (uint64); ``thumbnails``: their
    standardized thumbnails (N, 1024); ``max_distance < 0`` looks for exact duplicates only.
    ``cluster`` numbers the connected groups of copies.
    """
    n = len(manifest)
    pairs: dict[tuple[int, int], str] = {}
    for rows in manifest.groupby("sha256", sort=False).indices.values():
        for other in rows[1:]:  # a star around the first copy is enough to connect them
            pairs[(int(rows[0]), int(other))] = "exact"
    if max_distance >= 0 and n > 1:
        sha = manifest["sha256"].to_numpy()
        for a, b in _near_pairs(np.asarray(hashes), np.asarray(thumbnails), max_distance):
            if sha[a] != sha[b]:
                pairs.setdefault((int(a), int(b)), "near")
    if not pairs:
        log.info("no duplicate images found")
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in DUPLICATE_COLUMNS})
    a, b = (np.array(side, dtype=np.int64) for side in zip(*pairs, strict=True))
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    hashes = np.asarray(hashes, dtype=np.uint64)
    ids, splits, labels = (manifest[c].to_numpy() for c in ("image_id", "split", "label_name"))
    table = pd.DataFrame(
        {
            "image_id_a": ids[a],
            "image_id_b": ids[b],
            "kind": list(pairs.values()),
            "distance": np.bitwise_count(hashes[a] ^ hashes[b]).astype("int64"),
            "split_a": splits[a],
            "split_b": splits[b],
            "label_a": labels[a],
            "label_b": labels[b],
            "cluster": component[a].astype("int64"),
        }
    )
    # Number the clusters 0, 1, ... in the order they first appear.
    table["cluster"] = pd.factorize(table["cluster"])[0].astype("int64")
    table = table.sort_values(["cluster", "image_id_a", "image_id_b"]).reset_index(drop=True)
    _log_summary(table)
    return table[DUPLICATE_COLUMNS]


def _dtype(column: str) -> str:
    return "int64" if column in ("distance", "cluster") else "object"


def _log_summary(table: pd.DataFrame) -> None:
    across = table["split_a"].fillna("") != table["split_b"].fillna("")
    relabelled = table["label_a"] != table["label_b"]
    sizes = (
        pd.concat(
            [
                table[["cluster", "image_id_a"]],
                table[["cluster", "image_id_b"]].set_axis(["cluster", "image_id_a"], axis=1),
            ]
        )
        .drop_duplicates()
        .groupby("cluster")
        .size()
    )
    log.warning(
        "duplicates: %d exact and %d near pairs in %d clusters (largest %d images); "
        "%d pairs across predefined splits, %d pairs with different labels",
        (table["kind"] == "exact").sum(),
        (table["kind"] == "near").sum(),
        len(sizes),
        sizes.max(),
        across.sum(),
        relabelled.sum(),
    )
