"""Explain one model's held-out predictions with one CAM method and score them (rule explain)."""

from xaimed.explain import explain
from xaimed.runtime import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
explain(
    snakemake.input.model,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.input.predictions,
    snakemake.wildcards.method,
    snakemake.output.scores,
    snakemake.output.cams,
    masks_path=snakemake.input.masks,
    sanity_path=snakemake.output.sanity,
    **snakemake.params.explain,
    **snakemake.params.quality,
)
