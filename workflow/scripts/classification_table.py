"""Mean and SD of each model's per-fold metrics (rule classification_table)."""

from xaimed.io.integrity import read_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import classification_table, write_table

setup_logging(snakemake.log[0])
table = classification_table(read_parquet(snakemake.input.fold_metrics))
write_table(table, snakemake.output.table, snakemake.output.html)
