"""Per-fold classification metrics of every model (rule fold_metrics)."""

from xaimed.io.integrity import write_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import read_parquets
from xaimed.stats.compare import fold_metrics

setup_logging(snakemake.log[0])
write_parquet(
    # folds per repeat: only repeated runs have them (None: one repeat)
    fold_metrics(read_parquets(snakemake.input.predictions), snakemake.params.get("folds")),
    snakemake.output.fold_metrics,
)
