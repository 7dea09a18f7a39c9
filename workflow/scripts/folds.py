"""Assign folds: stratified k-fold or the dataset's own split, leakage-grouped (rule folds)."""

import pandas as pd

from xaimed.folds import assign_folds
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params.folds
duplicates = pd.read_parquet(snakemake.input.duplicates) if params["group_duplicates"] else None
folds = assign_folds(
    pd.read_parquet(snakemake.input.manifest),
    params["n_folds"],
    params["seed"],
    duplicates=duplicates,
    cv=params["cv"],
)
folds.to_parquet(snakemake.output.folds, index=False)
