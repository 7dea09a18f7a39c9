"""Resize images and masks into the fast store (rule preprocess)."""

from xaimed.data_checks import check_images
from xaimed.integrity import read_parquet
from xaimed.preprocess import preprocess
from xaimed.runtime import setup_logging

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
