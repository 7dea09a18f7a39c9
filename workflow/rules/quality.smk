rule quality_tables:
    input:
        scores=collected("scores"),
        baselines=collected("baselines"),
        sanity=collected("sanity"),
    output:
        localisation=report(
            "results/tables/localisation.csv",
            caption="../report/localisation.rst",
            category="Explanation quality",
        ),
        localisation_md="results/tables/localisation.md",
        faithfulness=report(
            "results/tables/faithfulness.csv",
            caption="../report/faithfulness.rst",
            category="Explanation quality",
        ),
        faithfulness_md="results/tables/faithfulness.md",
        sanity=report(
            "results/tables/sanity.csv",
            caption="../report/sanity.rst",
            category="Explanation quality",
        ),
        sanity_md="results/tables/sanity.md",
        ttest_localisation=report(
            "results/tables/ttest_localisation.csv",
            caption="../report/ttest_quality.rst",
            category=STATISTICS,
        ),
        ttest_localisation_md="results/tables/ttest_localisation.md",
        ttest_faithfulness=report(
            "results/tables/ttest_faithfulness.csv",
            caption="../report/ttest_quality.rst",
            category=STATISTICS,
        ),
        ttest_faithfulness_md="results/tables/ttest_faithfulness.md",
        ttest_sanity=report(
            "results/tables/ttest_sanity.csv",
            caption="../report/ttest_quality.rst",
            category=STATISTICS,
        ),
        ttest_sanity_md="results/tables/ttest_sanity.md",
    log:
        "logs/report/quality_tables.log",
    benchmark:
        "benchmarks/report/quality_tables.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        max_similarity=config["quality"]["sanity"]["max_similarity"],
    script:
        "../scripts/quality_tables.py"


rule localisation_figure:
    input:
        unpack(localisation_figure_input),
    output:
        figure=report(
            "results/figures/localisation_{dataset}.png",
            caption="../report/localisation_figure.rst",
            category="Explanation quality",
            subcategory="{dataset}",
        ),
    log:
        "logs/report/localisation_figure/{dataset}.log",
    benchmark:
        "benchmarks/report/localisation_figure/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        title=lambda wildcards: f"{wildcards.dataset}: localisation of the lesion",
    script:
        "../scripts/localisation_figure.py"
