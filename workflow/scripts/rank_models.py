"""Friedman test and Nemenyi post-hoc comparisons over all models of each dataset (rule
rank_models)."""

from xaimed.io.integrity import read_parquet, write_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import write_table
from xaimed.stats.ranks import rank_models

setup_logging(snakemake.log[0])
tables = rank_models(
    read_parquet(snakemake.input.fold_metrics),
    metrics=snakemake.params.metrics,
    adjust=snakemake.params.adjust,
    alpha=snakemake.params.alpha,
)
for name, table in tables.items():
    write_parquet(table, snakemake.output[name])
write_table(tables["friedman"], snakemake.output.friedman_table, snakemake.output.friedman_html)
write_table(tables["nemenyi"], snakemake.output.nemenyi_table, snakemake.output.nemenyi_html)
