"""The shipped configs validate against the schema, and the schema refuses typos."""

from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def _validate(config: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(config)


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "sites.yaml", "repeatability.yaml"])
def test_shipped_configs_are_valid(name):
    _validate(yaml.safe_load((REPO / "config" / name).read_text()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(fold=3), "'fold' was unexpected"),
        (lambda c: c["training"].update(learning_rate=0.1), "'learning_rate' was unexpected"),
        (lambda c: c["explain"].update(methods=["gradcam++"]), "'gradcam++' is not one of"),
        (lambda c: c["datasets"].update(x={"phantom": "knee_mri"}), "is not valid under any"),
        (lambda c: c.update(folds=1), "1 is less than the minimum of 2"),
        (lambda c: c["quality"]["sanity"].update(stage=[1]), "'stage' was unexpected"),
        (lambda c: c["quality"].update(top_k=0), "0 is less than or equal to the minimum"),
        (
            lambda c: c["explain"].update(target_layers={"resnet50": "layer 3"}),
            "'layer 3' does not match",
        ),
        (lambda c: c["explain"].update(target_layers=["layer3"]), "is not of type 'object'"),
    ],
)
def test_typos_and_bad_values_are_refused(change, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    change(config)
    with pytest.raises(jsonschema.ValidationError, match=message.replace("+", r"\+")):
        _validate(config)


def _enums(node, path=()):
    """(key path, values) of every enum written in the schema (a $ref is not followed: each
    enum is found where it is defined)."""
    if isinstance(node, dict):
        if "enum" in node:
            yield "/".join(path), node["enum"]
        for key, value in node.items():
            yield from _enums(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _enums(value, (*path, str(index)))


def _registries() -> dict:
    from xaimed.data.folds import CV_SCHEMES
    from xaimed.data.formats import LISTERS
    from xaimed.data.ingest import BAD_IMAGE_ACTIONS
    from xaimed.data.phantoms.generate import PHANTOM_CLASSES
    from xaimed.explain.cams import CAM_METHODS
    from xaimed.shift.corruptions import CORRUPTIONS
    from xaimed.stats.compare import ADJUSTMENTS, FOLD_METRICS
    from xaimed.train.trainer import KEPT_EPOCHS, OPTIMIZERS, SCHEDULERS

    training = "properties/training/properties"
    override = f"{training}/models/additionalProperties/properties"
    return {
        "$defs/cam_method": CAM_METHODS,
        "$defs/phantom_dataset/properties/phantom": PHANTOM_CLASSES,
        "$defs/folder_dataset/properties/format": LISTERS,
        "$defs/folder_dataset/properties/on_bad_image": BAD_IMAGE_ACTIONS,
        "$defs/cv": CV_SCHEMES,
        f"{training}/optimizer": OPTIMIZERS,
        f"{override}/optimizer": OPTIMIZERS,
        f"{training}/scheduler": SCHEDULERS,
        f"{override}/scheduler": SCHEDULERS,
        f"{training}/keep": KEPT_EPOCHS,
        f"{override}/keep": KEPT_EPOCHS,
        "properties/stats/properties/model_metrics/items": FOLD_METRICS,
        "properties/stats/properties/adjust": ADJUSTMENTS,
        "properties/shift/properties/corruptions/items": CORRUPTIONS,
    }


# Enums that no registry lists: the code that reads them compares with their values.
WITHOUT_REGISTRY = {
    "$defs/duplicates": "common.smk folds_params: group or not",
    "properties/device": "xaimed.io.runtime.select_device",
}


def test_every_schema_enum_equals_the_registry_it_mirrors():
    registries = _registries()
    found = dict(_enums(SCHEMA))
    assert set(found) == set(registries) | set(WITHOUT_REGISTRY), "an enum without a registry"
    for path, registry in registries.items():
        assert sorted(found[path]) == sorted(registry), path
        assert len(set(found[path])) == len(found[path]), path
    # Both lists of CAM methods name the one definition.
    for section, key in (("explain", "methods"), ("shift", "cam_methods")):
        items = SCHEMA["properties"][section]["properties"][key]["items"]
        assert items == {"$ref": "#/$defs/cam_method"}, section


def test_the_severity_range_is_the_corruptions():
    from xaimed.shift.corruptions import MAX_SEVERITY, SEVERITIES

    shift = SCHEMA["properties"]["shift"]["properties"]
    for node in (shift["severities"]["items"], shift["cam_severity"]):
        assert (node["minimum"], node["maximum"]) == (1, MAX_SEVERITY)
    assert all(len(levels) == MAX_SEVERITY for levels in SEVERITIES.values())
