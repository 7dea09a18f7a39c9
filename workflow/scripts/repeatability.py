"""Agreement of the maps of independently trained models on the images they all explained,
its table and the paired method tests on it (rule repeatability)."""

from xaimed.io import integrity
from xaimed.io.runtime import setup_logging
from xaimed.report.tables import write_table
from xaimed.stats.repeatability import (
    compare_methods_repeatability,
    repeatability_pairs,
    repeatability_table,
)

setup_logging(snakemake.log[0])
params, out = snakemake.params, snakemake.output
pairs = repeatability_pairs(
    snakemake.input.cams,
    params.maps,
    top_k=params.top_k,
    seed=params.seed,
    target_layers=params.target_layers,
)
integrity.write_parquet(pairs, out.pairs)
write_table(repeatability_table(pairs, params.alpha), out.table, out.html)
tests = compare_methods_repeatability(pairs, params.adjust, params.alpha)
write_table(tests, out.ttest, out.ttest_html)
