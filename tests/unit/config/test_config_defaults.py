"""The schema is the only home of defaults: a minimal dataset entry's params come out with
every default of workflow/schemas/config.schema.yaml filled, and changing a default in a copy
of the schema changes the params (so no other file holds one of its own)."""

from __future__ import annotations

import copy
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from xaimed.config.schema import fill_defaults
from xaimed.data.folds import assign_folds
from xaimed.data.phantoms.generate import write_phantom_dataset

REPO = Path(__file__).resolve().parents[3]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())

# Appended to a copy of the Snakefile: the params of every dataset, as the rules get them.
DUMP = """

import json as _json
from types import SimpleNamespace as _Wildcards

_params = {}
for _dataset in DATASETS:
    _w = _Wildcards(dataset=_dataset, model=MODELS[0], fold="0")
    _params[_dataset] = {
        "phantom": phantom_params(_w) if is_phantom(_dataset) else None,
        "ingest": ingest_params(_w),
        "folds": folds_params(_w),
        "generalise": generalise_params(_w),
    }
with open("params.json", "w") as _handle:
    _json.dump(_params, _handle)
"""

MINIMAL = {
    "datasets": {
        "phantom": {"phantom": "brain_mri"},
        "folder": {"format": "imagefolder", "path": "data"},
        "table": {"format": "csv", "path": "table.csv"},
    },
    "models": ["resnet18"],
    "explain": {"models": ["resnet18"]},
    "shift": {"models": ["resnet18"]},
}

# A dataset default -> another value the schema allows.
CHANGED = {
    ("phantom_dataset", "n_per_class"): 7,
    ("phantom_dataset", "phantom_size"): 64,
    ("phantom_dataset", "sites"): 3,
    ("folder_dataset", "mask_suffix"): "_seg",
    ("folder_dataset", "label_map"): {"a": "b"},
    ("folder_dataset", "on_bad_image"): "fail",
    ("folder_dataset", "near_duplicate_distance"): 2,
    ("folder_dataset", "path_column"): "file",
    ("folder_dataset", "label_column"): "class",
    ("duplicates", None): "report",
    ("cv", None): "leave_site_out",
    ("site_column", None): "hospital",
}


def _default(schema: dict, definition: str, key: str | None):
    node = schema["$defs"][definition]
    return node["default"] if key is None else node["properties"][key]["default"]


def _params(tmp_path: Path, schema: dict) -> dict:
    """The params of MINIMAL's datasets from a real Snakemake dry run of a copy of the
    workflow whose schema is ``schema``."""
    workflow = tmp_path / "workflow_copy"
    shutil.copytree(REPO / "workflow", workflow / "workflow")
    (workflow / "src").symlink_to(REPO / "src")
    (workflow / "workflow/schemas/config.schema.yaml").write_text(yaml.safe_dump(schema))
    (workflow / "Snakefile").write_text((REPO / "Snakefile").read_text() + DUMP)
    study = tmp_path / "study"
    (study / "data").mkdir(parents=True)
    (study / "table.csv").write_text("path,label\n")
    (study / "config.yaml").write_text(yaml.safe_dump(MINIMAL))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(workflow / "Snakefile")]
        + ["--configfile", "config.yaml", "--cores", "1", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=study,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads((study / "params.json").read_text())


def _expected(schema: dict) -> dict:
    """What each dataset's params must hold with ``schema``'s defaults."""
    shift = schema["properties"]["shift"]["properties"]
    cv = _default(schema, "cv", None)
    folds = {"cv": cv, "group_duplicates": _default(schema, "duplicates", None) == "group"}
    if cv == "leave_site_out":
        folds["site_column"] = _default(schema, "site_column", None)
    ingest = {
        key: _default(schema, "folder_dataset", key)
        for key in ("mask_suffix", "label_map", "on_bad_image", "near_duplicate_distance")
    }
    generalise = {
        "cv": cv,
        "site_column": _default(schema, "site_column", None),
        **{key: shift[key]["default"] for key in ("corruptions", "severities", "cam_images")},
        **{key: shift[key]["default"] for key in ("ece_bins", "cam_severity", "max_images")},
    }
    csv = {key: _default(schema, "folder_dataset", key) for key in ("path_column", "label_column")}
    phantom = {
        "n_per_class": _default(schema, "phantom_dataset", "n_per_class"),
        "image_size": _default(schema, "phantom_dataset", "phantom_size"),
    }
    sites = _default(schema, "phantom_dataset", "sites")
    if sites > 1:
        phantom["sites"] = sites
    return {
        "phantom": {"phantom": phantom, "ingest": ingest, "folds": folds, "generalise": generalise},
        "folder": {"ingest": ingest, "folds": folds, "generalise": generalise},
        "table": {"ingest": {**ingest, **csv}, "folds": folds, "generalise": generalise},
    }


def _check(params: dict, expected: dict) -> None:
    for dataset, stages in expected.items():
        for stage, values in stages.items():
            found = params[dataset][stage]
            assert {key: found.get(key) for key in values} == values, (dataset, stage)
    assert "sites" in params["phantom"]["phantom"] or "sites" not in expected["phantom"]["phantom"]
    # csv's column options go to csv datasets only
    assert not {"path_column", "label_column"} & set(params["folder"]["ingest"])


def test_a_minimal_dataset_entry_gets_every_schema_default_and_a_changed_default_follows(
    tmp_path,
):
    _check(_params(tmp_path / "shipped", SCHEMA), _expected(SCHEMA))
    changed = copy.deepcopy(SCHEMA)
    for (definition, key), value in CHANGED.items():
        node = changed["$defs"][definition]
        (node if key is None else node["properties"][key])["default"] = value
    expected = _expected(changed)
    assert expected != _expected(SCHEMA)
    _check(_params(tmp_path / "changed", changed), expected)


def test_fill_defaults_fills_the_matching_alternative_only_and_follows_refs():
    config = copy.deepcopy(MINIMAL)
    fill_defaults(config, SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(config)  # no key of the other alternative
    phantom, folder = config["datasets"]["phantom"], config["datasets"]["folder"]
    for definition, entry in (("phantom_dataset", phantom), ("folder_dataset", folder)):
        properties = SCHEMA["$defs"][definition]["properties"]
        for key, node in properties.items():
            ref = node.get("$ref", "").removeprefix("#/$defs/")
            default = node.get("default", SCHEMA["$defs"].get(ref, {}).get("default"))
            if default is not None:
                assert entry[key] == default, (definition, key)
    assert "n_per_class" not in folder and "on_bad_image" not in phantom
    assert config["training"]["augment"]["hflip"] is False  # nested defaults too
    # a value given is kept
    given = fill_defaults({"datasets": {"p": {"phantom": "brain_mri", "cv": "predefined"}}}, SCHEMA)
    assert given["datasets"]["p"]["cv"] == "predefined"


def test_ingest_options_take_the_schemas_defaults_and_name_a_wrong_or_unused_key(caplog):
    from xaimed.data.ingest import IngestOptions

    options = IngestOptions.with_defaults(format="csv")
    folder = SCHEMA["$defs"]["folder_dataset"]["properties"]
    for key in ("mask_suffix", "label_map", "on_bad_image", "near_duplicate_distance"):
        assert getattr(options, key) == folder[key]["default"], key
    assert options.lister_options("t") == {
        "path_column": folder["path_column"]["default"],
        "label_column": folder["label_column"]["default"],
    }
    with pytest.raises(ValueError, match=r"unknown \['mask_sufix'\], missing \['mask_suffix'\]"):
        params = {key: getattr(options, key) for key in IngestOptions.REQUIRED}
        del params["mask_suffix"]
        IngestOptions.from_config({**params, "mask_sufix": "_seg"})
    with pytest.raises(ValueError, match="unknown ingest option"):
        IngestOptions.with_defaults(group_regex="(.*)")
    imagefolder = IngestOptions.with_defaults(group_column="patient", mask_dir="masks")
    with caplog.at_level("WARNING", logger="xaimed.data"):
        assert imagefolder.lister_options("mine") == {
            "mask_suffix": folder["mask_suffix"]["default"],
            "mask_dir": "masks",
        }
    assert "dataset mine: format imagefolder does not use ['group_column']" in caplog.text


def test_library_conveniences_default_to_the_schemas_values():
    # assign_folds and write_phantom_dataset keep defaults for direct library use (the workflow
    # passes every argument): they must be the schema's, not a second opinion.
    defs, top = SCHEMA["$defs"], SCHEMA["properties"]
    folds = inspect.signature(assign_folds).parameters
    assert folds["cv"].default == defs["cv"]["default"]
    assert folds["site_column"].default == defs["site_column"]["default"]
    assert folds["seed"].default == top["seed"]["default"]
    assert folds["repeats"].default == top["repeats"]["default"]
    phantom = inspect.signature(write_phantom_dataset).parameters
    entry = defs["phantom_dataset"]["properties"]
    assert phantom["image_size"].default == entry["phantom_size"]["default"]
    assert phantom["sites"].default == entry["sites"]["default"]
    assert phantom["seed"].default == top["seed"]["default"]
