"""Accuracy against corruption severity per model for one dataset (rule generalisation_figure)."""

import pandas as pd

from xaimed.generalise_report import generalisation_figure
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
generalisation_figure(
    pd.read_csv(snakemake.input.table), snakemake.wildcards.dataset, snakemake.output.figure
)
