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
    script:
        "../scripts/fold_metrics.py"


rule compare_models:
    input:
        fold_metrics="results/stats/fold_metrics.parquet",
    output:
        parquet="results/stats/ttest_models.parquet",
        table=report(
            "results/tables/ttest_models.csv",
            caption="../report/ttest_models.rst",
            category="Statistics",
        ),
        markdown="results/tables/ttest_models.md",
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
    script:
        "../scripts/compare_models.py"


rule compare_methods:
    input:
        scores=all_scores(),
    output:
        parquet="results/stats/ttest_methods.parquet",
        table=report(
            "results/tables/ttest_methods.csv",
            caption="../report/ttest_methods.rst",
            category="Statistics",
        ),
        markdown="results/tables/ttest_methods.md",
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
    script:
        "../scripts/compare_methods.py"
