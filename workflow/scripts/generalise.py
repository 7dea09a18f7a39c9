"""Evaluate one model's held-out fold in-domain and under every corruption (rule generalise)."""

from xaimed.io.runtime import set_threads, setup_logging
from xaimed.shift.generalise import ShiftSettings, generalise

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
generalise(
    snakemake.input.model,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.input.folds,
    snakemake.output.metrics,
    snakemake.output.stability,
    fold=int(snakemake.wildcards.fold),
    settings=ShiftSettings.from_config(snakemake.params.generalise),
)
