"""Seconds per image of each CAM method (rule timing_figure)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.explain_figures import timing_plot
from xaimed.report.tables import read_parquets

setup_logging(snakemake.log[0])
timing_plot(
    read_parquets(snakemake.input.scores),
    snakemake.output.figure,
    title="CAM seconds per image (mean and CI)",
    alpha=snakemake.params.alpha,
)
