rule data_summary:
    input:
        unpack(data_summary_input),
    output:
        table="results/tables/data_summary.csv",
        markdown="results/tables/data_summary.md",
        html=report(
            "results/tables/data_summary.html",
            caption="../report/data_summary.rst",
            category=CATEGORY["data"],
            subcategory="Tables",
            labels={"table": "data_summary: images per class and fold"},
        ),
    log:
        "logs/report/data_summary.log",
    benchmark:
        "benchmarks/report/data_summary.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        datasets=DATASETS,
    script:
        "../scripts/data_summary.py"


rule data_examples:
    input:
        unpack(data_examples_input),
    output:
        figure=report(
            "results/figures/data_{dataset}.png",
            caption="../report/data_examples.rst",
            category=CATEGORY["data"],
            subcategory="Example images",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/report/data_examples/{dataset}.log",
    benchmark:
        "benchmarks/report/data_examples/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/data_examples.py"


rule classification_table:
    input:
        fold_metrics="results/stats/fold_metrics.parquet",
    output:
        table="results/tables/classification.csv",
        markdown="results/tables/classification.md",
        html=report(
            "results/tables/classification.html",
            caption="../report/classification.rst",
            category=CATEGORY["training"],
            subcategory="Tables",
            labels={"table": "classification: mean and SD over folds"},
        ),
    log:
        "logs/report/classification_table.log",
    benchmark:
        "benchmarks/report/classification_table.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/classification_table.py"


rule classification_figures:
    input:
        predictions=dataset_predictions,
        fold_metrics="results/stats/fold_metrics.parquet",
    output:
        confusion=report(
            "results/figures/confusion_{dataset}.png",
            caption="../report/confusion.rst",
            category=CATEGORY["training"],
            subcategory="Confusion matrices",
            labels={"dataset": "{dataset}"},
        ),
        roc=report(
            "results/figures/roc_{dataset}.png",
            caption="../report/roc.rst",
            category=CATEGORY["training"],
            subcategory="ROC curves",
            labels={"dataset": "{dataset}"},
        ),
        fold_metrics=report(
            "results/figures/fold_metrics_{dataset}.png",
            caption="../report/fold_metrics.rst",
            category=CATEGORY["training"],
            subcategory="Per-fold metrics",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/report/classification_figures/{dataset}.log",
    benchmark:
        "benchmarks/report/classification_figures/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        metrics=config["stats"]["model_metrics"],
    script:
        "../scripts/classification_figures.py"


rule explanation_tables:
    input:
        scores=collected("scores"),
    output:
        confidence_increase="results/tables/confidence_increase.csv",
        confidence_increase_md="results/tables/confidence_increase.md",
        confidence_increase_html=report(
            "results/tables/confidence_increase.html",
            caption="../report/confidence_increase.rst",
            category=CATEGORY["explanations"],
            subcategory="Tables",
            labels={"table": "confidence_increase: per method and class"},
        ),
        timing="results/tables/xai_timing.csv",
        timing_md="results/tables/xai_timing.md",
        timing_html=report(
            "results/tables/xai_timing.html",
            caption="../report/xai_timing.rst",
            category=CATEGORY["explanations"],
            subcategory="Tables",
            labels={"table": "xai_timing: seconds per image"},
        ),
    log:
        "logs/report/explanation_tables.log",
    benchmark:
        "benchmarks/report/explanation_tables.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/explanation_tables.py"


rule explanation_figures:
    input:
        scores=dataset_collected_scores,
    output:
        confidence_increase=report(
            "results/figures/confidence_increase_{dataset}.png",
            caption="../report/confidence_increase_figure.rst",
            category=CATEGORY["explanations"],
            subcategory="Confidence increase",
            labels={
                "dataset": "{dataset}",
                "figure": "mean and CI per method and class",
            },
        ),
    log:
        "logs/report/explanation_figures/{dataset}.log",
    benchmark:
        "benchmarks/report/explanation_figures/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        alpha=config["stats"]["alpha"],
    script:
        "../scripts/explanation_figures.py"


rule timing_figure:
    input:
        scores=collected("scores"),
    output:
        figure=report(
            "results/figures/xai_timing.png",
            caption="../report/xai_timing_figure.rst",
            category=CATEGORY["explanations"],
            subcategory="Timing",
            labels={"figure": "seconds per image by method"},
        ),
    log:
        "logs/report/timing_figure.log",
    benchmark:
        "benchmarks/report/timing_figure.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        alpha=config["stats"]["alpha"],
    script:
        "../scripts/timing_figure.py"


rule cam_gallery:
    input:
        unpack(gallery_input),
    output:
        figure=report(
            "results/figures/cams_{dataset}.png",
            caption="../report/cams.rst",
            category=CATEGORY["explanations"],
            subcategory="CAM galleries",
            labels=gallery_labels,
        ),
    log:
        "logs/report/cam_gallery/{dataset}.log",
    benchmark:
        "benchmarks/report/cam_gallery/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cams=gallery_cams_by_method,
        title=lambda wildcards: f"{wildcards.dataset}: {EXPLAIN_MODELS[0]}",
    script:
        "../scripts/cam_gallery.py"


rule repeatability_figure:
    input:
        pairs="results/stats/repeatability_pairs.parquet",
    output:
        figure=report(
            "results/figures/repeatability_{dataset}.png",
            caption="../report/repeatability_figure.rst",
            category=CATEGORY["quality"],
            subcategory="{dataset}",
        ),
    log:
        "logs/report/repeatability_figure/{dataset}.log",
    benchmark:
        "benchmarks/report/repeatability_figure/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/repeatability_figure.py"
