"""Pointing game per CAM target layer (issue 5): which layer of a trained model points at the
phantom lesions, against the random and centre baselines.

Reads the trained models of a finished (or partly finished) run, e.g. the demo's training
restricted to one dataset and model:

    snakemake --cores 1 --directory /tmp/l5 --configfile my.yaml \\
        results/train/brain_mri/resnet50/fold{0,1}/predictions.parquet
    python bench/target_layers.py /tmp/l5 --layers layer1 layer2 layer3 layer4

and explains every held-out image with a lesion (all of them, and the explain stage's
``--max-images`` selection per fold) at each layer, scoring the pointing game as the explain
stage does (the predicted class, ``--tolerance`` pixels). Prints one row per layer x method,
the baselines, the number of images and the CAM seconds per image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaimed.explain.cams import cam_grid, compute_cams
from xaimed.explain.metrics.localisation import baseline_maps, pointing_game
from xaimed.explain.stage import classes_in_turn, load_fold
from xaimed.io.runtime import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run's working directory")
    parser.add_argument("--dataset", default="brain_mri")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--layers", nargs="+", default=["layer1", "layer2", "layer3", "layer4"])
    parser.add_argument("--methods", nargs="+", default=["xgradcam", "layercam"])
    parser.add_argument("--tolerance", type=float, default=2)
    parser.add_argument("--max-images", type=int, default=8, help="the demo's explain.max_images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)

    data = args.run / "results" / "data" / args.dataset
    rows = []
    for fold in args.folds:
        train = args.run / "results" / "train" / args.dataset / args.model / f"fold{fold}"
        every = load_fold(
            train / "model.pt",
            data / "images.npy",
            data / "manifest.parquet",
            train / "predictions.parquet",
            masks_path=data / "masks.npy",
            device="cpu",
        )
        # the images an explain job with the demo's max_images takes (rows are in id order)
        in_demo = np.zeros(len(every.rows), dtype=bool)
        in_demo[classes_in_turn(every.rows, args.max_images)] = True
        lesion = every.masks.reshape(len(every.masks), -1).any(axis=1)
        ids = every.rows["image_id"].astype(str).to_numpy()[lesion]
        masks = every.masks[lesion]
        x = every.inputs(0, len(every.rows))[torch.from_numpy(lesion)]
        targets = every.rows["pred"].to_numpy()[lesion].tolist()
        common = {
            "fold": fold,
            "image_id": ids,
            "correct": (every.rows["label"] == every.rows["pred"]).to_numpy()[lesion],
            "label_name": every.rows["label_name"].astype(str).to_numpy()[lesion],
            "demo": in_demo[lesion],
        }
        grid = cam_grid(every.model, args.model, x[:1])  # the default layer's map size
        for name, maps in baseline_maps(masks, ids, args.seed, grid=grid).items():
            if name != "mask":
                score = pointing_game(maps, masks, args.tolerance)
                rows.append(pd.DataFrame({**common, "layer": "-", "method": name, "pg": score}))
        for layer in args.layers:
            for method in args.methods:
                started = time.perf_counter()
                maps = compute_cams(every.model, args.model, method, x, targets, 16, layer)
                seconds = (time.perf_counter() - started) / max(len(x), 1)
                score = pointing_game(maps, masks, args.tolerance)
                rows.append(
                    pd.DataFrame(
                        {**common, "layer": layer, "method": method, "pg": score, "s": seconds}
                    )
                )
    table = pd.concat(rows, ignore_index=True)
    summary = table.groupby(["layer", "method"], sort=False).agg(
        pg_all=("pg", "mean"),
        n_all=("pg", "size"),
        pg_correct=("pg", lambda s: s[table.loc[s.index, "correct"]].mean()),
        pg_demo=("pg", lambda s: s[table.loc[s.index, "demo"]].mean()),
        n_demo=("pg", lambda s: int(table.loc[s.index, "demo"].sum())),
        s_per_image=("s", "mean"),
    )
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(summary)
    by_class = table.pivot_table(
        index=["layer", "method"], columns="label_name", values="pg", aggfunc="mean", sort=False
    )
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(by_class)
    print(
        f"pointing game within {args.tolerance} px, images with a lesion; pg_correct: correctly "
        f"classified ones; pg_demo: those among the explain stage's {args.max_images} per fold"
    )


if __name__ == "__main__":
    main()
