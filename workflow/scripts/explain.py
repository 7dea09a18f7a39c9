"""The CAMs of every method on one model's held-out fold (rule cams)."""

from xaimed.explain.settings import ExplainSettings
from xaimed.explain.stage import explain_fold
from xaimed.io.runtime import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
explain_fold(
    snakemake.input.model,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.input.predictions,
    snakemake.params.methods,
    snakemake.output.cams,
    ExplainSettings(**snakemake.params.explain),
)
