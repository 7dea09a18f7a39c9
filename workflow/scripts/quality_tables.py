"""Localisation, faithfulness and sanity-check tables with baselines, and the paired method
comparisons on each (rule quality_tables)."""

from xaimed.io.runtime import setup_logging
from xaimed.report.tables import read_parquets, write_table
from xaimed.stats.quality import (
    FAITHFULNESS_METRICS,
    LOCALISATION_METRICS,
    SANITY_METRICS,
    compare_methods_on,
    faithfulness_table,
    localisation_table,
    sanity_table,
)

setup_logging(snakemake.log[0])
out = snakemake.output
stats_settings = {"adjust": snakemake.params.adjust, "alpha": snakemake.params.alpha}
scores = read_parquets(snakemake.input.scores)
baselines = read_parquets(snakemake.input.baselines)
sanity = read_parquets(snakemake.input.sanity)
write_table(localisation_table(scores, baselines), out.localisation, out.localisation_html)
write_table(faithfulness_table(scores, baselines), out.faithfulness, out.faithfulness_html)
write_table(sanity_table(sanity, snakemake.params.max_similarity), out.sanity, out.sanity_html)
write_table(
    compare_methods_on(scores, LOCALISATION_METRICS, **stats_settings),
    out.ttest_localisation,
    out.ttest_localisation_html,
)
write_table(
    compare_methods_on(scores, FAITHFULNESS_METRICS, **stats_settings),
    out.ttest_faithfulness,
    out.ttest_faithfulness_html,
)
write_table(
    compare_methods_on(sanity, SANITY_METRICS, **stats_settings),
    out.ttest_sanity,
    out.ttest_sanity_html,
)
