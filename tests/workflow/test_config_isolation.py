"""Results are kept per config: a run with other config files into results/ made by one config
is refused before any job (real Snakemake runs; xaimed.config.record)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, snakemake

pytestmark = pytest.mark.workflow

# one phantom dataset, ingested only: the cheapest real run that writes results/
SMALL = {
    "folds": 2,
    "image_size": 32,
    "datasets": {"brain_mri": {"phantom": "brain_mri", "n_per_class": 4, "phantom_size": 32}},
    "models": ["resnet18"],
    "explain": {"models": ["resnet18"], "methods": ["gradcampp"], "allow_coarse": True},
    "shift": {"models": []},
}
MANIFEST = "results/data/brain_mri/manifest.parquet"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("study")
    (workdir / "config.yaml").write_text(yaml.safe_dump(SMALL))
    snakemake(workdir, MANIFEST)
    return workdir


def _outputs(workdir: Path) -> dict[str, int]:
    return {
        p.relative_to(workdir).as_posix(): p.stat().st_mtime_ns
        for p in (workdir / "results").rglob("*")
        if p.is_file()
    }


def test_the_first_run_records_its_config_file_relative_to_the_study(study):
    record = yaml.safe_load((study / "results" / "config_files.yaml").read_text())
    assert record == {"configfiles": ["config.yaml"]}


def test_a_dry_run_records_nothing(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(SMALL))
    snakemake(tmp_path, "-n", MANIFEST)
    assert not (tmp_path / "results" / "config_files.yaml").exists()


def test_another_config_into_the_same_results_is_refused_before_any_job(study):
    before = _outputs(study)
    # the README's situation: a command without --configfile (the demo config)
    output = snakemake(study, MANIFEST, "--forcerun", "phantom", config="", ok=False)
    assert "refusing" in output
    assert "config.yaml" in output and str(REPO / "config" / "config.yaml") in output
    assert "--configfile config.yaml" in output  # what to pass to continue the study
    assert "--directory" in output  # or where to run the other config
    assert "Job stats" not in output  # refused before any job was planned
    assert _outputs(study) == before  # nothing computed was lost or replaced


def test_two_config_files_where_one_was_recorded_are_refused(study):
    (study / "extra.yaml").write_text(yaml.safe_dump({"seed": 1}))
    try:
        output = snakemake(study, "-n", "--configfile", "config.yaml", "extra.yaml", ok=False)
    finally:
        (study / "extra.yaml").unlink()
    assert "refusing" in output and "extra.yaml" in output


def test_editing_the_recorded_config_reruns_normally(study):
    config = study / "config.yaml"
    original = config.read_text()
    config.write_text(
        yaml.safe_dump(
            {
                **SMALL,
                "datasets": {"brain_mri": {**SMALL["datasets"]["brain_mri"], "n_per_class": 5}},
            }
        )
    )
    try:
        output = snakemake(study, "-n", MANIFEST)
    finally:
        config.write_text(original)
    assert "refusing" not in output
    assert "phantom" in output.split("Job stats:")[-1]  # the changed phantom is remade


def test_another_study_in_its_own_directory_runs_with_relative_dataset_paths(study, tmp_path):
    # the advice the refusal gives: --directory (the conftest helper passes --snakefile and
    # --directory), with the other study's data given relative to its own directory
    other = tmp_path / "other"
    (other / "data" / "scans" / "a").mkdir(parents=True)
    (other / "data" / "scans" / "b").mkdir(parents=True)
    from tests.conftest import write_folder_dataset

    write_folder_dataset(other / "data" / "scans", {"a": 4, "b": 4}, size=32, masks=False)
    config = {**SMALL, "datasets": {"scans": {"format": "imagefolder", "path": "data/scans"}}}
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(other, "results/data/scans/manifest.parquet")
    assert (other / "results" / "data" / "scans" / "manifest.parquet").exists()
    assert yaml.safe_load((other / "results" / "config_files.yaml").read_text()) == {
        "configfiles": ["config.yaml"]
    }
    assert not (study / "results" / "data" / "scans").exists()
