"""Confusion matrices, ROC curves and per-fold metrics of one dataset's models (rule
classification_figures)."""

from xaimed.io.integrity import read_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import read_parquets
from xaimed.report.train_figures import confusion_matrices, fold_metric_boxes, roc_curves

setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
predictions = read_parquets(snakemake.input.predictions)
confusion_matrices(predictions, snakemake.output.confusion, f"{dataset}: confusion matrices")
roc_curves(predictions, snakemake.output.roc, f"{dataset}: ROC curves (one vs rest)")
fold_metrics = read_parquet(snakemake.input.fold_metrics)
fold_metric_boxes(
    fold_metrics[fold_metrics["dataset"] == dataset],
    snakemake.params.metrics,
    snakemake.output.fold_metrics,
    f"{dataset}: per-fold metrics",
)
