"""Paired comparisons between every pair of models, across folds (rule compare_models)."""

import pandas as pd

from xaimed.runtime import setup_logging
from xaimed.stats import compare_models
from xaimed.tables import write_table

setup_logging(snakemake.log[0])
comparisons = compare_models(
    pd.read_parquet(snakemake.input.fold_metrics),
    metrics=snakemake.params.metrics,
    adjust=snakemake.params.adjust,
    alpha=snakemake.params.alpha,
)
comparisons.to_parquet(snakemake.output.parquet, index=False)
write_table(comparisons, snakemake.output.table, snakemake.output.html)
