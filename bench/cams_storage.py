"""Scores of the single explain job before the split (xaimed at 1e6c8bd, scored from the maps
in memory) against the cams + scores jobs (scored from stored maps: float32 as stored now, and
rounded to float16 as stored before), on one fold of a finished run (docs/methods.md, step 5).

    git archive 1e6c8bd src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python bench/cams_storage.py old OUT RUN brain_mri resnet18 0
    PYTHONPATH=src python bench/cams_storage.py new OUT RUN brain_mri resnet18 0

prints the max abs difference per score column of each against the old job's."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

torch.set_num_threads(1)
mode, out, run = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
dataset, model, fold = sys.argv[4], sys.argv[5], sys.argv[6]
methods = ["gradcampp", "layercam", "ablationcam"]
train = run / f"results/train/{dataset}/{model}/fold{fold}"
data = run / f"results/data/{dataset}"
args = (
    train / "model.pt",
    data / "images.npy",
    data / "manifest.parquet",
    train / "predictions.parquet",
)
common = dict(batch_size=4, seed=0, device="cpu", max_images=8, layer_path="layer2")
quality = dict(
    road_percentiles=[20, 40, 60, 80],
    tolerance=2,
    top_k=10,
    faithfulness_steps=10,
    sanity_images=4,
    sanity_depths=[1, "all"],
)


def paths(tag, kind, ext):
    return [out / tag / m / f"{kind}.{ext}" for m in methods]


for tag in ("old", "new", "new16"):
    for m in methods:
        (out / tag / m).mkdir(parents=True, exist_ok=True)
if mode == "old":
    from xaimed.explain.stage import explain_fold

    q = quality
    explain_fold(
        *args,
        methods,
        paths("old", "scores", "parquet"),
        paths("old", "cams", "npz"),
        paths("old", "sanity", "parquet"),
        out / "old" / "baselines.parquet",
        masks_path=data / "masks.npy",
        **common,
        **q,
    )
else:
    from xaimed.explain.settings import ExplainSettings, QualitySettings
    from xaimed.explain.stage import explain_fold, score_fold

    s, q = ExplainSettings(**common), QualitySettings(**quality)
    explain_fold(*args, methods, paths("new", "cams", "npz"), s)
    for tag in ("new", "new16"):
        if tag == "new16":  # the maps as float16 storage rounds them
            for src, dst in zip(
                paths("new", "cams", "npz"), paths("new16", "cams", "npz"), strict=True
            ):
                z = dict(np.load(src))
                z["cams"] = z["cams"].astype(np.float16).astype(np.float32)
                np.savez_compressed(dst, **z)
        score_fold(
            *args,
            methods,
            paths(tag, "cams", "npz"),
            paths(tag, "scores", "parquet"),
            paths(tag, "sanity", "parquet"),
            s,
            q,
            masks_path=data / "masks.npy",
            baselines_path=out / tag / "baselines.parquet",
        )
    cols = [
        "confidence_increase",
        "road",
        "pointing_game",
        "energy_pointing_game",
        "iou_top_k",
        "deletion_auc",
        "insertion_auc",
        "sign_flipped",
        "constant_map",
    ]

    def read(tag, kind):
        return pd.concat([pd.read_parquet(p) for p in paths(tag, kind, "parquet")])

    for tag in ("new", "new16"):
        a, b = read("old", "scores"), read(tag, "scores")
        assert (a["image_id"].to_numpy() == b["image_id"].to_numpy()).all()
        diff = {
            c: float(
                np.nanmax(np.abs(a[c].astype(float).to_numpy() - b[c].astype(float).to_numpy()))
            )
            for c in cols
        }
        print(f"scores old vs {tag}:", {k: f"{v:.2g}" for k, v in diff.items()})
        sa, sb = read("old", "sanity"), read(tag, "sanity")
        sc = [c for c in sa.columns if sa[c].dtype.kind == "f"]
        print(
            f"sanity old vs {tag}:",
            {c: f"{np.nanmax(np.abs(sa[c].to_numpy() - sb[c].to_numpy())):.2g}" for c in sc},
        )
        ba, bb = (
            pd.read_parquet(out / "old/baselines.parquet"),
            pd.read_parquet(out / tag / "baselines.parquet"),
        )
        bc = [c for c in ba.columns if ba[c].dtype.kind == "f"]
        print(
            f"baselines old vs {tag}:",
            {c: f"{np.nanmax(np.abs(ba[c].to_numpy() - bb[c].to_numpy())):.2g}" for c in bc},
        )
    old_npz = np.load(paths("old", "cams", "npz")[0])["cams"]
    new_npz = np.load(paths("new", "cams", "npz")[0])["cams"]
    print(
        "cams.npz dtypes old/new:",
        old_npz.dtype,
        new_npz.dtype,
        "sizes (bytes) old/new:",
        sum(p.stat().st_size for p in paths("old", "cams", "npz")),
        sum(p.stat().st_size for p in paths("new", "cams", "npz")),
    )
