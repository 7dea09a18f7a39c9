"""Loading config files and checking them against the JSON schema."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "ConfigError",
    "canonical",
    "check_config_files",
    "config_problems",
    "fill_defaults",
    "load_config_file",
    "load_schema",
    "schema_defaults",
]


#: The workflow's schema, beside the library in a checkout: the only home of the defaults.
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow/schemas/config.schema.yaml"


class ConfigError(ValueError):
    """The config breaks the schema or names something that does not exist."""


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML, and so
    Snakemake, keeps the last one without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} is given twice (first on line {first[key] + 1})",
                        key_node.start_mark,
                    )
                first[key] = key_node.start_mark.line
            except TypeError:
                pass  # an unhashable key: the constructor below names it
        return super().construct_mapping(node, deep)


def load_config_file(path: str | Path) -> Any:
    """A config file read strictly: a syntax error or a key given twice raises
    :class:`ConfigError` naming the file, line and column."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        context = error.context or ""
        if context and error.context_mark and error.context_mark.line != mark.line:
            context += f" (from line {error.context_mark.line + 1})"
        what = "; ".join(x for x in (context, str(error.problem or "")) if x)
        raise ConfigError(f"{where}: {what}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {error}") from None


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Read each config file strictly (see :func:`load_config_file`); Snakemake's own reading
    names neither file nor line, and takes a key given twice silently. A missing file is left
    to Snakemake, whose message names it."""
    problems = []
    for path in paths:
        if not Path(path).is_file():
            continue
        try:
            load_config_file(path)
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("\n".join(problems))


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, at any depth (lists keep their order).

    Snakemake compares a job's params by their ``repr``, and a dict's repr follows insertion
    order: without this, the same config with its keys in another order (re-saved by another
    YAML writer, or a default written out) would rerun every job.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def key_path(parts: Iterable[Any]) -> str:
    """('training', 'augment', 'zoom') -> training.augment.zoom; list items as [i]."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _resolve(schema: dict, root: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def describe(schema: dict, root: dict) -> str:
    """What a schema accepts, in words: 'one of adamw, adam, sgd', 'an integer >= 2', ..."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " or ".join(describe(option, root) for option in schema[combinator])
    kind = schema.get("type")
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true or false"
    if kind in ("integer", "number"):
        text = "an integer" if kind == "integer" else "a number"
        bounds = [
            (">=", "minimum"),
            (">", "exclusiveMinimum"),
            ("<=", "maximum"),
            ("<", "exclusiveMaximum"),
        ]
        limits = [f"{sign} {schema[key]}" for sign, key in bounds if key in schema]
        return f"{text} {' and '.join(limits)}" if limits else text
    if kind == "string":
        return f"a string matching {schema['pattern']}" if "pattern" in schema else "a string"
    if kind == "array":
        text = "a list"
        if "minItems" in schema:
            text += f" of at least {schema['minItems']}"
        if schema.get("uniqueItems"):
            text += " distinct"
        text += " items"
        if "items" in schema:
            text += f", each {describe(schema['items'], root)}"
        return text
    if kind == "object" or "properties" in schema:
        keys = list(schema.get("properties", {}))
        required = [k for k in keys if k in schema.get("required", [])]
        optional = [k for k in keys if k not in required]
        if not keys:
            return "a mapping"
        text = "a mapping with keys " + ", ".join(required) if required else "a mapping"
        return text + (f" (optional: {', '.join(optional)})" if optional else "")
    return "see workflow/schemas/config.schema.yaml"


def _branch_errors(
    error: jsonschema.ValidationError, root: dict
) -> list[jsonschema.ValidationError]:
    """For a failed oneOf over mappings (a dataset entry): the errors of the alternative the
    entry meant, i.e. whose required keys it has (phantom, or format + path)."""
    branches: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    if not isinstance(error.instance, dict) or not branches:
        return []
    for index, option in enumerate(error.validator_value):
        required = _resolve(option, root).get("required", [])
        if required and all(key in error.instance for key in required[:1]):
            return branches.get(index, [])
    return []


def _messages(error: jsonschema.ValidationError, root: dict) -> list[str]:
    where = key_path(error.absolute_path)
    value = error.instance
    if error.validator == "additionalProperties":
        allowed = list(_resolve(error.schema, root).get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        return [
            f"{key_path([*error.absolute_path, key])}: unknown key; allowed keys here: "
            f"{', '.join(allowed) or '(none)'}"
            for key in extra
        ] or [f"{where}: {error.message}"]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in value]
        return [
            f"{key_path([*error.absolute_path, key])}: required key is missing" for key in missing
        ]
    if "propertyNames" in error.schema_path:
        return [
            f"{where}: name {value!r} is not allowed; names may contain only letters, digits, "
            "'_' and '-'"
        ]
    if error.validator in ("oneOf", "anyOf"):
        chosen = _branch_errors(error, root)
        if chosen:
            return [m for sub in chosen for m in _messages(sub, root)]
    return [f"{where}: {value!r} is not allowed; allowed: {describe(error.schema, root)}"]


def config_problems(config: Any, schema: dict) -> list[str]:
    """Every schema violation of ``config`` as 'key: what is wrong; allowed: ...'."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.path])
    messages: list[str] = []
    for error in errors:
        for message in _messages(error, schema):
            if message not in messages:
                messages.append(message)
    return messages


def fill_defaults(config: Any, schema: dict | str | Path, node: dict | None = None) -> Any:
    """``config`` (changed in place, and returned) with every default of ``schema`` it leaves
    out, at any depth; ``node``: the part of the schema ``config`` is an instance of (default:
    the whole schema).

    Snakemake's ``validate(..., set_default=True)`` fills only the defaults written on a
    property itself: it misses those behind a ``$ref`` (a dataset's ``cv``), and in a
    ``oneOf`` (a dataset entry: phantom or folder) it runs every alternative's defaults on the
    entry, matching or not. Here a ``$ref`` is followed and a ``oneOf`` fills the alternative
    the entry is valid under, so the schema stays the only home of the datasets' defaults.
    Run it on a config :func:`check_config` accepted: an entry valid under no alternative is
    left as it is.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    _fill(config, schema if node is None else node, jsonschema.Draft202012Validator(schema))
    return config


def schema_defaults(definition: str, **given: Any) -> dict:
    """``given`` with the defaults of the schema's ``$defs`` entry ``definition`` (for example
    folder_dataset) filled: what the library's conveniences use in place of defaults of their
    own."""
    schema = load_schema(SCHEMA_PATH)
    return fill_defaults(given, schema, schema["$defs"][definition])


def _fill(instance: Any, node: dict, validator: jsonschema.Draft202012Validator) -> None:
    node = _resolve(node, validator.schema)
    for combinator in ("oneOf", "anyOf"):
        valid = [
            o for o in node.get(combinator, []) if validator.evolve(schema=o).is_valid(instance)
        ]
        if valid:
            _fill(instance, valid[0], validator)
    if not isinstance(instance, dict):
        return
    properties = node.get("properties", {})
    for key, sub in properties.items():
        sub = _resolve(sub, validator.schema)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill(instance[key], sub, validator)
    if isinstance(node.get("additionalProperties"), dict):
        for key in instance.keys() - properties.keys():
            _fill(instance[key], node["additionalProperties"], validator)
