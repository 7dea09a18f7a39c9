"""Assign folds: stratified k-fold or the dataset's own split, leakage-grouped (rule folds)."""

from xaimed.data.folds import assign_folds
from xaimed.io.integrity import read_parquet, write_parquet
from xaimed.io.runtime import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params.folds
# Duplicate clusters are kept in one fold (unless the config says `duplicates: report`).
duplicates = read_parquet(snakemake.input.duplicates) if params["group_duplicates"] else None
folds = assign_folds(
    read_parquet(snakemake.input.manifest),
    params["n_folds"],
    params["seed"],
    duplicates=duplicates,
    cv=params["cv"],
    # only leave_site_out reads a site column (and only then is it in the params)
    site_column=params.get("site_column"),
    repeats=params.get("repeats", 1),  # in the params only when repeated
)
write_parquet(folds, snakemake.output.folds)
