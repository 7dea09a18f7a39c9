"""Ingest one dataset: its manifest, rejected images and duplicate pairs (rule ingest)."""

from xaimed.datasets import ingest_dataset
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
ingested = ingest_dataset(
    snakemake.input.source, dataset=snakemake.params.dataset, **snakemake.params.ingest
)
ingested.manifest.to_parquet(snakemake.output.manifest, index=False)
ingested.rejected.to_parquet(snakemake.output.rejected, index=False)
ingested.duplicates.to_parquet(snakemake.output.duplicates, index=False)
