"""The numbered migration files every backend reads: NNNN_name.sql, applied in number order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from codexgate.storage.interface import StorageSetupError

_MIGRATION_FILE = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file, read."""

    number: int
    name: str
    sql: str


def read_migrations(folder: Path) -> list[Migration]:
    """Read the NNNN_name.sql files of folder in number order; reject odd names and repeats."""
    try:
        files = sorted(entry for entry in folder.iterdir() if entry.suffix == ".sql")
    except OSError as exc:
        raise StorageSetupError(f"cannot read migrations in {folder}: {exc}") from exc
    scripts: list[Migration] = []
    for file in files:
        match = _MIGRATION_FILE.match(file.name)
        if match is None:
            raise StorageSetupError(f"migration file {file} is not named NNNN_name.sql")
        number = int(match.group(1))
        if scripts and scripts[-1].number == number:
            raise StorageSetupError(f"migrations {scripts[-1].name} and {file.name} share a number")
        scripts.append(Migration(number, file.name, file.read_text(encoding="utf-8")))
    if not scripts:
        raise StorageSetupError(f"no migrations found in {folder}")
    return scripts
