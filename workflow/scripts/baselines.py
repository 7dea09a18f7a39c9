"""Score the random, centre and mask baseline maps on one model's explained images (rule
baselines)."""

from xaimed.baselines import score_baselines
from xaimed.runtime import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
score_baselines(
    snakemake.input.model,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.input.predictions,
    snakemake.input.masks,
    snakemake.output.scores,
    **snakemake.params.explain,
)
