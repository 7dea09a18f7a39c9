"""One correctly classified image per class with every method's map (rule cam_gallery)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.gallery import cam_gallery

setup_logging(snakemake.log[0])
cam_gallery(
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.params.cams,
    snakemake.input.predictions,
    snakemake.output.figure,
    title=snakemake.params.title,
)
