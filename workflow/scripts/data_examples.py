"""A few images of every class of one dataset (rule data_examples)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.data_figures import data_examples

setup_logging(snakemake.log[0])
data_examples(
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.output.figure,
    title=f"{snakemake.wildcards.dataset}: example images",
)
