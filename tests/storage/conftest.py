"""The contract suite's storage: every test in tests/storage runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codexgate.storage import open_storage
from codexgate.storage.interface import Storage
from codexgate.storage.location import parse_database
from tests.helpers.postgres import PostgresServer

# A backend adds its name here and a branch below.
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A fresh, empty storage of each backend, with a 300 s heartbeat."""
    if request.param == "sqlite":
        opened = await open_storage(tmp_path / "db" / "codexgate.db")
        yield opened
        await opened.close()
        return
    assert request.param == "postgresql"
    # Looked up here, not taken as an argument: SQLite runs never start the server.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    opened = await open_storage(parse_database(await server.emptied_database()))
    yield opened
    await opened.close()
