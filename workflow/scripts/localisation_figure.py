"""Bar chart of each method's localisation scores beside the baselines (rule
localisation_figure)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.quality_figures import localisation_figure
from xaimed.report.tables import read_parquets

setup_logging(snakemake.log[0])
localisation_figure(
    read_parquets(snakemake.input.scores),
    read_parquets(snakemake.input.baselines),
    snakemake.output.figure,
    title=snakemake.params.title,
)
