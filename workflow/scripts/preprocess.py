"""Resize images and masks into the fast store (rule preprocess)."""

from xaimed.data.checks import check_images
from xaimed.data.preprocess import preprocess
from xaimed.io.integrity import read_parquet
from xaimed.io.runtime import setup_logging

setup_logging(snakemake.log[0])
manifest = read_parquet(snakemake.input.manifest)
check_images(manifest, snakemake.params.image_size, snakemake.wildcards.dataset)
preprocess(
    manifest,
    snakemake.params.image_size,
    snakemake.output.images,
    snakemake.output.masks,
    dicom_window=snakemake.params.read["dicom_window"],
)
