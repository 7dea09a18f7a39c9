"""Paired comparisons between every pair of CAM methods, across images (rule compare_methods)."""

from xaimed.io.integrity import write_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import read_parquets, write_table
from xaimed.stats.compare import compare_methods

setup_logging(snakemake.log[0])
comparisons = compare_methods(
    read_parquets(snakemake.input.scores),
    adjust=snakemake.params.adjust,
    alpha=snakemake.params.alpha,
)
write_parquet(comparisons, snakemake.output.parquet)
write_table(comparisons, snakemake.output.table, snakemake.output.html)
