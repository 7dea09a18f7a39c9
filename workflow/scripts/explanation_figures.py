"""Confidence increase by method and predicted class for one dataset (rule
explanation_figures)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.explain_figures import confidence_increase_plot
from xaimed.report.tables import read_parquets

setup_logging(snakemake.log[0])
confidence_increase_plot(
    read_parquets(snakemake.input.scores),
    snakemake.output.confidence_increase,
    title=f"{snakemake.wildcards.dataset}: confidence increase (mean and CI)",
    alpha=snakemake.params.alpha,
)
