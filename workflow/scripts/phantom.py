"""Generate one built-in synthetic dataset (rule phantom)."""

from xaimed.phantoms import write_phantom_dataset
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
write_phantom_dataset(out_dir=snakemake.output[0], **snakemake.params.phantom)
