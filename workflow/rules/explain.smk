rule explain:
    input:
        unpack(explain_input),
        masks="results/data/{dataset}/masks.npy",
    output:
        scores="results/explain/{dataset}/{model}/fold{fold}/{method}/scores.parquet",
        cams="results/explain/{dataset}/{model}/fold{fold}/{method}/cams.npz",
        sanity="results/explain/{dataset}/{model}/fold{fold}/{method}/sanity.parquet",
    log:
        "logs/explain/{dataset}/{model}/fold{fold}/{method}.log",
    benchmark:
        "benchmarks/explain/{dataset}/{model}/fold{fold}/{method}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: config["threads"]["explain"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        explain=explain_params,
        quality=quality_params,
    script:
        "../scripts/explain.py"


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
