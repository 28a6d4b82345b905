"""The live feed's delay: from the end of a proxied turn to a subscriber reading its usage event.

A codexgate process (capture on) in front of the bench's fake upstream, one subscriber on
GET /codexgate/api/v1/events and one turn at a time, each reporting a new primary used percent so
that it writes a new history row. The delay includes the recorder's batching linger (50 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import ClientResponse, ClientSession

from .load import make_turn, new_session
from .processes import LOOPBACK, BenchError, Service, free_port, wait_ready
from .protocol import PING_PATH, REPO_ROOT, SMALL_TURN, request_body, request_headers, seat_claims
from .stats import percentile

EVENTS_PATH: Final = "/codexgate/api/v1/events"
HEALTH_PATH: Final = "/codexgate/healthz"
WARMUP_TURNS: Final = 5  # the first creates the account; the others warm the path
EVENT_WITHIN: Final = 10.0
WINDOW: Final = "5h"  # the label the sample's primary window is classified as


@dataclass(frozen=True, slots=True)
class FeedDelay:
    """The delays of `samples` turns, in ms."""

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _used(turn: int) -> int:
    """The primary used percent turn number `turn` reports: never the previous turn's."""
    return turn % 100


async def _usage_events(response: ClientResponse) -> AsyncIterator[tuple[float, Any]]:
    """Each `usage` event of an SSE stream with when its last line was read (perf_counter)."""
    kind: str | None = None
    data: list[bytes] = []
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if line:
            if line.startswith(b"event:"):
                kind = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
            continue
        if kind == "usage" and data:
            yield time.perf_counter(), orjson.loads(b"\n".join(data))
        kind, data = None, []


async def _follow(response: ClientResponse, arrived: asyncio.Queue[tuple[float, int]]) -> None:
    """Queue the arrival time and primary used percent of every usage event."""
    async for at, payload in _usage_events(response):
        window = payload["row"]["windows"].get(WINDOW)
        if window is not None and window["used_percent"] is not None:
            arrived.put_nowait((at, round(window["used_percent"])))


async def _delays(base: str, token: str, samples: int) -> list[float]:
    """Seconds from each measured turn's end to its usage event's arrival."""
    claims = seat_claims("seat_a")
    headers, body = request_headers(claims), request_body()
    turn = make_turn(base, SMALL_TURN, headers, body)
    arrived: asyncio.Queue[tuple[float, int]] = asyncio.Queue()
    delays: list[float] = []
    async with (
        new_session() as session,
        session.get(
            f"{base}{EVENTS_PATH}",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        ) as feed,
    ):
        if feed.status != 200:
            raise BenchError(f"the live feed answered {feed.status}")
        follower = asyncio.create_task(_follow(feed, arrived))
        try:
            for number in range(WARMUP_TURNS + samples):
                used = _used(number)
                finished = await _turn(session, f"{turn.url}&used={used}", headers, body)
                async with asyncio.timeout(EVENT_WITHIN):
                    while True:
                        at, reported = await arrived.get()
                        if reported == used:
                            break
                if number >= WARMUP_TURNS:
                    delays.append(at - finished)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    return delays


async def _turn(session: ClientSession, url: str, headers: dict[str, str], body: bytes) -> float:
    """Send one turn and read it to the end; when it ended (perf_counter)."""
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise BenchError(f"a turn through codexgate answered {response.status}")
    return time.perf_counter()


def _services(workdir: Path, token: str) -> tuple[Service, str, Service, str]:
    """The fake upstream and a codexgate (capture on) in front of it, not started yet."""
    upstream_port, gateway_port = free_port(), free_port()
    while gateway_port == upstream_port:
        gateway_port = free_port()
    upstream = Service(
        name="fake upstream",
        argv=[sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
        cwd=REPO_ROOT,
        log_path=workdir / "feed-upstream.log",
    )
    gateway = Service(
        name="codexgate (live feed)",
        argv=[
            sys.executable,
            "-m",
            "codexgate",
            "--port",
            str(gateway_port),
            "--upstream",
            f"http://{LOOPBACK}:{upstream_port}",
            "--db",
            str(workdir / "bench-feed.db"),
            "--log-level",
            "WARNING",
            "--capture",
            "on",
        ],
        cwd=workdir,
        log_path=workdir / "codexgate-feed.log",
        env={"CODEXGATE_ADMIN_TOKEN": token},  # never shown
    )
    return (
        upstream,
        f"http://{LOOPBACK}:{upstream_port}",
        gateway,
        f"http://{LOOPBACK}:{gateway_port}",
    )


async def _measure(
    upstream: Service, upstream_base: str, gateway: Service, base: str, token: str, samples: int
) -> FeedDelay:
    await wait_ready(upstream, f"{upstream_base}{PING_PATH}")
    await wait_ready(gateway, f"{base}{HEALTH_PATH}")
    delays = [delay * 1000 for delay in await _delays(base, token, samples)]
    return FeedDelay(
        samples=len(delays),
        p50_ms=percentile(delays, 50),
        p99_ms=percentile(delays, 99),
        max_ms=max(delays),
    )


def feed_delay(runner: asyncio.Runner, workdir: Path, samples: int) -> FeedDelay:
    """Start the two processes, measure `samples` turns, stop them."""
    token = secrets.token_urlsafe(32)
    upstream, upstream_base, gateway, base = _services(workdir, token)
    print(f"live feed delay: {samples} turns through a codexgate of its own", flush=True)
    with upstream, gateway:
        delay = runner.run(_measure(upstream, upstream_base, gateway, base, token, samples))
    print(f"  live feed: {feed_line(delay)}", flush=True)
    return delay


def feed_line(delay: FeedDelay) -> str:
    """The case's figures."""
    return (
        f"turn end to usage event: p50 {delay.p50_ms:.1f} ms, p99 {delay.p99_ms:.1f} ms, "
        f"max {delay.max_ms:.1f} ms over {delay.samples} turns"
    )
