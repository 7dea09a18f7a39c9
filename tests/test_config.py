"""The shipped configs validate against the schema, and the schema refuses typos."""

from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def _validate(config: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(config)


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "sites.yaml"])
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
