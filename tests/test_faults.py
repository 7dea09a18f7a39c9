"""Faults of the machine and the files on real Snakemake runs of the tiny config: a corrupt or
deleted intermediate is rebuilt by a plain rerun with everything made from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import job_counts, snakemake
from xaimed import integrity

PREDICTIONS = "results/train/brain_mri/resnet18/fold0/predictions.parquet"


def _tables(workdir: Path) -> dict[str, bytes]:
    """The result tables that a rerun reproduces byte for byte (xai_timing measures seconds)."""
    tables = sorted((workdir / "results" / "tables").glob("*.*"))
    assert tables
    return {t.name: t.read_bytes() for t in tables if not t.name.startswith("xai_timing")}


@pytest.mark.workflow
def test_a_corrupt_or_deleted_intermediate_is_rebuilt_by_a_plain_rerun(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)  # a copy: the shared run stays intact
    path = workdir / PREDICTIONS
    before = integrity.read_parquet(path)
    data = bytearray(path.read_bytes())
    for where in (0.3, 0.31):  # two bytes in the data pages (the footer is at the end)
        data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))
    probe = tmp_path / "probe.parquet"
    probe.write_bytes(bytes(data))
    with pytest.raises(integrity.CorruptFileError):
        integrity.read_parquet(probe)

    # Newer than what was made from it: its readers rerun, and the first to read it fails.
    output = snakemake(workdir, ok=False)
    assert f"{PREDICTIONS} is truncated or corrupt" in output
    assert "the next `snakemake` run rebuilds it and everything made from it" in output
    assert not path.exists() and path.with_name(path.name + ".corrupt").is_file()

    # No target named: the training is rerun, and everything made from its predictions.
    counts = job_counts(snakemake(workdir))
    assert counts["train"] == counts["fold_metrics"] == 1
    assert counts["explain"] == counts["cam_gallery"] == 1
    assert "Nothing to be done" in snakemake(workdir, "--dry-run")
    pd.testing.assert_frame_equal(integrity.read_parquet(path), before, check_exact=True)
    assert _tables(workdir) == _tables(tiny_run)

    # Deleted by hand: intermediates whose readers' outputs all exist.
    for name in ("results/stats/fold_metrics.parquet", "results/explain/lesions/sanity.parquet"):
        (workdir / name).unlink()
    counts = job_counts(snakemake(workdir))
    assert counts["fold_metrics"] == counts["collect_explanations"] == 1
    assert counts["classification_table"] == counts["quality_tables"] == 1
    assert "train" not in counts and "explain" not in counts
    assert "Nothing to be done" in snakemake(workdir, "--dry-run")
    assert _tables(workdir) == _tables(tiny_run)
