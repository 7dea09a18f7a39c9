"""Confidence increase per class and seconds per image of each CAM method (rule
explanation_tables)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.tables import confidence_increase_table, read_parquets, timing_table, write_table

setup_logging(snakemake.log[0])
scores = read_parquets(snakemake.input.scores)
write_table(
    confidence_increase_table(scores),
    snakemake.output.confidence_increase,
    snakemake.output.confidence_increase_html,
)
write_table(timing_table(scores), snakemake.output.timing, snakemake.output.timing_html)
