"""Generalisation table, paired tests against in-domain and CAM stability (rule
generalisation_tables)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.generalise_figures import compare_shifts, generalisation_table, stability_table
from xaimed.report.tables import read_parquets, write_table

setup_logging(snakemake.log[0])
out = snakemake.output
metrics = read_parquets(snakemake.input.metrics)
write_table(generalisation_table(metrics), out.table, out.html)
tests = compare_shifts(metrics, adjust=snakemake.params.adjust, alpha=snakemake.params.alpha)
write_table(tests, out.ttest, out.ttest_html)
stability = stability_table(read_parquets(snakemake.input.stability))
write_table(stability, out.stability, out.stability_html)
