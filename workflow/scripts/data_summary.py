"""Images per class and fold of every dataset (rule data_summary)."""

import pandas as pd

from xaimed.io.integrity import read_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import data_table, write_table

setup_logging(snakemake.log[0])
tables = [
    data_table(read_parquet(manifest), read_parquet(folds), dataset)
    for dataset, manifest, folds in zip(
        snakemake.params.datasets, snakemake.input.manifests, snakemake.input.folds, strict=True
    )
]
write_table(pd.concat(tables, ignore_index=True), snakemake.output.table, snakemake.output.html)
