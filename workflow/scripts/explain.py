"""Explain one model's held-out fold with every CAM method, score the maps and the baseline
maps (rule explain)."""

from xaimed.explain import explain_fold
from xaimed.runtime import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
explain_fold(
    snakemake.input.model,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.input.predictions,
    snakemake.params.methods,
    snakemake.output.scores,
    snakemake.output.cams,
    snakemake.output.sanity,
    snakemake.output.baselines,
    masks_path=snakemake.input.masks,
    **snakemake.params.explain,
    **snakemake.params.quality,
)
