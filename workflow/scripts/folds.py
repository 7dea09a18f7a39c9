"""Assign folds: stratified k-fold or the dataset's own split, leakage-grouped (rule folds)."""

import pandas as pd

from xaimed.folds import assign_folds
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
params = dict(snakemake.params.folds)
# Duplicate clusters are kept in one fold (unless the config says `duplicates: report`).
group_duplicates = params.pop("group_duplicates")
duplicates = pd.read_parquet(snakemake.input.duplicates) if group_duplicates else None
folds = assign_folds(pd.read_parquet(snakemake.input.manifest), duplicates=duplicates, **params)
folds.to_parquet(snakemake.output.folds, index=False)
