"""Gather one dataset's per-image CAM scores, sanity checks and baseline scores into one
table each (rule collect_explanations)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.tables import collect_parquets

setup_logging(snakemake.log[0])
for table in ("scores", "sanity", "baselines"):
    collect_parquets(snakemake.input[table], snakemake.output[table])
