"""What the design can show: the smallest attainable p per test (rule power)."""

from xaimed.io.integrity import read_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import write_table
from xaimed.stats.power import study_power

setup_logging(snakemake.log[0])
datasets = snakemake.params.datasets
table = study_power(
    dict(zip(datasets, map(read_parquet, snakemake.input.folds), strict=True)),
    dict(zip(datasets, map(read_parquet, snakemake.input.manifests), strict=True)),
    n_folds=snakemake.params.folds,
    models=snakemake.params.models,
    methods=snakemake.params.methods,
    max_images=snakemake.params.max_images,
    n_metrics=len(snakemake.params.metrics),
    alpha=snakemake.params.alpha,
    adjust=snakemake.params.adjust,
    n_repeats=snakemake.params.get("repeats", 1),  # only repeated runs name their repeats
)
write_table(table, snakemake.output.table, snakemake.output.html)
