"""Per-fold classification metrics of every model (rule fold_metrics)."""

from xaimed.runtime import setup_logging
from xaimed.stats import fold_metrics
from xaimed.tables import read_parquets

setup_logging(snakemake.log[0])
fold_metrics(read_parquets(snakemake.input.predictions)).to_parquet(
    snakemake.output.fold_metrics, index=False
)
