"""Train one model on one fold and predict its held-out images (rule train)."""

from xaimed.io.runtime import set_threads, setup_logging
from xaimed.train.fold import train_fold
from xaimed.train.trainer import TrainSettings

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
train_fold(
    images_path=snakemake.input.images,
    manifest_path=snakemake.input.manifest,
    folds_path=snakemake.input.folds,
    dataset=snakemake.wildcards.dataset,
    fold=int(snakemake.wildcards.fold),
    settings=TrainSettings.from_config(
        snakemake.wildcards.model, snakemake.params.settings, snakemake.params.seed
    ),
    model_path=snakemake.output.model,
    history_path=snakemake.output.history,
    predictions_path=snakemake.output.predictions,
    checkpoint_path=snakemake.params.checkpoint,
)
