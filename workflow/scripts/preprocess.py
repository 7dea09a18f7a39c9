"""Resize images and masks into the fast store (rule preprocess)."""

import pandas as pd

from xaimed.preprocess import preprocess
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
preprocess(
    pd.read_parquet(snakemake.input.manifest),
    snakemake.params.image_size,
    snakemake.output.images,
    snakemake.output.masks,
    dicom_window=snakemake.params.read["dicom_window"],
)
