rule quality_tables:
    input:
        scores=collected("scores"),
        baselines=collected("baselines"),
        sanity=collected("sanity"),
    output:
        localisation="results/tables/localisation.csv",
        localisation_html=report(
            "results/tables/localisation.html",
            caption="../report/localisation.rst",
            category=CATEGORY["quality"],
            subcategory="Tables",
            labels={"table": "localisation: per method and class, with baselines"},
        ),
        localisation_md="results/tables/localisation.md",
        faithfulness="results/tables/faithfulness.csv",
        faithfulness_html=report(
            "results/tables/faithfulness.html",
            caption="../report/faithfulness.rst",
            category=CATEGORY["quality"],
            subcategory="Tables",
            labels={"table": "faithfulness: per method and class, with baselines"},
        ),
        faithfulness_md="results/tables/faithfulness.md",
        sanity="results/tables/sanity.csv",
        sanity_html=report(
            "results/tables/sanity.html",
            caption="../report/sanity.rst",
            category=CATEGORY["quality"],
            subcategory="Tables",
            labels={"table": "sanity: maps of randomised models"},
        ),
        sanity_md="results/tables/sanity.md",
        ttest_localisation="results/tables/ttest_localisation.csv",
        ttest_localisation_html=report(
            "results/tables/ttest_localisation.html",
            caption="../report/ttest_quality.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={
                "table": "ttest_localisation: pairs of CAM methods, paired by image"
            },
        ),
        ttest_localisation_md="results/tables/ttest_localisation.md",
        ttest_faithfulness="results/tables/ttest_faithfulness.csv",
        ttest_faithfulness_html=report(
            "results/tables/ttest_faithfulness.html",
            caption="../report/ttest_quality.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={
                "table": "ttest_faithfulness: pairs of CAM methods, paired by image"
            },
        ),
        ttest_faithfulness_md="results/tables/ttest_faithfulness.md",
        ttest_sanity="results/tables/ttest_sanity.csv",
        ttest_sanity_html=report(
            "results/tables/ttest_sanity.html",
            caption="../report/ttest_quality.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={"table": "ttest_sanity: pairs of CAM methods, paired by image"},
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
        adjust=config["stats"]["adjust"],
        alpha=config["stats"]["alpha"],
    script:
        "../scripts/quality_tables.py"


rule localisation_figure:
    input:
        unpack(localisation_figure_input),
    output:
        figure=report(
            "results/figures/localisation_{dataset}.png",
            caption="../report/localisation_figure.rst",
            category=CATEGORY["quality"],
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
