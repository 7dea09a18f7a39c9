"""Accuracy against corruption severity per model for one dataset (rule generalisation_figure)."""

import pandas as pd

from xaimed.io.runtime import setup_logging
from xaimed.report.generalise_figures import generalisation_figure

setup_logging(snakemake.log[0])
generalisation_figure(
    pd.read_csv(snakemake.input.table), snakemake.wildcards.dataset, snakemake.output.figure
)
