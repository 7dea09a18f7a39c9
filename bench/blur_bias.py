"""The blur-bias control on a finished run (issue 23): do ROAD and deletion/insertion rank the
smooth random map (``smooth_random``, noise on the target layer's grid) between the per-pixel
random map and the CAM methods, as they would if these scores partly reward smoothness?

    python bench/blur_bias.py RUN_DIR

Reads every ``results/explain/*/*/fold*/*/scores.parquet`` of the run (the methods' and the
baselines' per-image scores) and prints the mean per method and baseline, pooled and per
dataset and model, and per image how often the smooth random map beats the plain one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SCORES = ["road", "deletion_auc", "insertion_auc", "confidence_increase"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's working directory")
    args = parser.parse_args()
    files = sorted((args.run / "results" / "explain").glob("*/*/fold*/*/scores.parquet"))
    if not files:
        raise SystemExit(f"no explain scores under {args.run / 'results' / 'explain'}")
    methods = pd.concat(pd.read_parquet(p) for p in files if p.parent.name != "baselines")
    baselines = pd.concat(pd.read_parquet(p) for p in files if p.parent.name == "baselines")
    maps = pd.concat(
        [methods.rename(columns={"method": "map"}), baselines.rename(columns={"baseline": "map"})]
    )
    with pd.option_context(
        "display.width", 200, "display.max_columns", None, "display.precision", 3
    ):
        print(maps.groupby("map")[SCORES].mean(), "\n")
        print(maps.groupby(["dataset", "model", "map"])[SCORES].mean(), "\n")
    wide = baselines.pivot_table(
        index=["dataset", "model", "fold", "image_id"], columns="baseline", values=SCORES
    )
    for score, better in (("road", 1), ("deletion_auc", -1), ("insertion_auc", 1)):
        diff = (wide[(score, "smooth_random")] - wide[(score, "random")]).dropna()
        print(
            f"{score}: smooth_random better than random on {(better * diff > 0).mean():.2f} "
            f"of {len(diff)} images (mean difference {diff.mean():+.4f})"
        )


if __name__ == "__main__":
    main()
