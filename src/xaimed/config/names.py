"""Checks of names the schema cannot know: torchvision models, layers, shifts."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from xaimed.config.schema import SCHEMA_PATH, load_schema

#: the registry and builders whose facts :func:`_cached` keeps (its key hashes their source)
MODELS_SOURCE = Path(__file__).parents[1] / "models"


def _cache_path(stem: str) -> Path:
    """Where :func:`_cached` keeps ``stem``: keyed by torchvision's version and the source of
    xaimed/models/."""
    import hashlib
    import os
    import tempfile
    from importlib import metadata

    source = b"".join(p.read_bytes() for p in sorted(MODELS_SOURCE.glob("*.py")))
    key = hashlib.sha256(metadata.version("torchvision").encode() + source).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"xaimed-{os.getuid()}" / f"{stem}-{key}.json"


def _cached(stem: str, compute: Any, valid: Any) -> Any:
    """``compute()`` (JSON-able), cached in the temp dir.

    What is cached here needs torch and torchvision imported (2-3 s), which every Snakemake
    start would pay; the cache is keyed by torchvision's version and the registry's source
    (xaimed/models/), so only the first start after an upgrade or edit pays. A cached value
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
        from xaimed.models import build
        from xaimed.models import layers as models_layers

        return {
            "classifiers": build.classifier_names(),
            "cam_families": sorted(models_layers.CAM_FAMILIES),
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

        from xaimed.models import build
        from xaimed.models import layers as models_layers

        with torch.device("meta"):
            return models_layers.module_names(build.build_model(name, 2))

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
                    "families (xaimed.models.layers.CAM_FAMILIES): "
                    + ", ".join(sorted(cam_families))
                    + f"; or choose one in explain.target_layers.{name}"
                )
    for name in mapping(mapping(config.get("training")).get("models")):
        if name not in known:
            problems.append(_unknown_model(f"training.models.{name}", str(name), known))
    return (
        problems
        + _layer_problems(config, known)
        + _image_size_problems(config, known)
        + _coarse_layer_problems(config)
    )


def _image_size(config: dict) -> Any:
    """``image_size``, the schema's default where unset (check_config runs before Snakemake
    fills the defaults)."""
    try:
        default = load_schema(SCHEMA_PATH)["properties"]["image_size"]["default"]
    except (OSError, KeyError, TypeError):  # the library without its workflow
        default = None
    return config.get("image_size", default)


def _image_size_problem(name: str, image_size: int) -> str | None:
    """Why trained model ``name`` cannot take ``image_size`` px images (a ViT: not a multiple
    of its patch size), or None; cached as the other model facts are."""

    def compute() -> dict:
        from xaimed.models import build

        return {"problem": build.image_size_problem(name, image_size)}

    def valid(found: Any) -> bool:
        return isinstance(found, dict) and isinstance(found.get("problem"), str | type(None))

    return _cached(f"image-size-{name}-{image_size}", compute, valid)["problem"]


def _image_size_problems(config: dict, known: set[str]) -> list[str]:
    """Trained models that cannot be built for ``image_size`` (a ViT's patch size)."""
    image_size = _image_size(config)
    trained = config.get("models")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        return []  # the schema's message covers it
    problems = []
    for i, name in enumerate(trained if isinstance(trained, list) else []):
        if isinstance(name, str) and name in known:
            problem = _image_size_problem(name, image_size)
            if problem:
                problems.append(f"models[{i}]: {problem}")
    return problems


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
        if _image_size_problem(name, image_size):
            continue  # named by _image_size_problems

        def measure(name: str = name, layer: str | None = layer) -> dict:
            from xaimed.models import layers as models_layers

            maps = models_layers.cam_map_sizes(name, image_size)
            layer = layer or maps["default"]
            finer = models_layers.finer_cam_layers(maps, layer, minimum) if layer else []
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
        origin = "" if layer else " (the default of xaimed.models.layers.CAM_FAMILIES)"
        problems.append(
            f"{where}: CAM target layer {found['layer']!r}{origin} of {name!r} gives "
            f"{size[0]}x{size[1]} maps at image_size {image_size}, smaller than "
            f"{minimum}x{minimum} (a 1x1 map makes every CAM constant); choose a finer layer "
            f"in explain.target_layers.{name}"
            + (
                f": {finer}"
                if finer
                else f" (none of its layers is finer at image_size {image_size}: raise it)"
            )
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
