rule cams:
    input:
        unpack(explain_input),
    output:
        cams=method_files("cams.npz"),
    log:
        "logs/cams/{dataset}/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/cams/{dataset}/{model}/fold{fold}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: config["threads"]["explain"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=explain_runtime,
    params:
        methods=METHODS,
        explain=explain_params,
    script:
        "../scripts/explain.py"


# Scoring reads the stored maps, so a change of quality.* or explain.road_percentiles (params
# here only) reruns this job and what follows, never the CAMs.
rule scores:
    input:
        unpack(explain_input),
        masks="results/data/{dataset}/masks.npy",
        cams=method_files("cams.npz"),
    output:
        scores=method_files("scores.parquet"),
        sanity=method_files("sanity.parquet"),
        baselines="results/explain/{dataset}/{model}/fold{fold}/baselines/scores.parquet",
    log:
        "logs/scores/{dataset}/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/scores/{dataset}/{model}/fold{fold}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: config["threads"]["explain"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=explain_runtime,
    params:
        methods=METHODS,
        explain=explain_params,
        quality=quality_params,
    script:
        "../scripts/scores.py"


rule collect_explanations:
    input:
        unpack(dataset_explanations),
    output:
        scores="results/explain/{dataset}/scores.parquet",
        sanity="results/explain/{dataset}/sanity.parquet",
        baselines="results/explain/{dataset}/baselines.parquet",
    log:
        "logs/explain/{dataset}/collect.log",
    benchmark:
        "benchmarks/collect_explanations/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/collect_explanations.py"
