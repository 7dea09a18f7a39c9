"""Critical-difference diagrams of one dataset's models, one per metric (rule cd_diagram)."""

from xaimed.integrity import read_parquet
from xaimed.plots import cd_diagrams
from xaimed.runtime import setup_logging

setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
ranks = read_parquet(snakemake.input.ranks)
friedman = read_parquet(snakemake.input.friedman)
cd_diagrams(
    ranks[ranks["dataset"] == dataset],
    friedman[friedman["dataset"] == dataset],
    snakemake.output.figure,
    title=f"{dataset}: mean ranks over folds (1 = best)",
)
