rule phantom:
    output:
        directory("results/phantoms/{dataset}"),
    log:
        "logs/phantom/{dataset}.log",
    benchmark:
        "benchmarks/phantom/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        phantom=phantom_params,
    script:
        "../scripts/phantom.py"


rule ingest:
    input:
        unpack(ingest_input),
    output:
        manifest="results/data/{dataset}/manifest.parquet",
    log:
        "logs/ingest/{dataset}.log",
    benchmark:
        "benchmarks/ingest/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        dataset=lambda wildcards: wildcards.dataset,
        ingest=ingest_params,
    script:
        "../scripts/ingest.py"


rule folds:
    input:
        manifest="results/data/{dataset}/manifest.parquet",
    output:
        folds="results/data/{dataset}/folds.parquet",
    log:
        "logs/folds/{dataset}.log",
    benchmark:
        "benchmarks/folds/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        folds=folds_params,
    script:
        "../scripts/folds.py"


rule preprocess:
    input:
        manifest="results/data/{dataset}/manifest.parquet",
    output:
        images="results/data/{dataset}/images.npy",
        masks="results/data/{dataset}/masks.npy",
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "benchmarks/preprocess/{dataset}.tsv"
    conda:
        "../../envs/xaimed.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        image_size=config["image_size"],
    script:
        "../scripts/preprocess.py"
