"""Where codexgate keeps its data: the storage interface and its backends."""

from __future__ import annotations

from pathlib import Path

from codexgate.storage.interface import Storage
from codexgate.storage.location import DatabaseLocation, PostgresURL


async def open_storage(
    location: DatabaseLocation,
    *,
    heartbeat_seconds: float = 300.0,
    migrations: Path | None = None,
    pool_size: int = 10,
    connect_timeout: float = 30.0,
) -> Storage:
    """Open (creating and migrating) the database: the one place that picks a backend.

    A path is a SQLite file; a PostgresURL a server, retried for connect_timeout seconds when
    unreachable, with a pool of pool_size connections. Raises StorageSetupError when it
    cannot be opened or migrated.
    """
    if isinstance(location, PostgresURL):
        # Imported here: SQLite users never load asyncpg.
        from codexgate.storage.postgresql.store import PostgresStore

        return await PostgresStore.open(
            location,
            migrations=migrations,
            heartbeat_seconds=heartbeat_seconds,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
        )
    from codexgate.storage.sqlite.store import Store

    return await Store.open(location, migrations=migrations, heartbeat_seconds=heartbeat_seconds)


async def schema_status(
    location: DatabaseLocation, *, migrations: Path | None = None, connect_timeout: float = 30.0
) -> tuple[int, int]:
    """(the schema version of the database, the newest migration), changing nothing."""
    if isinstance(location, PostgresURL):
        from codexgate.storage.postgresql.connection import PostgresBase

        return await PostgresBase.schema_status(
            location, migrations=migrations, connect_timeout=connect_timeout
        )
    from codexgate.storage.sqlite.store import Store

    return await Store.schema_status(location, migrations=migrations)
