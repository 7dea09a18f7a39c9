"""Paired comparisons between every pair of models, across folds (rule compare_models)."""

from xaimed.io.integrity import read_parquet, write_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import write_table
from xaimed.stats.compare import compare_models

setup_logging(snakemake.log[0])
comparisons = compare_models(
    read_parquet(snakemake.input.fold_metrics),
    metrics=snakemake.params.metrics,
    adjust=snakemake.params.adjust,
    alpha=snakemake.params.alpha,
)
write_parquet(comparisons, snakemake.output.parquet)
write_table(comparisons, snakemake.output.table, snakemake.output.html)
