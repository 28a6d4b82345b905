"""A fake ChatGPT Codex backend that speaks the real protocol, built from the reference samples."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.helpers.paths import DATA


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
    # When set, the stream sends its headers, then waits for it before the first event.
    release_first_event: asyncio.Event | None = None
    # When set, POST responses answer this JSON body (e.g. a 429 usage_limit_reached) instead.
    error_body: bytes | None = None
    usage_body: bytes = field(default_factory=lambda: (DATA / "wham-usage-plus.json").read_bytes())
    # GET wham/usage answers this status; anything but 200 with a JSON error body.
    usage_status: int = 200
    received: list[Received] = field(default_factory=list)
    ws_received: list[tuple[str, Any]] = field(default_factory=list)
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    ws_close_code: int | None = None
    ws_handshake_status: int = 101
    stream_closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)
    # Bytes /firehose has handed to its connections (shows whether a proxy applies back-pressure).
    firehose_sent: int = 0

    def app(self) -> web.Application:
        """The aiohttp app serving the fake backend."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/backend-api/codex/responses", self._responses)
        app.router.add_get("/backend-api/codex/responses", self._websocket)
        app.router.add_get("/backend-api/wham/usage", self._usage)
        app.router.add_get("/api/codex/usage", self._usage)
        app.router.add_get("/backend-api/codex/models", self._models)
        # Test-only behaviours, under /backend-api/ because codexgate relays only Codex paths.
        app.router.add_route("*", "/backend-api/echo/{tail:.*}", self._echo)
        app.router.add_get("/backend-api/big", self._big)
        app.router.add_get("/backend-api/endless", self._endless)
        app.router.add_get("/backend-api/firehose", self._firehose)
        app.router.add_get("/backend-api/hang", self._hang)
        app.router.add_get("/backend-api/gzip", self._gzip)
        app.router.add_get("/backend-api/redirect", self._redirect)
        app.router.add_get("/backend-api/cut", self._cut)
        app.router.add_get("/backend-api/stall", self._stall)
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
        if self.error_body is not None:
            json_headers = {**self.response_headers, "Content-Type": "application/json"}
            return web.Response(status=self.status, body=self.error_body, headers=json_headers)
        headers = CIMultiDict(self.response_headers)
        headers.setdefault("Content-Type", "text/event-stream")
        response = web.StreamResponse(status=self.status, headers=headers)
        await response.prepare(request)
        for index, event in enumerate(self.events):
            if index == 0 and self.release_first_event is not None:
                await self.release_first_event.wait()
            elif index == 1 and self.release_second_event is not None:
                await self.release_second_event.wait()
            elif index and self.event_delay:
                await asyncio.sleep(self.event_delay)
            await response.write(event)
        await response.write_eof()
        return response

    async def _usage(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.usage_status != 200:
            error = {"detail": f"usage answered {self.usage_status}"}
            return web.json_response(error, status=self.usage_status)
        body = self.usage_body
        headers = {"Content-Type": "application/json"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket transport: turns for response.create, echoes for anything else."""
        await self._record(request)
        if self.ws_handshake_status != 101:
            return web.Response(status=self.ws_handshake_status, headers=self.response_headers)
        ws = web.WebSocketResponse(
            protocols=("proto-x",), autoping=False, autoclose=False, compress=True
        )
        ws.headers.update(self.response_headers)
        ws.headers.pop("Content-Type", None)
        await ws.prepare(request)
        self.ws_received.append(("compress", ws.compress))
        try:
            await self._websocket_session(ws)
        finally:
            self.ws_closed.set()
        return ws

    async def _websocket_session(self, ws: web.WebSocketResponse) -> None:
        frames = [
            orjson.loads(line) for line in (DATA / "ws-frames.jsonl").read_bytes().splitlines()
        ]
        server_frames = [f["frame"] for f in frames[1:] if f["dir"] == "server"]
        first_turn, error_frame = server_frames[:4], server_frames[4]
        while True:
            message = await ws.receive()
            self.ws_received.append((message.type.name, message.data))
            if message.type is WSMsgType.TEXT:
                text: str = message.data
                if text.startswith("close-me:"):
                    await ws.close(code=int(text.split(":")[1]), message=b"bye")
                    return
                if '"response.create"' in text:
                    is_retry = "previous_response_id" in text
                    for frame in [error_frame] if is_retry else first_turn:
                        await ws.send_str(orjson.dumps(frame).decode())
                else:
                    await ws.send_str("echo:" + text)
            elif message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type is WSMsgType.PING:
                await ws.pong(message.data)
            elif message.type is WSMsgType.CLOSE:
                self.ws_close_code = message.data
                await ws.close(code=message.data, message=(message.extra or "").encode())
                return
            else:
                return

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

    async def _firehose(self, request: web.Request) -> web.StreamResponse:
        """Writes 64 KiB chunks as fast as the reader takes them, until it goes away."""
        chunk = b"z" * 65536
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(chunk)  # waits while the socket's buffer is full
                self.firehose_sent += len(chunk)
        except ConnectionResetError:
            return response

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
