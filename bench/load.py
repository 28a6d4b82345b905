"""The HTTP load generator: requests per second, first-byte and first-event latency, MB/s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from .protocol import MEGABYTE, USAGE_PATH, TurnShape, sse_turn

TURN_TIMEOUT: Final = 60.0
STREAM_IDLE_TIMEOUT: Final = 30.0
SLOWEST_STREAM: Final = 2 * MEGABYTE  # bytes/s below which a large stream counts as stalled
MAX_TURNS_PER_WORKER: Final = 10_000_000  # a count bound on top of the time bound
ERROR_PAUSE: Final = 0.05
KEPT_ERRORS: Final = 5


class BadAnswer(Exception):
    """An answer with an unexpected status or a body of the wrong length."""


Kind = Literal["turn", "usage"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One ready-to-send request (a Codex turn, a usage query) and its complete answer's length."""

    url: str
    headers: Mapping[str, str]
    body: bytes | None
    expected_bytes: int
    method: str = "POST"
    kind: Kind = "turn"


def make_turn(base: str, shape: TurnShape, headers: Mapping[str, str], body: bytes) -> Turn:
    """The turn of `shape` sent to the target at `base`."""
    expected = sum(len(event) for event in sse_turn(shape.events, shape.size))
    return Turn(url=f"{base}{shape.path()}", headers=headers, body=body, expected_bytes=expected)


def make_usage_query(base: str, headers: Mapping[str, str], expected_bytes: int) -> Turn:
    """GET /backend-api/wham/usage on the target at `base`."""
    return Turn(
        url=f"{base}{USAGE_PATH}",
        headers=headers,
        body=None,
        expected_bytes=expected_bytes,
        method="GET",
        kind="usage",
    )


@dataclass(slots=True)
class Counters:
    """What one target answered over the whole run, per kind of traffic, and the failures.

    Each count goes up when codexgate has shown the client what it captures from: the status
    of an HTTP answer, the 101 of a WebSocket handshake, a frame as it arrives.
    """

    turns: int = 0  # SSE turns answered 200
    usage: int = 0  # wham/usage queries answered 200
    streams: int = 0  # large streams answered 200
    ws_opened: int = 0  # WebSocket handshakes answered 101
    ws_rate_limits: int = 0  # codex.rate_limits frames received
    ws_turns: int = 0  # WebSocket turns whose response.completed arrived
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)

    def answered(self, kind: Kind) -> None:
        """Count a request of `kind` answered 200."""
        if kind == "turn":
            self.turns += 1
        else:
            self.usage += 1

    def fail(self, error: BaseException) -> None:
        """Count a failed request and keep the first few messages."""
        self.errors += 1
        if len(self.first_errors) < KEPT_ERRORS:
            self.first_errors.append(f"{error.__class__.__name__}: {error}")


def new_session() -> ClientSession:
    """A client session without a connection limit, as one scenario's load generator uses."""
    return ClientSession(
        connector=TCPConnector(limit=0),
        timeout=ClientTimeout(total=None, sock_connect=10.0, sock_read=STREAM_IDLE_TIMEOUT),
    )


async def _send_turn(session: ClientSession, turn: Turn, counters: Counters) -> None:
    """Send one request and read the whole answer, checking status and length."""
    async with asyncio.timeout(TURN_TIMEOUT):
        async with session.request(
            turn.method, turn.url, data=turn.body, headers=turn.headers
        ) as response:
            if response.status == 200:
                counters.answered(turn.kind)
            body = await response.read()
    if response.status != 200 or len(body) != turn.expected_bytes:
        raise BadAnswer(f"status {response.status}, {len(body)} of {turn.expected_bytes} bytes")


@dataclass(slots=True)
class _Tally:
    """Complete turns of one rate measurement."""

    done: int = 0


@dataclass(frozen=True, slots=True)
class Rate:
    """Complete requests (or turns) of one rate measurement, and how long it took."""

    done: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Complete requests per second."""
        return self.done / self.seconds if self.seconds > 0 else float("nan")


async def _turn_worker(
    session: ClientSession, turn: Turn, counters: Counters, deadline: float, tally: _Tally
) -> None:
    """Send turns back to back until the deadline, counting the complete ones."""
    for _ in range(MAX_TURNS_PER_WORKER):
        if time.perf_counter() >= deadline:
            return
        try:
            await _send_turn(session, turn, counters)
        except (ClientError, TimeoutError, BadAnswer) as exc:
            counters.fail(exc)
            await asyncio.sleep(ERROR_PAUSE)
        else:
            tally.done += 1


async def turns_per_second(
    session: ClientSession, turn: Turn, counters: Counters, *, concurrency: int, seconds: float
) -> Rate:
    """Complete requests with `concurrency` workers sending for `seconds`."""
    tally = _Tally()
    started = time.perf_counter()
    deadline = started + seconds
    async with asyncio.timeout(seconds + TURN_TIMEOUT + 5.0), asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(_turn_worker(session, turn, counters, deadline, tally))
    return Rate(tally.done, time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class Latencies:
    """Seconds from sending a turn to its response headers, and to its first complete event."""

    first_byte: list[float]
    first_event: list[float]


async def _timed_turn(
    session: ClientSession, turn: Turn, counters: Counters
) -> tuple[float, float]:
    """Send one turn; the times to its headers and to its first complete event, in seconds."""
    first_event: float | None = None
    head = b""
    received = 0
    async with asyncio.timeout(TURN_TIMEOUT):
        started = time.perf_counter()
        async with session.request(
            turn.method, turn.url, data=turn.body, headers=turn.headers
        ) as response:
            first_byte = time.perf_counter() - started
            if response.status == 200:
                counters.answered(turn.kind)
            async for chunk in response.content.iter_any():
                if first_event is None:
                    head += chunk
                    if b"\n\n" in head:
                        first_event = time.perf_counter() - started
                received += len(chunk)
    if response.status != 200 or received != turn.expected_bytes or first_event is None:
        raise BadAnswer(f"status {response.status}, {received} of {turn.expected_bytes} bytes")
    return first_byte, first_event


@dataclass(frozen=True, slots=True)
class TimedRate:
    """Complete turns of one rate measurement, and each one's seconds to its first event."""

    rate: Rate
    first_event: list[float]


async def _timed_turn_worker(
    session: ClientSession,
    turn: Turn,
    counters: Counters,
    deadline: float,
    first_events: list[float],
) -> None:
    """Send timed turns back to back until the deadline, keeping each complete one's time."""
    for _ in range(MAX_TURNS_PER_WORKER):
        if time.perf_counter() >= deadline:
            return
        try:
            _, first_event = await _timed_turn(session, turn, counters)
        except (ClientError, TimeoutError, BadAnswer) as exc:
            counters.fail(exc)
            await asyncio.sleep(ERROR_PAUSE)
        else:
            first_events.append(first_event)


async def timed_turns_per_second(
    session: ClientSession, turn: Turn, counters: Counters, *, concurrency: int, seconds: float
) -> TimedRate:
    """As turns_per_second, also timing each turn's first event (reading it in chunks)."""
    first_events: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    async with asyncio.timeout(seconds + TURN_TIMEOUT + 5.0), asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(_timed_turn_worker(session, turn, counters, deadline, first_events))
    rate = Rate(len(first_events), time.perf_counter() - started)
    return TimedRate(rate, first_events)


async def _latency_worker(
    session: ClientSession,
    turn: Turn,
    counters: Counters,
    tickets: Iterator[int],
    into: Latencies,
    start_after: float,
) -> None:
    """After `start_after` s, take sample tickets until none are left, timing a turn for each."""
    await asyncio.sleep(start_after)
    for _ in tickets:
        try:
            first_byte, first_event = await _timed_turn(session, turn, counters)
        except (ClientError, TimeoutError, BadAnswer) as exc:
            counters.fail(exc)
            await asyncio.sleep(ERROR_PAUSE)
        else:
            into.first_byte.append(first_byte)
            into.first_event.append(first_event)


async def latencies(
    session: ClientSession,
    turn: Turn,
    counters: Counters,
    *,
    samples: int,
    concurrency: int,
    spread: float,
) -> Latencies:
    """`samples` timed turns, `concurrency` at a time, worker starts spread over `spread` s."""
    into = Latencies(first_byte=[], first_event=[])
    tickets = iter(range(samples))
    gap = spread / concurrency  # so that the workers' turns do not start in lock step
    async with asyncio.timeout(spread + samples * TURN_TIMEOUT / concurrency + 5.0):
        async with asyncio.TaskGroup() as group:
            for index in range(concurrency):
                group.create_task(
                    _latency_worker(session, turn, counters, tickets, into, index * gap)
                )
    return into


async def stream_megabytes_per_second(
    session: ClientSession, url: str, expected_bytes: int, counters: Counters
) -> float:
    """Read one large stream with iter_any; decimal MB/s from sending the request to its end."""
    received = 0
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(STREAM_IDLE_TIMEOUT + expected_bytes / SLOWEST_STREAM),
            session.get(url) as response,
        ):
            if response.status == 200:
                counters.streams += 1
            async for chunk in response.content.iter_any():
                received += len(chunk)
        elapsed = time.perf_counter() - started
        if response.status != 200 or received != expected_bytes:
            raise BadAnswer(f"status {response.status}, {received} of {expected_bytes} bytes")
    except (ClientError, TimeoutError, BadAnswer) as exc:
        counters.fail(exc)
        return float("nan")
    return received / elapsed / MEGABYTE
