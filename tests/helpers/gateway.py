"""The in-process gateway as tests drive it: its app, a proxied turn, waiting for its writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from codexgate.keys import RECORDER
from codexgate.storage.location import DatabaseLocation
from tests.helpers.waiting import eventually

StartGateway = Callable[..., Awaitable[TestServer]]


def app_of(server: TestServer) -> web.Application:
    """The application a test server runs."""
    app = server.app
    assert app is not None
    return app


async def turn(http: ClientSession, gateway: TestServer, authorization: str, **headers: str) -> int:
    """One streamed turn through the gateway; returns the status."""
    async with http.post(
        f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses",
        data=b'{"stream": true}',
        headers={"Authorization": authorization, **headers},
    ) as response:
        await response.read()
        return response.status


async def recorded(gateway: TestServer, count: int) -> None:
    """Wait until the recorder has written at least `count` snapshots."""
    recorder = app_of(gateway)[RECORDER]
    await eventually(recorder.stats, accept=lambda stats: stats.recorded >= count)


async def settled(gateway: TestServer, requests: int) -> None:
    """Wait until `requests` request-log rows (and what came with them) are written."""
    recorder = app_of(gateway)[RECORDER]
    await eventually(recorder.stats, accept=lambda stats: stats.requests_logged >= requests)


def sqlite_file(location: DatabaseLocation) -> Path:
    """The SQLite file of a test that reads or writes the file itself (a SQLite-only test)."""
    assert isinstance(location, Path), "this test reads the SQLite file itself"
    return location
