"""Localisation, faithfulness and sanity-check tables with baselines, and the paired method
comparisons on each (rule quality_tables)."""

from xaimed.quality import (
    FAITHFULNESS_METRICS,
    LOCALISATION_METRICS,
    SANITY_METRICS,
    compare_methods_on,
    faithfulness_table,
    localisation_table,
    sanity_table,
)
from xaimed.runtime import setup_logging
from xaimed.tables import read_parquets, write_table

setup_logging(snakemake.log[0])
out = snakemake.output
scores = read_parquets(snakemake.input.scores)
baselines = read_parquets(snakemake.input.baselines)
sanity = read_parquets(snakemake.input.sanity)
write_table(localisation_table(scores, baselines), out.localisation)
write_table(faithfulness_table(scores, baselines), out.faithfulness)
write_table(sanity_table(sanity, snakemake.params.max_similarity), out.sanity)
write_table(compare_methods_on(scores, LOCALISATION_METRICS), out.ttest_localisation)
write_table(compare_methods_on(scores, FAITHFULNESS_METRICS), out.ttest_faithfulness)
write_table(compare_methods_on(sanity, SANITY_METRICS), out.ttest_sanity)
