"""Where codexgate keeps its data: the storage interface and its backends."""

from __future__ import annotations

from pathlib import Path

from codexgate.storage.interface import Storage
from codexgate.storage.sqlite.store import Store


async def open_storage(
    path: Path, *, heartbeat_seconds: float = 300.0, migrations: Path | None = None
) -> Storage:
    """Open (creating and migrating) the database: the one place that picks a backend.

    Raises StorageSetupError when it cannot be opened or migrated.
    """
    return await Store.open(path, migrations=migrations, heartbeat_seconds=heartbeat_seconds)


async def schema_status(path: Path, *, migrations: Path | None = None) -> tuple[int, int]:
    """(the schema version of the database at path, the newest migration), changing nothing."""
    return await Store.schema_status(path, migrations=migrations)
