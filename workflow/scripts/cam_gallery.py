"""One correctly classified image per class with every method's map (rule cam_gallery)."""

from xaimed.figures import cam_gallery
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
cam_gallery(
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.params.cams,
    snakemake.input.predictions,
    snakemake.output.figure,
    title=snakemake.params.title,
)
