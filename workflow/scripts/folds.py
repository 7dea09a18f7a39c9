"""Assign stratified cross-validation folds (rule folds)."""

import pandas as pd

from xaimed.folds import assign_folds
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
manifest = pd.read_parquet(snakemake.input.manifest)
folds = assign_folds(manifest, **snakemake.params.folds)
folds.to_parquet(snakemake.output.folds, index=False)
