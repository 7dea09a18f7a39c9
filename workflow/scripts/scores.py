"""Score every method's stored maps and the baseline maps on one model's held-out fold, with
the sanity check (rule scores)."""

from xaimed.explain.settings import ExplainSettings, QualitySettings
from xaimed.explain.stage import score_fold
from xaimed.io.runtime import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
score_fold(
    snakemake.input.model,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.input.predictions,
    snakemake.params.methods,
    snakemake.input.cams,
    snakemake.output.scores,
    snakemake.output.sanity,
    ExplainSettings(**snakemake.params.explain),
    QualitySettings(**snakemake.params.quality),
    masks_path=snakemake.input.masks,
    baselines_path=snakemake.output.baselines,
)
