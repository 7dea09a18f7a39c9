# The only home of workflow logic: config validation, the study's lists, wildcard constraints,
# input functions and the final target list. No rules here.
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

DATASETS = list(config["datasets"])
MODELS = list(config["models"])
EXPLAIN_MODELS = [m for m in config["explain"]["models"] if m in MODELS]
METHODS = list(config["explain"]["methods"])
FOLDS = list(range(config["folds"]))
PHANTOM_DEFAULTS = {"n_per_class": 60, "phantom_size": 128}


def _alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True)) or "^$"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    method=_alternatives(METHODS),
    fold=r"\d+",


def dataset_config(dataset):
    return config["datasets"][dataset]


def is_phantom(dataset):
    return "phantom" in dataset_config(dataset)


def phantom_params(wildcards):
    """Kind, count and size of a built-in synthetic dataset, defaults filled in."""
    entry = {**PHANTOM_DEFAULTS, **dataset_config(wildcards.dataset)}
    return {
        "kind": entry["phantom"],
        "n_per_class": entry["n_per_class"],
        "image_size": entry["phantom_size"],
        "seed": config["seed"],
    }


def ingest_input(wildcards):
    """The folder to ingest: a generated phantom tree, or the user's dataset root."""
    if is_phantom(wildcards.dataset):
        return {"source": f"results/phantoms/{wildcards.dataset}"}
    return {"source": dataset_config(wildcards.dataset)["path"]}


def ingest_params(wildcards):
    entry = dataset_config(wildcards.dataset)
    return {
        "format": entry.get("format", "imagefolder"),
        "mask_suffix": entry.get("mask_suffix", "_mask"),
        "label_map": entry.get("label_map", {}),
    }


def training_settings(wildcards):
    """Shared training settings merged with the model's own overrides (a params rerun trigger:
    changing one model's settings reruns only that model's jobs)."""
    training = config["training"]
    settings = {k: v for k, v in training.items() if k != "models"}
    settings.update(training["models"].get(wildcards.model, {}))
    settings["device"] = config["device"]
    return settings


def explain_params(wildcards):
    explain = config["explain"]
    return {
        "batch_size": explain["batch_size"],
        "road_percentiles": explain["road_percentiles"],
        "max_images": explain["max_images"],
        "seed": config["seed"],
        "device": config["device"],
    }


def data_files(dataset):
    base = f"results/data/{dataset}"
    return {
        "manifest": f"{base}/manifest.parquet",
        "folds": f"{base}/folds.parquet",
        "images": f"{base}/images.npy",
    }


def train_input(wildcards):
    return data_files(wildcards.dataset)


def explain_input(wildcards):
    train = f"results/train/{wildcards.dataset}/{wildcards.model}/fold{wildcards.fold}"
    files = data_files(wildcards.dataset)
    return {
        "model": f"{train}/model.pt",
        "predictions": f"{train}/predictions.parquet",
        "images": files["images"],
        "manifest": files["manifest"],
    }


def all_predictions():
    return expand(
        "results/train/{dataset}/{model}/fold{fold}/predictions.parquet",
        dataset=DATASETS,
        model=MODELS,
        fold=FOLDS,
    )


def all_scores():
    return expand(
        "results/explain/{dataset}/{model}/fold{fold}/{method}/scores.parquet",
        dataset=DATASETS,
        model=EXPLAIN_MODELS,
        fold=FOLDS,
        method=METHODS,
    )


def gallery_input(wildcards):
    """Cams of the first explained model, every method and fold, with its predictions."""
    model = EXPLAIN_MODELS[0]
    files = data_files(wildcards.dataset)
    return {
        "images": files["images"],
        "manifest": files["manifest"],
        "predictions": expand(
            "results/train/{dataset}/{model}/fold{fold}/predictions.parquet",
            dataset=wildcards.dataset,
            model=model,
            fold=FOLDS,
        ),
        "cams": [
            p for paths in gallery_cams_by_method(wildcards).values() for p in paths
        ],
    }


TABLES = ["classification", "ttest_models"]
EXPLAIN_TABLES = ["confidence_increase", "xai_timing", "ttest_methods"]


def all_targets():
    tables = TABLES + (EXPLAIN_TABLES if EXPLAIN_MODELS else [])
    targets = expand("results/tables/{table}.{ext}", table=tables, ext=["csv", "md"])
    if EXPLAIN_MODELS:
        targets += expand("results/figures/cams_{dataset}.png", dataset=DATASETS)
    return targets + quality_targets()


def gallery_cams_by_method(wildcards):
    """Method -> its cams.npz for every fold, in the order the gallery's columns take."""
    model = EXPLAIN_MODELS[0]
    return {
        method: [
            f"results/explain/{wildcards.dataset}/{model}/fold{fold}/{method}/cams.npz"
            for fold in FOLDS
        ]
        for method in METHODS
    }


# --- explanation quality (localisation, faithfulness, sanity check; workflow/rules/quality.smk)


def quality_params(wildcards):
    """Settings of the localisation, faithfulness and sanity scores of one explain job."""
    quality = config["quality"]
    return {
        "tolerance": quality["tolerance"],
        "top_k": quality["top_k"],
        "faithfulness_steps": quality["faithfulness_steps"],
        "sanity_images": quality["sanity"]["images"],
        "sanity_depths": quality["sanity"]["stages"],
    }


def baselines_params(wildcards):
    """The explain job's image selection and scoring settings, for the baseline maps."""
    params = {**explain_params(wildcards), **quality_params(wildcards)}
    for key in ("road_percentiles", "sanity_images", "sanity_depths"):
        params.pop(key)
    return params


def all_baselines():
    return expand(
        "results/explain/{dataset}/{model}/fold{fold}/baselines/scores.parquet",
        dataset=DATASETS,
        model=EXPLAIN_MODELS,
        fold=FOLDS,
    )


def all_sanity():
    return [path.replace("scores.parquet", "sanity.parquet") for path in all_scores()]


def localisation_figure_input(wildcards):
    """Every explained model's method and baseline scores on one dataset."""
    return {
        "scores": [p for p in all_scores() if p.split("/")[2] == wildcards.dataset],
        "baselines": [
            p for p in all_baselines() if p.split("/")[2] == wildcards.dataset
        ],
    }


QUALITY_TABLES = [
    "localisation",
    "faithfulness",
    "sanity",
    "ttest_localisation",
    "ttest_faithfulness",
    "ttest_sanity",
]


def quality_targets():
    if not EXPLAIN_MODELS:
        return []
    return expand(
        "results/tables/{table}.{ext}", table=QUALITY_TABLES, ext=["csv", "md"]
    ) + expand("results/figures/localisation_{dataset}.png", dataset=DATASETS)
