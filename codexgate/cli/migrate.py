"""`codexgate migrate [--check]`: bring the database to the newest schema, or say if due."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from codexgate.cli.common import FAILURE, OK, CommandError, open_database
from codexgate.config import Config
from codexgate.storage import schema_status
from codexgate.storage.interface import StorageSetupError
from codexgate.storage.location import describe


async def run(config: Config, *, check: bool, out: TextIO) -> int:
    """Apply the pending migrations (creating the file), or with check only report them."""
    # A PostgreSQL database is the server's to know about: schema_status asks it.
    if check and isinstance(config.db, Path) and not await asyncio.to_thread(config.db.exists):
        # schema_status counts a missing file as version 0: say what it is instead.
        raise CommandError(
            f"no database file at {config.db}: `codexgate migrate` (or the first start) "
            "creates it; check --db"
        )
    try:
        before, latest = await schema_status(config.db, connect_timeout=config.db_connect_timeout)
        if check:
            return _report(config, before, latest, out)
        store = await open_database(config)
        try:
            version = await store.schema_version()
        finally:
            await store.close()
    except StorageSetupError as exc:
        raise CommandError(str(exc)) from None
    applied = version - before
    note = f"applied {applied} migration{'s' if applied != 1 else ''}" if applied else "up to date"
    out.write(f"{describe(config.db)}: schema version {version} ({note})\n")
    return OK


def _report(config: Config, version: int, latest: int, out: TextIO) -> int:
    """--check: exit 0 when nothing is pending, 1 when something is (or the file is newer)."""
    shown = describe(config.db)
    if version > latest:
        raise CommandError(
            f"{shown}: schema version {version} is newer than this codexgate ({latest})"
        )
    if version == latest:
        out.write(f"{shown}: schema version {version} (up to date)\n")
        return OK
    pending = latest - version
    out.write(
        f"{shown}: schema version {version}, {pending} migration"
        f"{'s' if pending != 1 else ''} pending (latest {latest})\n"
    )
    return FAILURE
