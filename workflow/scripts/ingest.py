"""Ingest one dataset: its manifest, rejected images and duplicate pairs (rule ingest)."""

from xaimed.data.ingest import IngestOptions, ingest_dataset
from xaimed.io.integrity import write_parquet
from xaimed.io.runtime import setup_logging

setup_logging(snakemake.log[0])
ingested = ingest_dataset(
    snakemake.input.source,
    dataset=snakemake.params.dataset,
    options=IngestOptions.from_config(snakemake.params.ingest),
)
write_parquet(ingested.manifest, snakemake.output.manifest)
write_parquet(ingested.rejected, snakemake.output.rejected)
write_parquet(ingested.duplicates, snakemake.output.duplicates)
