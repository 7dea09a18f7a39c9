"""Box plots of each method's agreement across trained models beside the baselines' (rule
repeatability_figure)."""

from xaimed.io.integrity import read_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.repeatability_figures import repeatability_figure

setup_logging(snakemake.log[0])
repeatability_figure(
    read_parquet(snakemake.input.pairs), snakemake.wildcards.dataset, snakemake.output.figure
)
