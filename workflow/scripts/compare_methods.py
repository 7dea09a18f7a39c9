"""Paired comparisons between every pair of CAM methods, across images (rule compare_methods)."""

from xaimed.integrity import write_parquet
from xaimed.runtime import setup_logging
from xaimed.stats import compare_methods
from xaimed.tables import read_parquets, write_table

setup_logging(snakemake.log[0])
comparisons = compare_methods(
    read_parquets(snakemake.input.scores),
    adjust=snakemake.params.adjust,
    alpha=snakemake.params.alpha,
)
write_parquet(comparisons, snakemake.output.parquet)
write_table(comparisons, snakemake.output.table, snakemake.output.html)
