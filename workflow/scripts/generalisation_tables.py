"""Generalisation table, paired tests against in-domain and CAM stability (rule
generalisation_tables)."""

from xaimed.generalise_report import compare_shifts, generalisation_table, stability_table
from xaimed.runtime import setup_logging
from xaimed.tables import read_parquets, write_table

setup_logging(snakemake.log[0])
metrics = read_parquets(snakemake.input.metrics)
write_table(generalisation_table(metrics), snakemake.output.table)
write_table(compare_shifts(metrics), snakemake.output.ttest)
write_table(stability_table(read_parquets(snakemake.input.stability)), snakemake.output.stability)
