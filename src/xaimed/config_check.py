"""Readable config errors: every problem names its key and what the key accepts.

Snakemake's own validation reports a raw jsonschema message (often the whole dataset entry and
a schema dump); :func:`check_config` runs first and says, for each problem, the key path (for
example ``training.optimizer`` or ``explain.methods[1]``), the value found and the values
allowed, read from the same schema. Then it checks what the schema cannot know: that model
names are torchvision classifiers, that explained models have a CAM target layer (registered,
or chosen in ``explain.target_layers``), and that a chosen target layer exists in its model.
:func:`check_config_files` re-reads each config file strictly (a YAML error or a key given
twice names the file and line), and :func:`canonical` is the key order every params value is
built in.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "ConfigError",
    "canonical",
    "check_config",
    "check_config_files",
    "config_problems",
    "fill_defaults",
    "load_config_file",
    "load_schema",
    "schema_defaults",
]

#: The workflow's schema, beside the library in a checkout: the only home of the defaults.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"


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


def _cache_path(stem: str) -> Path:
    """Where :func:`_cached` keeps ``stem``: keyed by torchvision's version and the source of
    xaimed/models.py."""
    import hashlib
    import os
    import tempfile
    from importlib import metadata

    source = Path(__file__).with_name("models.py").read_bytes()
    key = hashlib.sha256(metadata.version("torchvision").encode() + source).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"xaimed-{os.getuid()}" / f"{stem}-{key}.json"


def _cached(stem: str, compute: Any, valid: Any) -> Any:
    """``compute()`` (JSON-able), cached in the temp dir.

    What is cached here needs torch and torchvision imported (2-3 s), which every Snakemake
    start would pay; the cache is keyed by torchvision's version and the registry's source
    (xaimed/models.py), so only the first start after an upgrade or edit pays. A cached value
    that ``valid`` refuses (a damaged, foreign or hand-edited file) is recomputed and rewritten.
    """
    import json
    import os

    cache = _cache_path(stem)
    try:
        value = json.loads(cache.read_text())
        if valid(value):
            return value
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only temp dir only costs the import next time
    return value


def _model_names() -> tuple[set[str], set[str]]:
    """(torchvision classifier names, CAM-registered family prefixes)."""

    def compute() -> dict:
        from xaimed import models

        return {
            "classifiers": models.classifier_names(),
            "cam_families": sorted(models.CAM_FAMILIES),
        }

    def valid(names: Any) -> bool:
        return (
            isinstance(names, dict)
            and set(names) == {"classifiers", "cam_families"}
            and all(_strings(names[key]) and names[key] for key in names)
        )

    names = _cached("model-names", compute, valid)
    return set(names["classifiers"]), set(names["cam_families"])


def _module_names(name: str) -> list[str]:
    """Dotted paths of the modules of torchvision model ``name`` as xaimed builds it (built
    on the meta device: no memory, no weights), in registration order."""

    def compute() -> list[str]:
        import torch

        from xaimed import models

        with torch.device("meta"):
            return models.module_names(models.build_model(name, 2))

    return _cached(f"modules-{name}", compute, lambda names: _strings(names) and bool(names))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _unknown_model(where: str, name: str, known: set[str]) -> str:
    """'<where>: <name> is not a torchvision classifier' with the closest names (case aside),
    or every name when none is close."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), sorted(by_lower), n=3, cutoff=0.6)
    text = f"{where}: {name!r} is not a torchvision classifier; "
    if close:
        return text + f"closest: {', '.join(by_lower[c] for c in close)}"
    return text + f"allowed: {', '.join(sorted(known))}"


def _layer_problems(config: dict, known: set[str]) -> list[str]:
    """explain.target_layers: each model a torchvision classifier, each path one of its
    modules."""
    explain = config.get("explain")
    layers = explain.get("target_layers") if isinstance(explain, dict) else None
    problems = []
    for name, path in (layers if isinstance(layers, dict) else {}).items():
        where = f"explain.target_layers.{name}"
        if name not in known:
            problems.append(_unknown_model(where, name, known))
            continue
        if not isinstance(path, str):
            continue  # the schema's message covers it
        modules = _module_names(name)
        if path not in modules:
            shown = [m for m in modules if m.count(".") < 2]
            deeper = next((m for m in modules if m.count(".") >= 2), None)
            problems.append(
                f"{where}: CAM target layer {path!r} does not exist in model {name!r}; give the "
                f"dotted path of one of its modules: {', '.join(shown)}"
                + (f" (or a deeper one, e.g. {deeper!r})" if deeper else "")
            )
    return problems


def _name_problems(config: dict) -> list[str]:
    """Model names the schema cannot check: torchvision classifiers, CAM-registered models,
    and explained or shifted models that are trained (``models``)."""
    known, cam_families = _model_names()

    def strings(value: Any) -> list:
        return value if isinstance(value, list) else []

    def mapping(value: Any) -> dict:
        return value if isinstance(value, dict) else {}

    explain = mapping(config.get("explain"))
    chosen_layers = mapping(explain.get("target_layers"))
    trained = strings(config.get("models"))
    # A misspelt trained model is named once, not again in every list that names it right.
    untrained_unknown = any(isinstance(n, str) and n not in known for n in trained)
    problems = []
    for section, names in (
        ("models", trained),
        ("explain.models", strings(explain.get("models"))),
        ("shift.models", strings(mapping(config.get("shift")).get("models"))),
    ):
        for i, name in enumerate(names):
            where = f"{section}[{i}]"
            if not isinstance(name, str):
                continue  # the schema's message covers it
            if name not in known:
                problems.append(_unknown_model(where, name, known))
            elif section != "models" and name not in trained and not untrained_unknown:
                # Snakemake would build no job for it, so it would be dropped without a word.
                problems.append(
                    f"{where}: {name!r} is not trained; add it to models ("
                    f"{', '.join(map(str, trained)) or 'none'}) or remove it from {section}"
                )
            elif (
                section == "explain.models"
                and name not in chosen_layers
                and not any(name.startswith(prefix) for prefix in cam_families)
            ):
                problems.append(
                    f"{where}: {name!r} has no CAM target layer registered; explainable "
                    "families (xaimed.models.CAM_FAMILIES): "
                    + ", ".join(sorted(cam_families))
                    + f"; or choose one in explain.target_layers.{name}"
                )
    for name in mapping(mapping(config.get("training")).get("models")):
        if name not in known:
            problems.append(_unknown_model(f"training.models.{name}", str(name), known))
    return problems + _layer_problems(config, known) + _coarse_layer_problems(config)


def _valid_map(found: Any) -> bool:
    """A cached map-size measurement as ``measure`` writes it (see _coarse_layer_problems)."""

    def side(value: Any) -> bool:
        return isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)

    return (
        isinstance(found, dict)
        and isinstance(found.get("layer"), str)
        and (found.get("size") is None or side(found.get("size")))
        and isinstance(found.get("finer"), list)
        and all(
            isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and side(f[1])
            for f in found["finer"]
        )
    )


def _coarse_layer_problems(config: dict, minimum: int = 4) -> list[str]:
    """Explained (and trained) models whose CAM target layer (chosen or the registry's) gives
    maps smaller than ``minimum`` x ``minimum`` at ``image_size``: a 1x1 map makes every CAM
    constant, a 2x2 one cannot point at a lesion. ``explain.allow_coarse: true`` keeps
    them."""
    # check_config runs before Snakemake fills the defaults: an unset key takes the schema's
    try:
        properties = load_schema(SCHEMA_PATH)["properties"]
        defaults = {
            "image_size": properties["image_size"]["default"],
            "models": properties["explain"]["properties"]["models"]["default"],
        }
    except (OSError, KeyError, TypeError):  # the library without its workflow
        defaults = {}
    explain = config.get("explain", {})
    image_size = config.get("image_size", defaults.get("image_size"))
    if not isinstance(explain, dict) or explain.get("allow_coarse") is True:
        return []
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        return []  # the schema's message covers it
    chosen = explain.get("target_layers")
    chosen = chosen if isinstance(chosen, dict) else {}
    names = explain.get("models", defaults.get("models"))
    known, cam_families = _model_names()
    problems = []
    trained = config.get("models")
    for i, name in enumerate(names if isinstance(names, list) else []):
        if not isinstance(name, str) or name not in known:
            continue  # named by _name_problems
        if isinstance(trained, list) and name not in trained:
            continue  # explained only if trained too (common.smk's EXPLAIN_MODELS)
        layer = chosen.get(name) if isinstance(chosen.get(name), str) else None
        if layer is None and not any(name.startswith(p) for p in cam_families):
            continue  # named by _name_problems

        def measure(name: str = name, layer: str | None = layer) -> dict:
            from xaimed import models

            maps = models.cam_map_sizes(name, image_size)
            layer = layer or maps["default"]
            finer = models.finer_cam_layers(maps, layer, minimum) if layer else []
            return {
                "layer": layer,
                "size": maps["sizes"].get(layer),
                "finer": [[p, maps["sizes"][p]] for p in finer],
            }

        found = _cached(
            f"cam-map-{name}-{image_size}-{layer or 'default'}-{minimum}", measure, _valid_map
        )
        size = found["size"]
        if size is None or min(size) >= minimum:
            continue  # a missing layer is _layer_problems'; a non-spatial output has no map
        finer = ", ".join(f"{p} ({h}x{w})" for p, (h, w) in found["finer"])
        where = f"explain.target_layers.{name}" if layer else f"explain.models[{i}]"
        origin = "" if layer else " (the default of xaimed.models.CAM_FAMILIES)"
        problems.append(
            f"{where}: CAM target layer {found['layer']!r}{origin} of {name!r} gives "
            f"{size[0]}x{size[1]} maps at image_size {image_size}, smaller than "
            f"{minimum}x{minimum} (a 1x1 map makes every CAM constant); choose a finer layer "
            f"in explain.target_layers.{name}"
            + (f": {finer}" if finer else "")
            + ", or set explain.allow_coarse: true to keep it"
        )
    return problems


def _shift_problems(config: dict, schema: dict) -> list[str]:
    """shift.cam_severity must be one of shift.severities when CAM stability is measured (an
    explained model under shift): otherwise every generalise job fails, after training."""

    def given(section: str, key: str) -> tuple[Any, bool]:
        part = config.get(section)
        if isinstance(part, dict) and key in part:
            return part[key], False
        return schema["properties"][section]["properties"][key].get("default"), True

    trained = config.get("models") if _strings(config.get("models")) else []
    shifted, _ = given("shift", "models")
    explained, _ = given("explain", "models")
    methods, _ = given("shift", "cam_methods")
    severity, default = given("shift", "cam_severity")
    severities, _ = given("shift", "severities")
    names = (shifted, explained, methods)
    if not (
        all(map(_strings, names)) and isinstance(severities, list) and isinstance(severity, int)
    ):
        return []  # the schema's messages cover it
    if not methods or not set(shifted) & set(explained) & set(trained):
        return []
    if severity in severities:
        return []
    return [
        f"shift.cam_severity: {severity}{' (the default)' if default else ''} is not among "
        f"shift.severities {severities}; CAM stability is measured at one of them: choose one, "
        "or set shift.cam_methods: [] to skip it"
    ]


def check_config(config: Any, schema: dict | str | Path, source: str = "the config") -> None:
    """Raise :class:`ConfigError` listing every problem, one line each, or return None."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    problems = config_problems(config, schema)
    if isinstance(config, dict):
        names = _name_problems(config) + _shift_problems(config, schema)
        # One message per key. An unknown model name gets the closest names rather than the
        # schema's pattern (models[i] must match one; 'resnet5O' would get a regex).
        unknown = {p.split(":")[0] for p in names if "is not a torchvision classifier" in p}
        problems = [p for p in problems if p.split(":")[0] not in unknown]
        flagged = {problem.split(":")[0] for problem in problems}
        problems += [p for p in names if p.split(":")[0] not in flagged]
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{source} is invalid ({len(problems)} problem(s)):\n{lines}")


def main(argv: list[str] | None = None) -> int:
    """``python -m xaimed.config_check FILE...``: each file read strictly and checked against
    the workflow's schema, as the workflow does (for a syntax error in a ``--configfile``,
    which Snakemake refuses before the workflow runs, naming neither file nor line)."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    try:
        for path in paths:
            check_config(load_config_file(path), SCHEMA_PATH, source=str(path))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{len(paths)} config file(s) valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
