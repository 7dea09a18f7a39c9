"""Vision transformers in the DAG: a dry run that trains and explains ViT-B/16 and Swin-T."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO, job_counts, snakemake

pytestmark = pytest.mark.workflow


def test_dry_run_trains_and_explains_vit_and_swin(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["image_size"] = 64  # ViT-B/16: 4x4 patches; Swin-T's features.5: 4x4
    config["models"] = ["resnet50", "vit_b_16", "swin_t"]
    config["explain"]["models"] = ["vit_b_16", "swin_t"]
    config["explain"]["target_layers"] = {"swin_t": "features.5"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(tmp_path, "-n")
    counts = job_counts(output)
    folds, datasets = config["folds"], len(config["datasets"])
    assert counts["train"] == 3 * datasets * folds
    assert counts["cams"] == counts["scores"] == 2 * datasets * folds
    assert "CAM target layer of vit_b_16: the default of" in output
    assert "CAM target layer of swin_t: features.5" in output
    for model in ("vit_b_16", "swin_t"):
        assert f"results/explain/brain_mri/{model}/fold0/layercam/scores.parquet" in output
