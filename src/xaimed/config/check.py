"""Readable config errors: every problem names its key and what the key accepts.

Snakemake's own validation reports a raw jsonschema message (often the whole dataset entry and
a schema dump); :func:`check_config` runs first and says, for each problem, the key path (for
example ``training.optimizer`` or ``explain.methods[1]``), the value found and the values
allowed, read from the same schema (:mod:`xaimed.config.schema`). Then it checks what the schema
cannot know (:mod:`xaimed.config.names`): that model names are torchvision classifiers, that
explained models have a CAM target layer fine enough to localise, and that a chosen target layer
exists in its model. ``python -m xaimed.config.check FILE`` checks one config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xaimed.config.names import _name_problems, _shift_problems
from xaimed.config.schema import (
    SCHEMA_PATH,
    ConfigError,
    config_problems,
    load_config_file,
    load_schema,
)

__all__ = ["check_config"]


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
    """``python -m xaimed.config.check FILE...``: each file read strictly and checked against
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
