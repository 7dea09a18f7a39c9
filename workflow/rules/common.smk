# The only home of workflow logic, in the study's stage order: config validation, the study's lists,
# wildcard constraints, input functions and the final target lists. No rules here.
import re

from snakemake.logging import logger
from snakemake.utils import validate

from xaimed.config.check import check_config
from xaimed.config.schema import (
    canonical,
    check_config_files,
    fill_defaults,
    load_schema,
)
from xaimed.explain.settings import ExplainSettings, QualitySettings

SCHEMA = load_schema(f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
# Each config file re-read strictly: Snakemake's reading takes a key given twice silently.
check_config_files(workflow.configfiles)
# Readable errors first (each names its key and the allowed values).
check_config(
    config,
    SCHEMA,
    source=f"the config ({', '.join(map(str, workflow.configfiles)) or 'no file'})",
)
# Every default from the schema, the dataset entries' too. Not validate()'s filling: it would
# write a phantom entry's defaults into a folder entry (it fills every oneOf alternative).
fill_defaults(config, SCHEMA)
validate(config, schema="../schemas/config.schema.yaml", set_default=False)
# The datasets in the order the config gives them: tables, figures and the report follow it.
DATASETS = list(config["datasets"])
# Every params value is built from this config: keys sorted once here, so that reordering
# the file or writing a default out reruns nothing (Snakemake compares params by repr).
_canonical = canonical(dict(config))
config.clear()
config.update(_canonical)

MODELS = list(config["models"])


# --- The study's lists, and where each stage keeps one job's files ---------------------------
# Where the data, training and generalise stages keep one job's files, written once.
PHANTOM_DIR = "results/phantoms/{dataset}"
DATA_DIR = "results/data/{dataset}"
TRAIN_DIR = "results/train/{dataset}/{model}/fold{fold}"
GENERALISE_DIR = "results/generalise/{dataset}/{model}/fold{fold}"


def job_dir(pattern, wildcards):
    """``pattern`` (one of the *_DIR above) filled with one job's wildcards."""
    names = re.findall(r"{(\w+)}", pattern)
    return pattern.format(**{name: getattr(wildcards, name) for name in names})


def trained(section):
    """The models of ``section`` (explain or shift) that are trained. The config check refuses
    a listed one outside ``models``, so only the default ([resnet50]) can name one: the stage
    is then off, and the log says so."""
    untrained = [m for m in config[section]["models"] if m not in MODELS]
    if untrained:
        logger.warning(
            f"{section}.models (the default, {', '.join(untrained)}) is not among models "
            f"({', '.join(MODELS)}): no {section} jobs; set {section}.models to choose"
        )
    return [m for m in config[section]["models"] if m in MODELS]


EXPLAIN_MODELS = trained("explain")
METHODS = list(config["explain"]["methods"])
# Every run, dry runs included, says where each explained model's CAMs are taken.
for _model in EXPLAIN_MODELS:
    logger.info(
        f"CAM target layer of {_model}: "
        + config["explain"]["target_layers"].get(
            _model, "the default of xaimed.models.layers.CAM_FAMILIES"
        )
    )
# Fold ids of every repeat: fold f is fold f % k of repeat f // k (xaimed.data.folds).
FOLDS = list(range(config["folds"] * config["repeats"]))
# Only repeated runs name their repeats in params: a run without keeps its params (no rerun).
REPEATS = {"repeats": config["repeats"]} if config["repeats"] > 1 else {}
# The folds per repeat, from which a fold's repeat follows (fold // folds): for the jobs that
# name each fold's repeat (fold_metrics, generalise).
FOLDS_PER_REPEAT = {"folds": config["folds"]} if REPEATS else {}
SHIFT = config["shift"]
SHIFT_MODELS = trained("shift")


def _alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True)) or "^$"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    fold=r"\d+",


# --- Data: phantoms, ingest, folds, preprocessing (data.smk) --------------------------------------
# The keys of a dataset entry that decide how it is ingested, in the order its params list
# them (a new order would rerun every ingest); an optional one only when given.
INGEST_KEYS = [
    "format",
    "mask_suffix",
    "label_map",
    "on_bad_image",
    "near_duplicate_distance",
    "mask_dir",
    "group_pattern",
    "metadata",
    "dicom_window",
    "path_column",
    "label_column",
    "group_column",
    "split_column",
    "mask_column",
]
# csv's own: only csv datasets depend on them (and rerun when they change).
CSV_KEYS = ["path_column", "label_column"]
# A generated phantom tree is read as a one-folder-per-class dataset with the schema's defaults.
PHANTOM_AS_FOLDER = fill_defaults(
    {"format": "imagefolder"}, SCHEMA, SCHEMA["$defs"]["folder_dataset"]
)


def dataset_config(dataset):
    return config["datasets"][dataset]


def is_phantom(dataset):
    return "phantom" in dataset_config(dataset)


def phantom_params(wildcards):
    """Kind, count and size of a built-in synthetic dataset."""
    entry = dataset_config(wildcards.dataset)
    return {
        "kind": entry["phantom"],
        "n_per_class": entry["n_per_class"],
        "image_size": entry["phantom_size"],
        "seed": config["seed"],
        "copies": True,  # planted copies give the leakage guard something to find
        # Only when asked for, so single-site runs keep their params (no rerun).
        **({"sites": entry["sites"]} if entry["sites"] > 1 else {}),
    }


def ingest_input(wildcards):
    """The folder to ingest: a generated phantom tree, or the user's dataset root."""
    if is_phantom(wildcards.dataset):
        return {"source": job_dir(PHANTOM_DIR, wildcards)}
    return {"source": dataset_config(wildcards.dataset)["path"]}


def ingest_params(wildcards):
    """The dataset's ingest options (see xaimed.data.ingest.IngestOptions)."""
    entry = dataset_config(wildcards.dataset)
    if is_phantom(wildcards.dataset):
        entry = PHANTOM_AS_FOLDER
    csv = entry["format"] == "csv"
    keys = [key for key in INGEST_KEYS if csv or key not in CSV_KEYS]
    return {key: entry[key] for key in keys if key in entry}


def read_params(wildcards):
    """Options that change the pixels read from the files: ingest and preprocess must agree."""
    return {"dicom_window": dataset_config(wildcards.dataset).get("dicom_window")}


def folds_params(wildcards):
    """How the dataset is split (k-fold, its own split, or leave-site-out on a site column)
    and whether duplicates are kept in one fold."""
    entry = dataset_config(wildcards.dataset)
    params = {
        "n_folds": config["folds"],
        "seed": config["seed"],
        "cv": entry["cv"],
        "group_duplicates": entry["duplicates"] == "group",
        **REPEATS,
    }
    if params["cv"] == "leave_site_out":
        params["site_column"] = entry["site_column"]
    return params


def data_files(dataset):
    base = DATA_DIR.format(dataset=dataset)
    return {
        "manifest": f"{base}/manifest.parquet",
        "folds": f"{base}/folds.parquet",
        "images": f"{base}/images.npy",
    }


# --- Training (train.smk) -------------------------------------------------------------------------


def training_settings(wildcards):
    """Shared training settings merged with the model's own overrides (a params rerun trigger:
    changing one model's settings reruns only that model's jobs)."""
    training = config["training"]
    settings = {k: v for k, v in training.items() if k != "models"}
    settings.update(training["models"].get(wildcards.model, {}))
    settings["device"] = config["device"]
    return settings


def train_input(wildcards):
    return data_files(wildcards.dataset)


def train_checkpoint(wildcards):
    """Where a training job keeps its per-epoch checkpoint to resume from after a kill."""
    return f"{job_dir(TRAIN_DIR, wildcards)}/checkpoint/last.pt"


def all_predictions():
    return expand(
        f"{TRAIN_DIR}/predictions.parquet",
        dataset=DATASETS,
        model=MODELS,
        fold=FOLDS,
    )


def dataset_predictions(wildcards):
    """Held-out predictions of every model and fold of one dataset."""
    return expand(
        f"{TRAIN_DIR}/predictions.parquet",
        dataset=wildcards.dataset,
        model=MODELS,
        fold=FOLDS,
    )


# --- Explanations: the CAMs and their scores (explain.smk, quality.smk) ---------------------------


def cam_layer(model):
    """The model's CAM target layer chosen in explain.target_layers (a dotted module path),
    as params of every job that takes its CAMs: {} for the registry's default layer, so runs
    that choose none keep their params (no rerun)."""
    layer = config["explain"]["target_layers"].get(model)
    return {} if layer is None else {"layer_path": layer}


def explain_params(wildcards):
    """How the model's CAMs are computed (xaimed.explain.settings.ExplainSettings), as a
    plain dict: the params of its cams and scores jobs."""
    return ExplainSettings.from_config(config, wildcards.model).params()


def quality_params(wildcards):
    """How the maps are scored (xaimed.explain.settings.QualitySettings): the params of the
    scores jobs only, so changing them recomputes no CAM."""
    return QualitySettings.from_config(config).params()


def method_files(name):
    """One explain job's file ``name`` of each CAM method, in the order of METHODS (the
    order its script pairs them with the methods in)."""
    return expand(
        "results/explain/{dataset}/{model}/fold{fold}/{method}/{name}",
        method=METHODS,
        name=name,
        allow_missing=True,
    )


def explain_runtime(wildcards):
    """Minutes a cams or scores job may take on a cluster: two hours per method, one for the
    baseline maps."""
    return 60 + 120 * len(METHODS)


def explain_input(wildcards):
    train = f"results/train/{wildcards.dataset}/{wildcards.model}/fold{wildcards.fold}"
    files = data_files(wildcards.dataset)
    return {
        "model": f"{train}/model.pt",
        "predictions": f"{train}/predictions.parquet",
        "images": files["images"],
        "manifest": files["manifest"],
    }


def dataset_explanations(wildcards):
    """One dataset's per-image CAM scores, sanity checks and baseline scores: every explained
    model, fold and method, in the order the tables concatenate them."""
    scores = dataset_scores(wildcards)
    return {
        "scores": scores,
        "sanity": [path.replace("scores.parquet", "sanity.parquet") for path in scores],
        "baselines": expand(
            "results/explain/{dataset}/{model}/fold{fold}/baselines/scores.parquet",
            dataset=wildcards.dataset,
            model=EXPLAIN_MODELS,
            fold=FOLDS,
        ),
    }


def collected(table, dataset=DATASETS):
    """The per-dataset gathering of one explanation table (scores, sanity or baselines):
    tables and figures read these few files, not every explain job's."""
    return expand(
        "results/explain/{dataset}/{table}.parquet", dataset=dataset, table=table
    )


def dataset_scores(wildcards):
    """CAM scores of every explained model, fold and method of one dataset."""
    return expand(
        "results/explain/{dataset}/{model}/fold{fold}/{method}/scores.parquet",
        dataset=wildcards.dataset,
        model=EXPLAIN_MODELS,
        fold=FOLDS,
        method=METHODS,
    )


def dataset_collected_scores(wildcards):
    return collected("scores", wildcards.dataset)


# --- Generalisation under shift (generalise.smk) --------------------------------------------------


def generalise_input(wildcards):
    files = data_files(wildcards.dataset)
    return {"model": f"{job_dir(TRAIN_DIR, wildcards)}/model.pt", **files}


def generalise_params(wildcards):
    """What the generalise job evaluates; the validation part is the one training held back
    (the model's own val_fraction and the seed)."""
    entry = dataset_config(wildcards.dataset)
    return {
        "corruptions": SHIFT["corruptions"],
        "severities": SHIFT["severities"],
        "max_images": SHIFT["max_images"],
        "temperature_scaling": SHIFT["temperature_scaling"],
        "ece_bins": SHIFT["ece_bins"],
        "val_fraction": training_settings(wildcards)["val_fraction"],
        "cam_methods": (
            SHIFT["cam_methods"] if wildcards.model in EXPLAIN_MODELS else []
        ),
        "cam_severity": SHIFT["cam_severity"],
        "cam_images": SHIFT["cam_images"],
        "cv": entry["cv"],
        "site_column": entry["site_column"],
        "seed": config["seed"],
        "device": config["device"],
        **(cam_layer(wildcards.model) if wildcards.model in EXPLAIN_MODELS else {}),
        **FOLDS_PER_REPEAT,
    }


def all_generalise_metrics():
    return expand(
        f"{GENERALISE_DIR}/metrics.parquet",
        dataset=DATASETS,
        model=SHIFT_MODELS,
        fold=FOLDS,
    )


def all_cam_stability():
    return [
        p.replace("metrics.parquet", "cam_stability.parquet")
        for p in all_generalise_metrics()
    ]


# --- Report: the gallery, figures and the report's categories (report.smk) ------------------------
# The report's categories in the study's order, numbered: its menu sorts them by name.
CATEGORY = {
    "data": "1. Data",
    "training": "2. Training",
    "explanations": "3. Explanations",
    "quality": "4. Explanation quality",
    "generalisation": "5. Generalisation",
    # Not "Statistics": Snakemake's report already links that name to its runtime panel, and
    # a category of the same name makes docutils print a duplicate-target warning.
    "statistics": "6. Statistical tests",
}
STATISTICS = CATEGORY["statistics"]


def gallery_input(wildcards):
    """Cams of the first explained model, every method and fold, with its predictions."""
    model = EXPLAIN_MODELS[0]
    files = data_files(wildcards.dataset)
    return {
        "images": files["images"],
        "manifest": files["manifest"],
        "predictions": expand(
            f"{TRAIN_DIR}/predictions.parquet",
            dataset=wildcards.dataset,
            model=model,
            fold=FOLDS,
        ),
        "cams": [
            p for paths in gallery_cams_by_method(wildcards).values() for p in paths
        ],
    }


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


def gallery_labels(wildcards, input):
    """Report labels of a CAM gallery: what its rows and columns are. Only the first label
    may vary between galleries: Snakemake's report turns a later label with two values into
    a toggle, which breaks the page when the galleries differ in more than that label.
    """
    from xaimed.io.integrity import read_parquet

    manifest = read_parquet(input.manifest, columns=["label", "label_name"])
    classes = manifest.drop_duplicates("label").sort_values("label")["label_name"]
    return {
        "dataset: classes (rows)": f"{wildcards.dataset}: "
        + ", ".join(map(str, classes)),
        "model": EXPLAIN_MODELS[0],
        "methods (columns)": ", ".join(METHODS),
    }


def data_summary_input(wildcards):
    return {
        "manifests": [data_files(d)["manifest"] for d in DATASETS],
        "folds": [data_files(d)["folds"] for d in DATASETS],
    }


def data_examples_input(wildcards):
    files = data_files(wildcards.dataset)
    return {"images": files["images"], "manifest": files["manifest"]}


def localisation_figure_input(wildcards):
    """Every explained model's method and baseline scores on one dataset."""
    return {
        "scores": collected("scores", wildcards.dataset),
        "baselines": collected("baselines", wildcards.dataset),
    }


# --- Statistics: what the design can show (stats.smk) ---------------------------------------------


def power_input():
    """The design of every dataset: its folds, and its manifest for the classes."""
    return {
        "folds": [data_files(d)["folds"] for d in DATASETS],
        "manifests": [data_files(d)["manifest"] for d in DATASETS],
    }


def power_params():
    """The counts the power table is computed from (not the results)."""
    return {
        "datasets": DATASETS,
        "folds": config["folds"],
        **REPEATS,
        "models": MODELS,
        "methods": METHODS if EXPLAIN_MODELS else [],
        "max_images": config["explain"]["max_images"],
        "metrics": config["stats"]["model_metrics"],
        "alpha": config["stats"]["alpha"],
        "adjust": config["stats"]["adjust"],
    }


def repeatability_maps():
    """One description (dataset, model, fold, method) per cams.npz of every explained model:
    the repeatability job pairs the images found in two or more folds' files (repeats).
    """
    return [
        {"dataset": dataset, "model": model, "fold": fold, "method": method}
        for dataset in DATASETS
        for model in EXPLAIN_MODELS
        for fold in FOLDS
        for method in METHODS
    ]


def repeatability_input():
    cams = "results/explain/{dataset}/{model}/fold{fold}/{method}/cams.npz"
    return {"cams": [cams.format(**maps) for maps in repeatability_maps()]}


def repeatability_params():
    """Which file is whose, the top-k of the localisation IoU, the seed of the baselines'
    maps and each model's target layer (the grid smooth_random is drawn on)."""
    return {
        "maps": repeatability_maps(),
        "top_k": config["quality"]["top_k"],
        "seed": config["seed"],
        "target_layers": {
            m: config["explain"]["target_layers"].get(m) for m in EXPLAIN_MODELS
        },
        "adjust": config["stats"]["adjust"],
        "alpha": config["stats"]["alpha"],
    }


# --- Targets: what rule all asks for --------------------------------------------------------------
TABLES = ["classification", "ttest_models"]
EXPLAIN_TABLES = ["confidence_increase", "xai_timing", "ttest_methods"]
REPORT_TABLES = ["data_summary", "friedman", "nemenyi", "power"]
REPORT_FIGURES = ["data", "confusion", "roc", "fold_metrics", "cd"]
EXPLAIN_FIGURES = ["confidence_increase"]
QUALITY_TABLES = [
    "localisation",
    "faithfulness",
    "sanity",
    "ttest_localisation",
    "ttest_faithfulness",
    "ttest_sanity",
    "repeatability",
    "ttest_repeatability",
]


def all_targets():
    tables = TABLES + (EXPLAIN_TABLES if EXPLAIN_MODELS else [])
    targets = expand(
        "results/tables/{table}.{ext}", table=tables, ext=["csv", "md", "html"]
    )
    if EXPLAIN_MODELS:
        targets += expand("results/figures/cams_{dataset}.png", dataset=DATASETS)
    targets += generalisation_targets()
    return targets + report_targets() + quality_targets()


def report_targets():
    """The report's extra tables, the HTML twins of all tables, and the figures."""
    tables = TABLES + (EXPLAIN_TABLES if EXPLAIN_MODELS else [])
    targets = expand("results/tables/{table}.html", table=tables)
    targets += expand(
        "results/tables/{table}.{ext}", table=REPORT_TABLES, ext=["csv", "md", "html"]
    )
    figures = REPORT_FIGURES + (EXPLAIN_FIGURES if EXPLAIN_MODELS else [])
    targets += expand(
        "results/figures/{figure}_{dataset}.png", figure=figures, dataset=DATASETS
    )
    if EXPLAIN_MODELS:
        targets.append("results/figures/xai_timing.png")
    return targets


def generalisation_targets():
    if not SHIFT_MODELS:
        return []
    tables = ["generalisation", "ttest_generalisation", "cam_stability"]
    targets = expand(
        "results/tables/{table}.{ext}", table=tables, ext=["csv", "md", "html"]
    )
    return targets + expand(
        "results/figures/generalisation_{dataset}.png", dataset=DATASETS
    )


def quality_targets():
    if not EXPLAIN_MODELS:
        return []
    return expand(
        "results/tables/{table}.{ext}", table=QUALITY_TABLES, ext=["csv", "md", "html"]
    ) + expand(
        "results/figures/{figure}_{dataset}.png",
        figure=["localisation", "repeatability"],
        dataset=DATASETS,
    )


def intermediate_targets():
    """Every file a later job reads. Snakemake rebuilds a missing intermediate only when a job
    that reads it has to run; as targets of `all`, one deleted by hand or moved aside as
    corrupt by its reader is rebuilt by a plain `snakemake`, and so is everything made from it.
    """
    files = []
    for dataset in DATASETS:
        files += data_files(dataset).values()
        files.append(f"{DATA_DIR.format(dataset=dataset)}/masks.npy")
        files.append(f"{DATA_DIR.format(dataset=dataset)}/duplicates.parquet")
        if is_phantom(dataset):
            files.append(PHANTOM_DIR.format(dataset=dataset))
    files += expand(
        f"{TRAIN_DIR}/{{name}}",
        dataset=DATASETS,
        model=MODELS,
        fold=FOLDS,
        name=["model.pt", "history.parquet", "predictions.parquet"],
    )
    stats = ["fold_metrics", "ttest_models", "friedman", "nemenyi", "ranks"]
    if EXPLAIN_MODELS:
        files += expand(
            "results/explain/{dataset}/{model}/fold{fold}/{method}/{name}",
            dataset=DATASETS,
            model=EXPLAIN_MODELS,
            fold=FOLDS,
            method=METHODS,
            name=["scores.parquet", "cams.npz", "sanity.parquet"],
        )
        files += expand(
            "results/explain/{dataset}/{model}/fold{fold}/baselines/scores.parquet",
            dataset=DATASETS,
            model=EXPLAIN_MODELS,
            fold=FOLDS,
        )
        files += collected(["scores", "sanity", "baselines"])
        stats += ["ttest_methods", "repeatability_pairs"]
    files += expand("results/stats/{name}.parquet", name=stats)
    return files + all_generalise_metrics() + all_cam_stability()
