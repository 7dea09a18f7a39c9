rule fold_metrics:
    input:
        predictions=all_predictions(),
    output:
        fold_metrics="results/stats/fold_metrics.parquet",
    log:
        "logs/stats/fold_metrics.log",
    benchmark:
        "benchmarks/stats/fold_metrics.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **FOLDS_PER_REPEAT,
    script:
        "../scripts/fold_metrics.py"


rule compare_models:
    input:
        fold_metrics="results/stats/fold_metrics.parquet",
    output:
        parquet="results/stats/ttest_models.parquet",
        table="results/tables/ttest_models.csv",
        markdown="results/tables/ttest_models.md",
        html=report(
            "results/tables/ttest_models.html",
            caption="../report/ttest_models.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={"table": "ttest_models: pairs of models, paired by fold"},
        ),
    log:
        "logs/stats/compare_models.log",
    benchmark:
        "benchmarks/stats/compare_models.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        metrics=config["stats"]["model_metrics"],
        adjust=config["stats"]["adjust"],
        alpha=config["stats"]["alpha"],
    script:
        "../scripts/compare_models.py"


rule rank_models:
    input:
        fold_metrics="results/stats/fold_metrics.parquet",
    output:
        friedman="results/stats/friedman.parquet",
        nemenyi="results/stats/nemenyi.parquet",
        ranks="results/stats/ranks.parquet",
        friedman_table="results/tables/friedman.csv",
        friedman_md="results/tables/friedman.md",
        friedman_html=report(
            "results/tables/friedman.html",
            caption="../report/friedman.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={"table": "friedman: all models of a dataset"},
        ),
        nemenyi_table="results/tables/nemenyi.csv",
        nemenyi_md="results/tables/nemenyi.md",
        nemenyi_html=report(
            "results/tables/nemenyi.html",
            caption="../report/nemenyi.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={"table": "nemenyi: post-hoc pairs of models"},
        ),
    log:
        "logs/stats/rank_models.log",
    benchmark:
        "benchmarks/stats/rank_models.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        metrics=config["stats"]["model_metrics"],
        adjust=config["stats"]["adjust"],
        alpha=config["stats"]["alpha"],
    script:
        "../scripts/rank_models.py"


rule cd_diagram:
    input:
        ranks="results/stats/ranks.parquet",
        friedman="results/stats/friedman.parquet",
    output:
        figure=report(
            "results/figures/cd_{dataset}.png",
            caption="../report/cd_diagram.rst",
            category=STATISTICS,
            subcategory="Critical-difference diagrams",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/stats/cd_diagram/{dataset}.log",
    benchmark:
        "benchmarks/stats/cd_diagram/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/cd_diagram.py"


rule compare_methods:
    input:
        scores=collected("scores"),
    output:
        parquet="results/stats/ttest_methods.parquet",
        table="results/tables/ttest_methods.csv",
        markdown="results/tables/ttest_methods.md",
        html=report(
            "results/tables/ttest_methods.html",
            caption="../report/ttest_methods.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={"table": "ttest_methods: pairs of CAM methods, paired by image"},
        ),
    log:
        "logs/stats/compare_methods.log",
    benchmark:
        "benchmarks/stats/compare_methods.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        adjust=config["stats"]["adjust"],
        alpha=config["stats"]["alpha"],
    script:
        "../scripts/compare_methods.py"


rule power:
    input:
        **power_input(),
    output:
        table="results/tables/power.csv",
        markdown="results/tables/power.md",
        html=report(
            "results/tables/power.html",
            caption="../report/power.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={"table": "power: what the design can show"},
        ),
    log:
        "logs/stats/power.log",
    benchmark:
        "benchmarks/stats/power.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **power_params(),
    script:
        "../scripts/power.py"


rule repeatability:
    input:
        **repeatability_input(),
    output:
        pairs="results/stats/repeatability_pairs.parquet",
        table="results/tables/repeatability.csv",
        markdown="results/tables/repeatability.md",
        html=report(
            "results/tables/repeatability.html",
            caption="../report/repeatability.rst",
            category=CATEGORY["quality"],
            subcategory="Tables",
            labels={"table": "repeatability: maps of independently trained models"},
        ),
        ttest="results/tables/ttest_repeatability.csv",
        ttest_markdown="results/tables/ttest_repeatability.md",
        ttest_html=report(
            "results/tables/ttest_repeatability.html",
            caption="../report/ttest_repeatability.rst",
            category=STATISTICS,
            subcategory="Tables",
            labels={
                "table": "ttest_repeatability: pairs of CAM methods, paired by image"
            },
        ),
    log:
        "logs/stats/repeatability.log",
    benchmark:
        "benchmarks/stats/repeatability.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        **repeatability_params(),
    script:
        "../scripts/repeatability.py"
