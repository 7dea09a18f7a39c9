"""Real Snakemake runs of the real DAG on a tiny config in a temporary directory."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)
from scipy import stats

from tests.conftest import SMALLEST, TINY, job_counts, snakemake
from xaimed.models.checkpoint import load_checkpoint
from xaimed.models.inputs import normalize

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.workflow


def test_every_contract_output_exists(tiny_run):
    tables = ["classification", "ttest_models", "confidence_increase", "xai_timing"]
    tables += ["localisation", "faithfulness", "sanity"]
    tables += ["ttest_localisation", "ttest_faithfulness", "ttest_sanity"]
    for table in tables:
        for suffix in (".csv", ".md"):
            assert (tiny_run / "results" / "tables" / f"{table}{suffix}").stat().st_size > 0
    for dataset in TINY["datasets"]:
        assert (tiny_run / f"results/figures/cams_{dataset}.png").stat().st_size > 0
        assert (tiny_run / f"results/figures/localisation_{dataset}.png").stat().st_size > 0
        data = tiny_run / "results" / "data" / dataset
        for name in ("manifest.parquet", "folds.parquet", "images.npy", "masks.npy"):
            assert (data / name).exists()
        for model in TINY["models"]:
            for fold in range(TINY["folds"]):
                train = tiny_run / f"results/train/{dataset}/{model}/fold{fold}"
                for name in ("model.pt", "history.parquet", "predictions.parquet"):
                    assert (train / name).exists()
                baselines = f"results/explain/{dataset}/{model}/fold{fold}/baselines"
                assert (tiny_run / baselines / "scores.parquet").exists()
                for method in TINY["explain"]["methods"]:
                    explain = tiny_run / f"results/explain/{dataset}/{model}/fold{fold}/{method}"
                    assert (explain / "scores.parquet").exists() and (explain / "cams.npz").exists()
                    assert (explain / "sanity.parquet").exists()
    for log in (tiny_run / "logs" / "train").rglob("*.log"):
        assert "epoch 1/1" in log.read_text()


def test_predictions_cover_every_image_exactly_once(tiny_run):
    for dataset in TINY["datasets"]:
        manifest = pd.read_parquet(tiny_run / f"results/data/{dataset}/manifest.parquet")
        folds = pd.read_parquet(tiny_run / f"results/data/{dataset}/folds.parquet")
        for model in TINY["models"]:
            predictions = pd.concat(
                pd.read_parquet(
                    tiny_run / f"results/train/{dataset}/{model}/fold{fold}/predictions.parquet"
                )
                for fold in range(TINY["folds"])
            )
            assert sorted(predictions["image_id"]) == sorted(manifest["image_id"])
            held_out = folds.set_index("image_id")["fold"]
            assert (predictions["fold"].to_numpy() == held_out[predictions["image_id"]]).all()


def test_model_ttests_recompute_from_the_fold_metrics(tiny_run):
    fold_metrics = pd.read_parquet(tiny_run / "results/stats/fold_metrics.parquet")
    table = pd.read_csv(tiny_run / "results/tables/ttest_models.csv")
    assert len(table) == len(TINY["datasets"]) * 2  # one model pair, two metrics
    for row in table.itertuples():
        pivot = fold_metrics[fold_metrics["dataset"] == row.dataset].pivot(
            index="fold", columns="model", values=row.metric
        )
        diff = pivot[row.model_a] - pivot[row.model_b]
        assert row.mean_diff == pytest.approx(diff.mean())
        expected = stats.ttest_rel(pivot[row.model_a], pivot[row.model_b])
        if np.isfinite(expected.pvalue):
            assert row.p == pytest.approx(expected.pvalue)
    classification = pd.read_csv(tiny_run / "results/tables/classification.csv")
    mean = fold_metrics.groupby(["dataset", "model"])["accuracy"].mean()
    for row in classification.itertuples():
        assert row.accuracy_mean == pytest.approx(mean[(row.dataset, row.model)])


def test_confidence_increase_recomputes_with_pytorch_grad_cam(tiny_run):
    train = tiny_run / "results/train/brain_mri/resnet18/fold0"
    explain = tiny_run / "results/explain/brain_mri/resnet18/fold0/gradcampp"
    model, meta = load_checkpoint(train / "model.pt")
    scores = pd.read_parquet(explain / "scores.parquet")
    cams = np.load(explain / "cams.npz")
    manifest = pd.read_parquet(tiny_run / "results/data/brain_mri/manifest.parquet")
    images = np.load(tiny_run / "results/data/brain_mri/images.npy")
    first = scores.iloc[0]
    row = manifest.index[manifest["image_id"] == first["image_id"]][0]
    x = normalize(torch.from_numpy(images[row : row + 1]))
    with GradCAMPlusPlus(model=model, target_layers=[model.layer4[-1]]) as cam:
        grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(first["pred"]))])
    stored = cams["cams"][list(cams["image_id"]).index(first["image_id"])]
    assert np.abs(stored - grayscale[0]).max() < 1e-4  # float32, as computed
    change = CamMultImageConfidenceChange()(
        x, grayscale, [ClassifierOutputSoftmaxTarget(int(first["pred"]))], model
    )
    assert first["confidence_increase"] == pytest.approx(float(change[0]), abs=1e-5)
    assert meta["dataset"] == "brain_mri" and meta["fold"] == 0


def test_second_run_has_nothing_to_do(tiny_run):
    assert "Nothing to be done" in snakemake(tiny_run, "--dry-run")


def test_a_deleted_scores_file_reruns_its_folds_scores_job_only(tiny_run):
    """One scores job per model and fold writes every method's scores and the baselines from
    the stored maps: no CAM is recomputed."""
    explained = "results/explain/lesions/efficientnet_b0/fold1"
    target = f"{explained}/ablationcam/scores.parquet"
    outputs = [p for p in (tiny_run / "results").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    (tiny_run / target).unlink()
    output = snakemake(tiny_run, target)
    assert job_counts(output) == {"scores": 1, "total": 1}
    changed = {
        p.relative_to(tiny_run).as_posix() for p in outputs if p.stat().st_mtime_ns != before[p]
    }
    names = ("scores.parquet", "sanity.parquet")
    methods = TINY["explain"]["methods"]
    assert changed == {f"{explained}/{m}/{name}" for m in methods for name in names} | {
        target,
        f"{explained}/baselines/scores.parquet",
    }


def test_default_config_dry_run_lists_the_study(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    n_data, n_models = len(config["datasets"]), len(config["models"])
    n_folds = config["folds"]
    n_explained = len(config["explain"]["models"])
    counts = job_counts(snakemake(tmp_path, "--dry-run", config=""))
    assert counts["train"] == n_data * n_models * n_folds
    # every method in one cams job and one scores job per model and fold
    assert counts["cams"] == counts["scores"] == n_data * n_explained * n_folds
    per_dataset = ["phantom", "ingest", "folds", "preprocess", "collect_explanations"]
    for rule in [*per_dataset, "cam_gallery", "localisation_figure"]:
        assert counts[rule] == n_data
    for rule in (
        "fold_metrics",
        "compare_models",
        "compare_methods",
        "classification_table",
        "power",
    ):
        assert counts[rule] == 1
    assert counts["quality_tables"] == 1


def test_a_chosen_target_layer_reaches_every_cam_job(tmp_path):
    """explain.target_layers is applied by cams and scores (the maps and the sanity check) and
    by the CAM stability under shift; the model-free baselines ignore it."""
    config = copy.deepcopy(SMALLEST)
    config["explain"].update(methods=["layercam"], max_images=4)
    config["shift"].update(cam_methods=["layercam"], cam_images=2)
    config["quality"]["sanity"]["images"] = 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    fold = "brain_mri/resnet18/fold0"
    snakemake(
        tmp_path,
        f"results/explain/{fold}/layercam/scores.parquet",
        f"results/explain/{fold}/baselines/scores.parquet",
        f"results/generalise/{fold}/cam_stability.parquet",
    )
    for log in (f"logs/cams/{fold}.log", f"logs/generalise/{fold}.log"):
        assert "at layer layer2 " in (tmp_path / log).read_text(), log
    model, _ = load_checkpoint(tmp_path / f"results/train/{fold}/model.pt")
    stored = np.load(tmp_path / f"results/explain/{fold}/layercam/cams.npz")
    manifest = pd.read_parquet(tmp_path / "results/data/brain_mri/manifest.parquet")
    images = np.load(tmp_path / "results/data/brain_mri/images.npy")
    rows = [manifest.index[manifest["image_id"] == i][0] for i in stored["image_id"]]
    x = normalize(torch.from_numpy(images[rows]))
    targets = [ClassifierOutputTarget(int(t)) for t in stored["target"]]
    with LayerCAM(model=model, target_layers=[model.layer2]) as cam:
        expected = cam(input_tensor=x, targets=targets)
    assert np.abs(stored["cams"] - expected).max() < 1e-4  # stored as computed, float32
    assert len(pd.read_parquet(tmp_path / f"results/explain/{fold}/layercam/sanity.parquet"))
