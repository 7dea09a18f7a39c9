rule classification_table:
    input:
        fold_metrics="results/stats/fold_metrics.parquet",
    output:
        table=report(
            "results/tables/classification.csv",
            caption="../report/classification.rst",
            category="Training",
        ),
        markdown="results/tables/classification.md",
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


rule explanation_tables:
    input:
        scores=all_scores(),
    output:
        confidence_increase=report(
            "results/tables/confidence_increase.csv",
            caption="../report/confidence_increase.rst",
            category="Explanations",
        ),
        confidence_increase_md="results/tables/confidence_increase.md",
        timing=report(
            "results/tables/xai_timing.csv",
            caption="../report/xai_timing.rst",
            category="Explanations",
        ),
        timing_md="results/tables/xai_timing.md",
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


rule cam_gallery:
    input:
        unpack(gallery_input),
    output:
        figure=report(
            "results/figures/cams_{dataset}.png",
            caption="../report/cams.rst",
            category="Explanations",
            subcategory="{dataset}",
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
