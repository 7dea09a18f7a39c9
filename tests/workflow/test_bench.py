"""The benchmark scripts run on the CPU at small sizes, so they cannot rot between the runs
that produce BENCHMARKS.md (and their built-in checks, e.g. maps equal to the library's, hold)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from xaimed.models.precision import cpu_has_bfloat16

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    if str(BENCH) not in sys.path:  # as when a script runs from bench/: siblings import
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_pipeline_bench_reports_both_throughputs():
    result = load("train_throughput").main(
        ["--model", "resnet18", "--size", "32", "--images", "16", "--batch-size", "8"]
    )
    assert result["pure_img_per_s"] > 0 and result["pipeline_img_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["pipeline_img_per_s"] / result["pure_img_per_s"])


def test_training_pipeline_bench_compares_the_memory_mapped_store_with_memory():
    result = load("train_throughput").main(
        ["--store", "--model", "resnet18", "--size", "32", "--images", "16", "--batch-size", "8"]
    )
    assert result["mmap_img_per_s"] > 0 and result["in_memory_img_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["mmap_img_per_s"] / result["in_memory_img_per_s"]
    )
    assert result["bytes_per_image"] == 3 * 32 * 32


def test_cam_stage_bench_compares_maps_with_the_library():
    rows = load("cam_stage").main(
        ["--model", "resnet18", "--size", "32", "--images", "2", "--methods", "gradcam",
         "ablationcam"]
    )  # fmt: skip
    assert set(rows) == {"gradcam", "ablationcam", "all"}
    assert rows["all"]["max_abs_map_diff"] <= 1e-4
    assert rows["ablationcam"]["speedup"] > 1  # the exact tail-only computation


def test_cam_stage_bench_times_each_part_of_the_explain_jobs():
    rows = load("cam_stage").main(
        ["--model", "resnet18", "--size", "32", "--images", "2", "--methods", "gradcam",
         "--quality"]
    )  # fmt: skip
    parts = rows["gradcam"]["parts_s_per_image"]
    assert set(parts) == {
        "cams",
        "confidence",
        "road",
        "road_imputation",
        "deletion_insertion",
        "sanity_per_checked_image",
    }
    assert all(seconds > 0 for seconds in parts.values())


def test_pooled_head_bench_times_both_and_ends_at_the_same_weights():
    result = load("pooled_head").main(
        ["--model", "vgg11", "--size", "32", "--batch-size", "4", "--steps", "1", "--no-amp"]
    )
    assert result["whole"] > 0 and result["collapsed"] > 0
    assert result["max_weight_diff"] <= 1e-4


def test_memory_format_bench_times_both_layouts_and_their_logits_agree():
    results = load("memory_format").main(
        ["--models", "resnet18", "--batch-sizes", "4", "--size", "32", "--repeats", "1"]
    )
    row = results[("resnet18", 4)]
    assert row["train_contiguous"] > 0 and row["eval_channels_last"] > 0
    assert row["max_rel_logit_diff"] < 1e-4  # same arithmetic up to summation order


@pytest.mark.skipif(not cpu_has_bfloat16(), reason="needs a CPU with native bfloat16")
def test_cpu_amp_bench_times_both_precisions_and_says_what_xaimed_takes():
    results = load("cpu_amp").main(
        ["--models", "resnet18", "mobilenet_v3_small", "--images", "8", "--size", "32"]
        + ["--batch-size", "4", "--repeats", "1"]
    )
    assert results["resnet18"]["train_float32"] > 0 and results["resnet18"]["eval_bfloat16"] > 0
    assert results["resnet18"]["xaimed_uses_bfloat16"]
    assert not results["mobilenet_v3_small"]["xaimed_uses_bfloat16"]


def test_faithfulness_bench_times_both_and_their_areas_agree():
    result = load("faithfulness").main(
        ["--model", "resnet18", "--size", "16", "--images", "3", "--steps", "4"]
        + ["--batch-size", "4", "--repeats", "1"]
    )
    assert result["plain"] > 0 and result["xaimed"] > 0
    assert result["max_auc_diff"] <= 1e-5  # the same images, batched differently


def test_road_imputation_bench_times_each_thread_count_and_the_images_agree():
    result = load("road_imputation").main(
        ["--size", "32", "--images", "2", "--threads", "1", "3", "--rounds", "1"]
    )
    assert set(result) == {1, 3}
    assert all(r["s_per_image"] > 0 and r["equal"] for r in result.values())


def test_demo_bench_summarises_a_finished_run(tiny_run, tmp_path, capsys):
    demo = load("demo")
    figures = demo.main(["--summarise", str(tiny_run), "--wall", "100", "--cores", "2"])
    out = capsys.readouterr().out
    trained = list((tiny_run / "benchmarks" / "train").rglob("*.tsv"))
    assert f"training jobs{len(trained):>30d}" in out  # every training job counted once
    assert figures["training cpu_s"] > 0 and figures["CAMs cpu_s"] > 0
    assert figures["predicted_wall_s"] == pytest.approx(demo.job_table(tiny_run)["cpu_s"].sum() / 2)
    assert set(figures["accuracy_min"]) == {"resnet18", "efficientnet_b0"}
    assert {method for _, method in figures["pointing_game"]} == {"gradcampp", "ablationcam"}
    assert "lowest held-out accuracy" in out and "centre" in out

    # --float32: the same config but training in float32, as on a CPU without bfloat16
    config = tmp_path / "config.yaml"
    config.write_text((tiny_run / "config.yaml").read_text())
    copy = yaml.safe_load(demo.float32_config(config, tmp_path).read_text())
    assert copy["training"].pop("amp") is False
    assert copy == yaml.safe_load(config.read_text())


def test_scale_bench_times_every_data_stage_and_finds_the_planted_copies(tmp_path, capsys):
    summary = load("scale").main(
        ["--n", "45", "90", "--small", "--folds", "2", "--workdir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert [row["n"] for row in summary["rows"]] == [45, 90]
    for row in summary["rows"]:
        # every planted copy (resized or recompressed) is found, and no distinct phantoms
        assert row["copies_found"] == row["copies_planted"] == 3
        assert row["false_pairs"] == []
        assert set(row["peak_rss_mb"]) == {"baseline", "ingest", "folds", "preprocess"}
        assert all(mb > 0 for mb in row["peak_rss_mb"].values())
        assert row["store_mb"] == pytest.approx(row["n"] * 3 * 224 * 224 / 2**20, abs=1e-3)
        for stage in ("baseline_s", "ingest_s", "duplicates_s", "folds_s", "preprocess_s"):
            assert row[stage] > 0
        assert row["ratio_to_baseline"] == pytest.approx(row["data_s"] / row["baseline_s"])
    assert summary["growth"]["data_s"] == pytest.approx(
        summary["rows"][1]["data_s"] / summary["rows"][0]["data_s"]
    )
    assert "growth 45 -> 90 images" in out and "/ baseline (target <= 3x)" in out
    # the first 45 images are the same files at both sizes (cached once, linked)
    first = sorted(p.name for p in (tmp_path / "n45_8").rglob("*") if "copy" not in p.name)
    assert set(first) <= {p.name for p in (tmp_path / "n90_8").rglob("*")}
