"""Ingest one dataset into its manifest (rule ingest)."""

from xaimed.datasets import ingest
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
manifest = ingest(
    snakemake.input.source, dataset=snakemake.params.dataset, **snakemake.params.ingest
)
manifest.to_parquet(snakemake.output.manifest, index=False)
