"""Generate one built-in synthetic dataset (rule phantom)."""

from xaimed.data.phantoms.generate import write_phantom_dataset
from xaimed.io.runtime import setup_logging

setup_logging(snakemake.log[0])
write_phantom_dataset(out_dir=snakemake.output[0], **snakemake.params.phantom)
