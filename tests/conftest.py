"""Shared fixtures: a fake upstream on loopback, a codexgate app in front of it, and a
throwaway PostgreSQL server for the tests that ask for one."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from hypothesis import settings
from pytest_aiohttp import AiohttpServer
from yarl import URL

from codexgate.app import SERVER_OPTIONS, create_app
from codexgate.config import Config
from codexgate.storage.location import DatabaseLocation, parse_database
from tests.helpers.admin_client import ADMIN, Admin
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway
from tests.helpers.postgres import PostgresServer

# The one hypothesis profile: no example database (runs do not depend on earlier ones) and no
# per-example deadline (a loaded machine is slow, not wrong).
settings.register_profile("codexgate", database=None, deadline=None, max_examples=200)
settings.load_profile("codexgate")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run, started when a test first asks for it.

    Synchronous: the async fixtures and tests each have a loop of their own, and the server's
    helpers open a connection per call so that any of those loops can use them.
    """
    with PostgresServer() as server:
        yield server


@pytest.fixture
async def postgres_database(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The URL (password included) of a new, empty database, dropped after the test."""
    url = await postgres_server.fresh_database()
    yield url
    await postgres_server.drop_database(url)


@pytest.fixture
def fake() -> FakeUpstream:
    """The fake backend's behaviour and what it received."""
    return FakeUpstream()


@pytest.fixture
async def upstream_server(aiohttp_server: AiohttpServer, fake: FakeUpstream) -> TestServer:
    """The fake backend, listening on loopback."""
    return await aiohttp_server(fake.app(), auto_decompress=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test that uses `backend` once per backend its module's `backends` mark names
    (`pytestmark = pytest.mark.backends("sqlite", "postgresql")`); SQLite alone without one."""
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = marker.args if marker is not None else ("sqlite",)
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend this test runs on: "sqlite" or "postgresql"."""
    return str(request.param)


@pytest.fixture
async def database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[DatabaseLocation]:
    """Where the gateway keeps its data: a new SQLite file, or an emptied PostgreSQL database."""
    if backend == "sqlite":
        yield tmp_path / "data" / "codexgate.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    yield parse_database(await server.emptied_database())


@pytest.fixture
def config(database: DatabaseLocation, upstream_server: TestServer) -> Config:
    """A config pointing at the fake upstream, with its own database."""
    return Config(
        upstream=URL(f"http://127.0.0.1:{upstream_server.port}"),
        db=database,
        idle_timeout=5.0,
        connect_timeout=2.0,
    )


@pytest.fixture
def start_gateway(config: Config, aiohttp_server: AiohttpServer) -> StartGateway:
    """Start codexgate in this process; keyword arguments override config fields."""

    async def start(**overrides: object) -> TestServer:
        app = create_app(dataclasses.replace(config, **overrides))  # type: ignore[arg-type]
        # aiohttp's TestServer always sets handler_cancellation itself.
        options = {k: v for k, v in SERVER_OPTIONS.items() if k != "handler_cancellation"}
        return await aiohttp_server(app, **options)

    return start


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> TestServer:
    """codexgate with the default test config."""
    return await start_gateway()


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    """A plain client that leaves bodies and encodings as they are on the wire."""
    async with ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture
async def server(start_gateway: StartGateway) -> TestServer:
    """codexgate with the admin token of admin_client."""
    return await start_gateway(admin_token=ADMIN)


@pytest.fixture
def admin(http: ClientSession, server: TestServer) -> Admin:
    """A client of that gateway's own routes, with the admin token."""
    return Admin(http, server)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy in the environment, for clients that trust it and must reach loopback."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
