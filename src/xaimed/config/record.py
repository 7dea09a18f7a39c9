"""Results are kept per config: ``results/config_files.yaml`` records which config file(s) made
them, and a run with other config files into the same ``results/`` is refused before any job.

Without it, a README command run without ``--configfile`` after a study's run silently ran the
demo config into the study's ``results/`` (a new phantom, a retraining). Editing the recorded
file itself is a normal change (Snakemake reruns what it changes). Paths inside the working
directory are recorded relative to it, so that a copied or moved study directory still matches.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

__all__ = ["RECORD", "ConfigMismatch", "check_config_record", "config_names", "write_config_record"]

RECORD = Path("results/config_files.yaml")


class ConfigMismatch(RuntimeError):
    """The results were made from other config files than this run's."""


def config_names(configfiles: Iterable[str | Path], workdir: str | Path = ".") -> list[str]:
    """Each config file resolved; relative to ``workdir`` where it lies inside it."""
    root = Path(workdir).resolve()
    names = []
    for path in configfiles:
        path = Path(path).resolve()
        names.append(path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path))
    return names


def _read(record: Path) -> list[str]:
    files = yaml.safe_load(record.read_text()) or {}
    if not isinstance(files, dict) or not isinstance(files.get("configfiles"), list):
        raise ConfigMismatch(
            f"{record} is not a record of config files (a 'configfiles:' list): "
            f"remove it and rerun with the config that made {record.parent}/"
        )
    return [str(name) for name in files["configfiles"]]


def check_config_record(
    configfiles: Iterable[str | Path], snakefile: str | Path, workdir: str | Path = "."
) -> None:
    """Refuse when ``results/`` was made from other config files; nothing recorded passes."""
    record = Path(workdir) / RECORD
    if not record.exists():
        return
    recorded, given = _read(record), config_names(configfiles, workdir)
    if recorded == given:
        return
    recorded_args = " ".join(f"--configfile {name}" for name in recorded)
    raise ConfigMismatch(
        f"{record.parent}/ was made from {', '.join(recorded)} (recorded in {record}), "
        f"but this run's config is {', '.join(given) or 'none'}: refusing, so that one "
        f"study's results do not replace another's. To continue that study, pass "
        f"{recorded_args}; to run this config, give it its own directory "
        f"(snakemake --snakefile {Path(snakefile).resolve()} --directory OTHER_DIR ...), "
        f"or remove {record.parent}/ to start over."
    )


def write_config_record(configfiles: Iterable[str | Path], workdir: str | Path = ".") -> None:
    """Record this run's config files, once: at the first run that starts jobs."""
    record = Path(workdir) / RECORD
    if record.exists():
        return
    record.parent.mkdir(parents=True, exist_ok=True)
    names = config_names(configfiles, workdir)
    record.write_text(
        "# The config file(s) these results were made from (xaimed.config.record): a run\n"
        "# with other config files into this results/ is refused.\n"
        + yaml.safe_dump({"configfiles": names})
    )
