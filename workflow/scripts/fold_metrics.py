"""Per-fold classification metrics of every model (rule fold_metrics)."""

from xaimed.integrity import write_parquet
from xaimed.runtime import setup_logging
from xaimed.stats import fold_metrics
from xaimed.tables import read_parquets

setup_logging(snakemake.log[0])
write_parquet(
    fold_metrics(read_parquets(snakemake.input.predictions)), snakemake.output.fold_metrics
)
