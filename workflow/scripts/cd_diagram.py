"""Critical-difference diagrams of one dataset's models, one per metric (rule cd_diagram)."""

from xaimed.io.integrity import read_parquet
from xaimed.io.runtime import setup_logging
from xaimed.report.stats_figures import cd_diagrams

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
