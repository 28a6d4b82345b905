"""A fake ChatGPT Codex backend that speaks the real protocol, built from the reference samples."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

DATA: Final = Path(__file__).parent / "data"


def load_sample(name: str) -> Any:
    """A JSON sample from tests/data."""
    return orjson.loads((DATA / name).read_bytes())


def sample_headers(name: str) -> dict[str, str]:
    """The header set of a headers-*.json sample."""
    headers: dict[str, str] = load_sample(name)["headers"]
    return headers


def sse_events(name: str) -> list[bytes]:
    """The events of a .sse sample, each with its terminating blank line."""
    text = (DATA / name).read_bytes()
    return [event.strip(b"\n") + b"\n\n" for event in text.split(b"\n\n") if event.strip()]


@dataclass
class Received:
    """One request as the fake upstream saw it."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: bytes
    host: str


@dataclass
class FakeUpstream:
    """Test-controlled behaviour of the fake backend, and what it received."""

    response_headers: dict[str, str] = field(
        default_factory=lambda: sample_headers("headers-plus-200.json")
    )
    status: int = 200
    events: Sequence[bytes] = field(default_factory=lambda: sse_events("stream-basic.sse"))
    event_delay: float = 0.0
    # When set, the stream waits for it after the first event (proves nothing is buffered).
    release_second_event: asyncio.Event | None = None
    received: list[Received] = field(default_factory=list)
    stream_closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        """The aiohttp app serving the fake backend."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/backend-api/codex/responses", self._responses)
        app.router.add_get("/backend-api/codex/models", self._models)
        app.router.add_route("*", "/echo/{tail:.*}", self._echo)
        app.router.add_get("/big", self._big)
        app.router.add_get("/endless", self._endless)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/gzip", self._gzip)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/cut", self._cut)
        app.router.add_get("/stall", self._stall)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        return app

    async def _record(self, request: web.Request) -> Received:
        received = Received(
            method=request.method,
            path_qs=request.raw_path,
            headers=request.headers,
            body=await request.read(),
            host=request.host,
        )
        self.received.append(received)
        return received

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        headers = CIMultiDict(self.response_headers)
        headers.setdefault("Content-Type", "text/event-stream")
        response = web.StreamResponse(status=self.status, headers=headers)
        await response.prepare(request)
        for index, event in enumerate(self.events):
            if index == 1 and self.release_second_event is not None:
                await self.release_second_event.wait()
            elif index and self.event_delay:
                await asyncio.sleep(self.event_delay)
            await response.write(event)
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        headers = {**self.response_headers, "Content-Type": "application/json"}
        body = orjson.dumps({"models": [{"slug": "gpt-5-codex"}]})
        return web.Response(body=body, headers=headers, status=self.status)

    async def _echo(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        body = {
            "method": received.method,
            "path_qs": received.path_qs,
            "headers": list(received.headers.items()),
            "body_length": len(received.body),
        }
        return web.Response(
            body=orjson.dumps(body),
            content_type="application/json",
            headers={"Set-Cookie": "a=1", "X-Upstream": "fake", "Connection": "keep-alive"},
        )

    async def _big(self, request: web.Request) -> web.StreamResponse:
        megabytes = int(request.query.get("mb", "8"))
        chunk = b"x" * 65536
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = megabytes * 16 * len(chunk)
        await response.prepare(request)
        for _ in range(megabytes * 16):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.stream_started.set()
        try:
            while True:
                await response.write(b": keep-alive\n\n")
                await asyncio.sleep(0.05)
        except (ConnectionResetError, asyncio.CancelledError):
            self.stream_closed_by_client.set()
            raise

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def _gzip(self, request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b'{"compressed": true}'),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://127.0.0.2:1/elsewhere"})

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        """Sends one event, then goes silent for longer than any test waits."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await asyncio.sleep(3600)
        return response

    async def _cut(self, request: web.Request) -> web.StreamResponse:
        """Sends part of a declared body, then drops the connection."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"y" * 100)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return response
