"""A proxy's memory while it holds many open, silent streams: before, with them, after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import ClientError, ClientResponse, ClientSession, ClientTimeout, TCPConnector

from . import procfs
from .load import BadAnswer, Counters
from .protocol import IDLE_TURN, MEGABYTE
from .run import Target, Workload

OPENING_AT_ONCE: Final = 64  # connection attempts in flight, well inside the listen backlog
OPEN_WITHIN: Final = 60.0
SETTLE: Final = 1.0  # after the last stream opened, before RSS is read
AFTER_CLOSE: Final = 3.0  # for the proxy to notice the hang-ups and free what they held


@dataclass(frozen=True, slots=True)
class IdleResult:
    """RSS of a proxy's processes before, while holding `opened` idle streams, and after."""

    name: str
    wanted: int
    opened: int
    open_seconds: float
    before: int  # bytes
    holding: int
    after: int
    errors: int


class _Streams:
    """The open responses, each read up to its first event, and the failures."""

    def __init__(self, session: ClientSession, target: Target, load: Workload) -> None:
        self._session = session
        self._url = f"{target.base}{IDLE_TURN.path()}"
        self._load = load
        self.open: list[ClientResponse] = []
        self.counters = Counters()

    async def _open_one(self, gate: asyncio.Semaphore) -> None:
        """Send one turn and read until its first event has arrived; keep the response open."""
        async with gate:
            try:
                response = await self._session.post(
                    self._url, data=self._load.body, headers=self._load.headers
                )
            except (ClientError, OSError) as exc:  # TimeoutError is an OSError
                self.counters.fail(exc)
                return
        try:
            head = b""
            while b"\n\n" not in head:
                chunk = await response.content.readany()
                if not chunk:
                    raise BadAnswer(f"status {response.status}, the stream ended early")
                head += chunk
            if response.status != 200:
                raise BadAnswer(f"status {response.status}")
        except (ClientError, OSError, BadAnswer) as exc:
            response.close()
            self.counters.fail(exc)
        else:
            self.open.append(response)

    async def open_all(self, count: int) -> None:
        """Open `count` streams, OPENING_AT_ONCE at a time."""
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        async with asyncio.timeout(OPEN_WITHIN), asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(self._open_one(gate))

    def close_all(self) -> None:
        """Hang up every stream (closing its connection)."""
        for response in self.open:
            response.close()


async def idle_streams(target: Target, load: Workload, count: int) -> IdleResult:
    """Hold `count` idle streams open through `target`, reading its processes' RSS around it."""
    pids: Sequence[int] = target.pids
    before = procfs.rss_bytes(pids)
    session = ClientSession(
        connector=TCPConnector(limit=0, force_close=True),
        timeout=ClientTimeout(total=None, sock_connect=10.0, sock_read=None),
    )
    async with session:
        streams = _Streams(session, target, load)
        started = time.perf_counter()
        try:
            try:
                await streams.open_all(count)
            except TimeoutError as exc:  # measure with the streams that did open
                streams.counters.fail(exc)
            open_seconds = time.perf_counter() - started
            await asyncio.sleep(SETTLE)
            holding = procfs.rss_bytes(pids)
        finally:
            streams.close_all()
    await asyncio.sleep(AFTER_CLOSE)
    return IdleResult(
        name=target.name,
        wanted=count,
        opened=len(streams.open),
        open_seconds=open_seconds,
        before=before,
        holding=holding,
        after=procfs.rss_bytes(pids),
        errors=streams.counters.errors,
    )


def idle_lines(result: IdleResult) -> list[str]:
    """What holding the idle streams cost the proxy, for the summary."""
    line = (
        f"{result.name}: RSS {result.before / MEGABYTE:.1f} MB before, "
        f"{result.holding / MEGABYTE:.1f} MB with {result.opened:,} of {result.wanted:,} idle "
        f"streams open (opened in {result.open_seconds:.1f} s, "
        f"{(result.holding - result.before) / max(1, result.opened) / 1024:.1f} KiB per stream), "
        f"{result.after / MEGABYTE:.1f} MB {AFTER_CLOSE:g} s after they closed"
    )
    return [line] + ([f"  {result.errors} stream(s) failed to open"] if result.errors else [])
