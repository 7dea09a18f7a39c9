"""A few images of every class of one dataset (rule data_examples)."""

from xaimed.plots import data_examples
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
data_examples(
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.output.figure,
    title=f"{snakemake.wildcards.dataset}: example images",
)
