"""Bar chart of each method's localisation scores beside the baselines (rule
localisation_figure)."""

from xaimed.quality_figures import localisation_figure
from xaimed.runtime import setup_logging
from xaimed.tables import read_parquets

setup_logging(snakemake.log[0])
localisation_figure(
    read_parquets(snakemake.input.scores),
    read_parquets(snakemake.input.baselines),
    snakemake.output.figure,
    title=snakemake.params.title,
)
