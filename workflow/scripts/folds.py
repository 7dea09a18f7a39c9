"""Assign folds: stratified k-fold or the dataset's own split, leakage-grouped (rule folds)."""

from xaimed.folds import assign_folds
from xaimed.integrity import read_parquet, write_parquet
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
params = dict(snakemake.params.folds)
# Duplicate clusters are kept in one fold (unless the config says `duplicates: report`).
group_duplicates = params.pop("group_duplicates")
duplicates = read_parquet(snakemake.input.duplicates) if group_duplicates else None
folds = assign_folds(read_parquet(snakemake.input.manifest), duplicates=duplicates, **params)
write_parquet(folds, snakemake.output.folds)
