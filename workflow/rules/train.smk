rule train:
    input:
        unpack(train_input),
    output:
        model="results/train/{dataset}/{model}/fold{fold}/model.pt",
        history="results/train/{dataset}/{model}/fold{fold}/history.parquet",
        predictions="results/train/{dataset}/{model}/fold{fold}/predictions.parquet",
    log:
        "logs/train/{dataset}/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/train/{dataset}/{model}/fold{fold}.tsv"
    # Trainings first: the longest jobs should not be the last ones left running.
    priority: 10
    conda:
        "../../envs/xaimed.yaml"
    threads: config["threads"]["train"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        settings=training_settings,
        seed=config["seed"],
        # Not an output: Snakemake deletes the outputs of a failed or killed job, and the
        # checkpoint must survive exactly that to be resumed. Deleted after success.
        checkpoint=train_checkpoint,
    script:
        "../scripts/train.py"
