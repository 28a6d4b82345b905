"""The bench's fake Codex upstream in its own process: `python -m bench.upstream --port N`."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from typing import Final

from aiohttp import WSMsgType, web

from .loops import loop_factory
from .protocol import (
    BIG_PATH,
    CHUNK_SIZE,
    CREATE,
    MEGABYTE,
    PING_PATH,
    PRIMARY_USED_HEADER,
    RESPONSES_PATH,
    USAGE_PATH,
    WS_TURN,
    frame_type_prefix,
    handshake_headers,
    rate_limit_headers,
    sse_turn,
    usage_body,
    ws_turn,
)

MAX_EVENTS: Final = 10_000
MAX_EVENT_SIZE: Final = 1_000_000
MAX_DELAY_MS: Final = 10_000
MAX_HOLD_MS: Final = 3_600_000
MAX_MEGABYTES: Final = 100_000
MAX_CACHED_TURNS: Final = 16
MAX_WS_MESSAGES: Final = 10_000_000  # client frames one WebSocket may send before it is closed
MAX_WS_MESSAGE_SIZE: Final = 16 * 1024 * 1024


def _query_int(request: web.Request, name: str, default: int, maximum: int) -> int:
    """A non-negative integer query parameter no larger than `maximum`, or a 400."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if not 0 <= value <= maximum:
        raise web.HTTPBadRequest(text=f"{name} must be between 0 and {maximum}")
    return value


class BenchUpstream:
    """Serves Codex-shaped SSE and WebSocket turns with real rate limits, usage, large streams."""

    def __init__(self) -> None:
        self._headers = rate_limit_headers()
        self._handshake_headers = handshake_headers()
        self._turns: dict[tuple[int, int], list[bytes]] = {}
        self._ws_frames = ws_turn(WS_TURN)
        self._create = frame_type_prefix(CREATE)
        self._usage = usage_body()
        self._chunk = b"x" * CHUNK_SIZE

    def app(self) -> web.Application:
        """The aiohttp app of the fake upstream."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(RESPONSES_PATH, self._responses)
        app.router.add_get(RESPONSES_PATH, self._responses_websocket)
        app.router.add_get(USAGE_PATH, self._usage_report)
        app.router.add_get(BIG_PATH, self._big)
        app.router.add_get(PING_PATH, self._ping)
        return app

    def _turn(self, events: int, size: int) -> list[bytes]:
        """The events of a turn, built once per shape (a handful of shapes are cached)."""
        key = (events, size)
        turn = self._turns.get(key)
        if turn is None:
            turn = sse_turn(events, size)
            if len(self._turns) < MAX_CACHED_TURNS:
                self._turns[key] = turn
        return turn

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """One streamed turn: headers, then every event, `delay_ms` apart after the first.

        With `hold_ms` the stream goes silent after the first event for that long (an idle
        stream); a client that hangs up meanwhile cancels the handler. With `used` the headers
        report that primary used percent instead of the sample's (a new history row each time).
        """
        await request.read()
        headers = self._headers
        used = _query_int(request, "used", -1, 100)
        if used >= 0:
            headers = {**headers, PRIMARY_USED_HEADER: str(used)}
        events = self._turn(
            _query_int(request, "events", 20, MAX_EVENTS),
            _query_int(request, "size", 200, MAX_EVENT_SIZE),
        )
        delay = _query_int(request, "delay_ms", 0, MAX_DELAY_MS) / 1000
        hold = _query_int(request, "hold_ms", 0, MAX_HOLD_MS) / 1000
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        for index, event in enumerate(events):
            if index == 1 and hold:
                await asyncio.sleep(hold)  # cancelled when the client hangs up
            if index and delay:
                await asyncio.sleep(delay)
            await response.write(event)
        await response.write_eof()
        return response

    async def _responses_websocket(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket transport: a 101 with the rate-limit headers, then a turn per create.

        permessage-deflate is accepted when the client offers it, as the Codex backend does.
        """
        ws = web.WebSocketResponse(compress=True, max_msg_size=MAX_WS_MESSAGE_SIZE)
        ws.headers.update(self._handshake_headers)
        await ws.prepare(request)
        for _ in range(MAX_WS_MESSAGES):
            message = await ws.receive()
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if message.type == WSMsgType.ERROR:
                break
            if message.type == WSMsgType.TEXT and message.data.startswith(self._create):
                for frame in self._ws_frames:
                    await ws.send_str(frame)
        await ws.close()
        return ws

    async def _usage_report(self, request: web.Request) -> web.Response:
        """GET /backend-api/wham/usage: a Plus seat's usage report."""
        return web.Response(body=self._usage, content_type="application/json")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        """`mb` decimal megabytes in 64 KiB chunks, chunked like a long SSE stream."""
        remaining = _query_int(request, "mb", 200, MAX_MEGABYTES) * MEGABYTE
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        chunk = self._chunk
        while remaining >= len(chunk):
            await response.write(chunk)
            remaining -= len(chunk)
        if remaining:
            await response.write(chunk[:remaining])
        await response.write_eof()
        return response

    async def _ping(self, request: web.Request) -> web.Response:
        """Readiness probe for the bench."""
        return web.Response(text="ok")


async def serve(host: str, port: int) -> None:
    """Serve the fake upstream until SIGINT or SIGTERM."""
    # handler_cancellation: a hang-up ends a held idle stream at once instead of after hold_ms.
    runner = web.AppRunner(
        BenchUpstream().app(), access_log=None, shutdown_timeout=2.0, handler_cancellation=True
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the port and run the fake upstream on loopback."""
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
