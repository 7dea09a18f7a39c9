rule generalise:
    input:
        unpack(generalise_input),
    output:
        metrics="results/generalise/{dataset}/{model}/fold{fold}/metrics.parquet",
        stability="results/generalise/{dataset}/{model}/fold{fold}/cam_stability.parquet",
    log:
        "logs/generalise/{dataset}/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/generalise/{dataset}/{model}/fold{fold}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: config["threads"]["generalise"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    params:
        generalise=generalise_params,
    script:
        "../scripts/generalise.py"


rule generalisation_tables:
    input:
        metrics=all_generalise_metrics(),
        stability=all_cam_stability(),
    output:
        table="results/tables/generalisation.csv",
        html=report(
            "results/tables/generalisation.html",
            caption="../report/generalisation.rst",
            category=CATEGORY["generalisation"],
            subcategory="Tables",
            labels={"table": "generalisation: metrics under corruption"},
        ),
        markdown="results/tables/generalisation.md",
        ttest="results/tables/ttest_generalisation.csv",
        ttest_html=report(
            "results/tables/ttest_generalisation.html",
            caption="../report/ttest_generalisation.rst",
            category=CATEGORY["generalisation"],
            subcategory="Tables",
            labels={
                "table": "ttest_generalisation: corrupted against in-domain, paired by fold"
            },
        ),
        ttest_md="results/tables/ttest_generalisation.md",
        stability="results/tables/cam_stability.csv",
        stability_html=report(
            "results/tables/cam_stability.html",
            caption="../report/cam_stability.rst",
            category=CATEGORY["generalisation"],
            subcategory="Tables",
            labels={"table": "cam_stability: maps under corruption"},
        ),
        stability_md="results/tables/cam_stability.md",
    log:
        "logs/report/generalisation_tables.log",
    benchmark:
        "benchmarks/report/generalisation_tables.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        adjust=config["stats"]["adjust"],
        alpha=config["stats"]["alpha"],
    script:
        "../scripts/generalisation_tables.py"


rule generalisation_figure:
    input:
        table="results/tables/generalisation.csv",
    output:
        figure=report(
            "results/figures/generalisation_{dataset}.png",
            caption="../report/generalisation_figure.rst",
            category=CATEGORY["generalisation"],
            subcategory="{dataset}",
        ),
    log:
        "logs/report/generalisation_figure/{dataset}.log",
    benchmark:
        "benchmarks/report/generalisation_figure/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/generalisation_figure.py"
