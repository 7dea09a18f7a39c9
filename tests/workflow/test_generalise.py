"""The generalise stage: its helpers, its tables and tests, and its outputs in a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats
from sklearn.metrics import f1_score

from tests.conftest import TINY, job_counts, snakemake
from xaimed.config.schema import fill_defaults
from xaimed.io import integrity
from xaimed.models.build import build_model
from xaimed.models.checkpoint import save_checkpoint
from xaimed.report.generalise_figures import (
    compare_shifts,
    generalisation_figure,
    generalisation_table,
    stability_table,
)
from xaimed.shift.corruptions import CORRUPTIONS
from xaimed.shift.generalise import (
    IN_DOMAIN,
    ShiftSettings,
    generalise,
    held_out_subset,
    validation_rows,
)
from xaimed.train.fold import split_train_val

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def shift_params(**changes) -> dict:
    """A generalise job's params as common.smk builds them: the schema's `shift` defaults, a
    dataset's fold scheme and the training and top-level keys the job takes."""
    properties = SCHEMA["properties"]
    shift = fill_defaults({}, SCHEMA, properties["shift"])
    dataset = fill_defaults({"phantom": "brain_mri"}, SCHEMA, SCHEMA["$defs"]["phantom_dataset"])
    params = {key: value for key, value in shift.items() if key != "models"}
    params.update(
        cv=dataset["cv"],
        site_column=dataset["site_column"],
        val_fraction=properties["training"]["properties"]["val_fraction"]["default"],
        seed=properties["seed"]["default"],
        device="cpu",
    )
    return {**params, **changes}


def test_shift_settings_name_what_is_wrong():
    settings = ShiftSettings.from_config(shift_params())
    assert settings.layer_path is None and settings.corruptions == tuple(CORRUPTIONS)
    with pytest.raises(ValueError, match=r"unknown CAM method\(s\) \['gradcam\+\+'\]"):
        ShiftSettings.from_config(shift_params(cam_methods=["gradcam++"]))
    with pytest.raises(ValueError, match=r"severity 4 \(shift.cam_severity\)"):
        ShiftSettings.from_config(shift_params(severities=[1, 5], cam_severity=4))
    params = shift_params(temprature_scaling=True)
    del params["ece_bins"]
    with pytest.raises(
        ValueError, match=r"unknown \['temprature_scaling'\], missing \['ece_bins'\]"
    ):
        ShiftSettings.from_config(params)


def test_cam_stability_of_the_sign_corrected_methods(tmp_path):
    """Every method `shift.cam_methods` allows runs under shift, the `_signed` ones included."""
    torch.manual_seed(0)
    model = build_model("resnet18", 2)
    save_checkpoint(tmp_path / "model.pt", model, {"model": "resnet18", "num_classes": 2})
    rng = np.random.default_rng(0)
    n = 8
    integrity.save_array(tmp_path / "images.npy", rng.integers(0, 256, (n, 3, 64, 64), np.uint8))
    manifest = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "label": [0, 1] * 4})
    integrity.write_parquet(manifest, tmp_path / "manifest.parquet")
    folds = manifest[["image_id"]].assign(fold=[0] * 4 + [1] * 4, test=False, excluded=False)
    integrity.write_parquet(folds, tmp_path / "folds.parquet")
    methods = ["gradcampp", "eigencam_signed", "eigengradcam_signed"]
    settings = ShiftSettings.from_config(
        shift_params(
            corruptions=["contrast"],
            severities=[1],
            cam_severity=1,
            cam_methods=methods,
            cam_images=4,
            temperature_scaling=False,
            layer_path="layer3",
        )
    )
    paths = [tmp_path / name for name in ("model.pt", "images.npy", "manifest.parquet")]
    paths += [tmp_path / name for name in ("folds.parquet", "metrics.parquet", "cam.parquet")]
    metrics = generalise(*paths, fold=1, settings=settings)
    assert list(metrics["shift"]) == [IN_DOMAIN, "contrast"]
    stability = pd.read_parquet(tmp_path / "cam.parquet")
    assert sorted(stability["method"].unique()) == sorted(methods)
    assert (stability.groupby("method").size() == 4).all()
    assert set(stability["image_id"]) <= {"i4", "i5", "i6", "i7"}  # fold 1's images
    kept = stability[stability["prediction_kept"]]
    assert len(kept) and kept["map_change"].between(0, 1).all()
    assert stability.loc[~stability["prediction_kept"], "map_change"].isna().all()


def test_held_out_subset_takes_the_classes_in_turn():
    labels = np.array([0] * 10 + [1] * 3)
    ids = pd.Series([f"img{i}" for i in range(13)])
    chosen = held_out_subset(ids, labels, 6)
    assert len(chosen) == 6 and np.all(np.diff(chosen) > 0)
    assert (labels[chosen] == 1).sum() == 3  # the small class is not crowded out
    assert np.array_equal(held_out_subset(ids, labels, None), np.arange(13))


def test_validation_rows_are_the_part_training_held_back():
    labels = np.repeat([0, 1, 2], 20)
    fold_of = np.tile([0, 1], 30)
    folds = pd.DataFrame({"fold": fold_of, "test": False, "excluded": False})
    val = validation_rows(folds, labels, 1, 0.15, seed=3)
    fit_rows = np.flatnonzero(fold_of != 1)
    assert np.array_equal(val, fit_rows[split_train_val(labels[fit_rows], 0.15, 3)[1]])
    assert (fold_of[val] == 0).all() and len(val) == round(0.15 * 30)
    assert len(validation_rows(folds, labels, 1, 0.0, seed=3)) == 0


def fake_metrics() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in ("a", "b"):
        for fold in range(3):
            for shift, severity in [(IN_DOMAIN, 0), ("blur", 1), ("blur", 5), ("jpeg", 5)]:
                rows.append(
                    {
                        "dataset": "d",
                        "model": model,
                        "fold": fold,
                        "cv": "kfold",
                        "shift": shift,
                        "severity": severity,
                        "n_images": 10,
                        **{m: rng.uniform() for m in ("accuracy", "f1_macro", "ece", "brier")},
                        "ece_scaled": rng.uniform(),
                        "brier_scaled": rng.uniform(),
                    }
                )
    return pd.DataFrame(rows)


def test_shift_tests_recompute_with_scipy_and_are_holm_adjusted():
    metrics = fake_metrics()
    tests = compare_shifts(metrics)
    assert len(tests) == 2 * 4 * 3  # models x metrics x shifted settings
    for row in tests.itertuples():
        g = (
            metrics[metrics["model"] == row.model]
            .set_index(["shift", "severity", "fold"])
            .sort_index()
        )
        shifted = g.loc[(row.shift, row.severity), row.metric]
        clean = g.loc[(IN_DOMAIN, 0), row.metric]
        expected = stats.ttest_rel(shifted, clean)
        assert row.mean_diff == pytest.approx((shifted - clean).mean())
        assert row.t == pytest.approx(expected.statistic) and row.p == pytest.approx(
            expected.pvalue
        )
    family = tests[(tests["model"] == "a") & (tests["metric"] == "ece")]
    smallest = family["p"].idxmin()
    assert family.loc[smallest, "p_adjusted"] == pytest.approx(min(1, 3 * family["p"].min()))


def test_generalisation_table_means_over_folds_in_shift_order(tmp_path):
    metrics = fake_metrics()
    table = generalisation_table(metrics)
    assert table["shift"].tolist()[:4] == [IN_DOMAIN, "blur", "blur", "jpeg"]
    row = table[(table["model"] == "b") & (table["shift"] == "blur") & (table["severity"] == 5)]
    source = metrics[(metrics["model"] == "b") & (metrics["shift"] == "blur")]
    source = source[source["severity"] == 5]
    assert row["accuracy"].item() == pytest.approx(source["accuracy"].mean())
    assert row["n_folds"].item() == 3 and row["n_images"].item() == 30
    generalisation_figure(table, "d", tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no generalisation results for dataset 'e'"):
        generalisation_figure(table, "e", tmp_path / "other.png")


def test_stability_table_counts_kept_predictions():
    stability = pd.DataFrame(
        {
            "dataset": "d",
            "model": "m",
            "fold": 0,
            "method": "gradcampp",
            "shift": "blur",
            "severity": 3,
            "image_id": ["x", "y", "z"],
            "pred": 0,
            "prediction_kept": [True, True, False],
            "map_change": [0.1, 0.3, np.nan],
            "map_correlation": [0.9, 0.7, np.nan],
        }
    )
    row = stability_table(stability).iloc[0]
    assert row["n_images"] == 3 and row["kept_fraction"] == pytest.approx(2 / 3)
    assert row["map_change_mean"] == pytest.approx(0.2)
    assert row["map_correlation_mean"] == pytest.approx(0.8)
    assert stability_table(stability.iloc[:0]).empty


# ----------------------------------------------------------------------------- workflow


@pytest.mark.workflow
def test_generalisation_outputs_of_the_tiny_run(tiny_run):
    shift = TINY["shift"]
    table = pd.read_csv(tiny_run / "results/tables/generalisation.csv")
    settings = 1 + len(CORRUPTIONS) * len(shift["severities"])
    assert len(table) == len(TINY["datasets"]) * len(shift["models"]) * settings
    for dataset in TINY["datasets"]:
        assert (tiny_run / f"results/figures/generalisation_{dataset}.png").stat().st_size > 0
    for name in ("ttest_generalisation", "cam_stability"):
        assert (tiny_run / f"results/tables/{name}.md").stat().st_size > 0


@pytest.mark.workflow
def test_in_domain_rows_recompute_from_the_training_predictions(tiny_run):
    """Clean held-out images give what training predicted (max_images is null in TINY)."""
    for dataset in TINY["datasets"]:
        for fold in range(TINY["folds"]):
            base = f"results/{{}}/{dataset}/resnet18/fold{fold}"
            metrics = pd.read_parquet(tiny_run / base.format("generalise") / "metrics.parquet")
            clean = metrics[metrics["shift"] == IN_DOMAIN].iloc[0]
            predictions = pd.read_parquet(tiny_run / base.format("train") / "predictions.parquet")
            y, pred = predictions["label"].to_numpy(), predictions["pred"].to_numpy()
            probs = predictions.filter(like="prob_").to_numpy()
            assert clean["n_images"] == len(predictions)
            assert clean["accuracy"] == pytest.approx((y == pred).mean())
            assert clean["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
            brier = ((probs - np.eye(probs.shape[1])[y]) ** 2).sum(1).mean()
            assert clean["brier"] == pytest.approx(brier, abs=1e-5)
            assert clean["temperature"] > 0 and np.isfinite(clean["ece_scaled"])


@pytest.mark.workflow
def test_shift_tests_recompute_from_the_per_fold_metrics(tiny_run):
    metrics = pd.concat(
        pd.read_parquet(p) for p in (tiny_run / "results/generalise").rglob("metrics.parquet")
    )
    tests = pd.read_csv(tiny_run / "results/tables/ttest_generalisation.csv")
    for row in tests[tests["metric"] == "accuracy"].itertuples():
        g = (
            metrics[metrics["dataset"] == row.dataset]
            .set_index(["shift", "severity", "fold"])
            .sort_index()
        )
        diff = g.loc[(row.shift, row.severity), "accuracy"] - g.loc[(IN_DOMAIN, 0), "accuracy"]
        assert row.mean_diff == pytest.approx(diff.mean())
        assert row.n == TINY["folds"]


@pytest.mark.workflow
def test_cam_stability_is_measured_where_the_prediction_survives(tiny_run):
    shift = TINY["shift"]
    for path in (tiny_run / "results/generalise").rglob("cam_stability.parquet"):
        stability = pd.read_parquet(path)
        assert set(stability["method"]) == set(shift["cam_methods"])
        assert set(stability["shift"]) == set(CORRUPTIONS)
        assert (stability["severity"] == shift["cam_severity"]).all()
        kept = stability["prediction_kept"]
        assert stability.loc[kept, "map_change"].between(0, 1).all()
        assert stability.loc[~kept, "map_change"].isna().all()


def test_leave_site_out_demo_config_dry_run(tmp_path):
    config = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(tmp_path, "--dry-run"))
    n_folds, n_data = config["folds"], len(config["datasets"])
    assert counts["train"] == counts["generalise"] == n_data * n_folds
    assert counts["generalisation_figure"] == n_data and "cams" not in counts
