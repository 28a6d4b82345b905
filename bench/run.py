"""One benchmark run: rounds of every scenario against every target, order rotated each round."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout

from .load import (
    Counters,
    Turn,
    latencies,
    make_turn,
    make_usage_query,
    new_session,
    stream_megabytes_per_second,
    turns_per_second,
)
from .meter import Usage, metered
from .protocol import (
    BIG_PATH,
    MEGABYTE,
    SLOW_TURN,
    SMALL_TURN,
    create_frame,
    request_body,
    request_headers,
    seat_claims,
    usage_body,
    usage_headers,
    websocket_headers,
)
from .report import PEAK_RSS, ROUND_RSS, FigureValues, cpu_key, describe
from .settings import Settings
from .stats import percentile
from .websocket import make_ws_turn, websocket_turns_per_second

_T = TypeVar("_T")

SETTLE_WITHIN: Final = 15.0
# codexgate's recorder takes a batch's first item off the queue, lingers 50 ms, then writes it:
# meanwhile healthz shows the queue empty and the item uncounted. So the counters must also
# hold still this long (linger plus a write) before the run's traffic counts as accounted for.
STABLE_FOR: Final = 0.3
POLL_EVERY: Final = 0.05


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load generator sends its traffic: the upstream itself, or codexgate."""

    name: str
    base: str
    pids: tuple[int, ...] = ()  # the proxy's processes, whose CPU and memory are measured


@dataclass(frozen=True, slots=True)
class Workload:
    """What every request sends: a seat's headers, a Responses API body, the usage answer."""

    headers: Mapping[str, str]
    body: bytes
    ws_headers: Mapping[str, str]
    create: str
    usage_headers: Mapping[str, str]
    usage_bytes: int


Measure = Callable[[Target, Counters], Awaitable[FigureValues]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measurement, run against each target in the round's order."""

    name: str
    measure: Measure


Counts = tuple[int, int, int, int | None, int | None]


@dataclass(frozen=True, slots=True)
class Health:
    """codexgate's healthz after the run, once it had settled (or the wait ended)."""

    status: str
    capture: bool
    recorded: int
    dropped: int
    unattributed: int
    requests_logged: int | None  # None when healthz has no request-log counters
    requests_dropped: int | None
    queue_depth: int
    db_state: str
    last_error: str | None
    settled: bool  # the queue was empty and the counters held still for STABLE_FOR s
    moved_after_empty: bool = False  # counters went up after the queue first looked empty

    def counts(self) -> Counts:
        """The counters that must stop moving before the run's traffic is all accounted for."""
        return (
            self.recorded,
            self.dropped,
            self.unattributed,
            self.requests_logged,
            self.requests_dropped,
        )


@dataclass(frozen=True, slots=True)
class RunResult:
    """Every round's figures, per-target counters and each codexgate's final healthz."""

    rounds: list[dict[str, FigureValues]]
    counters: dict[str, Counters]
    health: dict[str, Health | None]


def workload() -> Workload:
    """Seat A's Codex CLI headers and a realistic body, for HTTP and WebSocket turns alike."""
    claims = seat_claims("seat_a")
    return Workload(
        headers=request_headers(claims),
        body=request_body(),
        ws_headers=websocket_headers(claims),
        create=create_frame(),
        usage_headers=usage_headers(claims),
        usage_bytes=len(usage_body()),
    )


def _usage_figures(key: str, usage: Usage, requests: int, scale: float = 1e6) -> FigureValues:
    """The proxy's CPU per request (µs by default) and its peak RSS (MB) for figure `key`."""
    cpu = usage.cpu_seconds / requests * scale if requests else math.nan
    return {cpu_key(key): cpu, PEAK_RSS: usage.peak_rss_bytes / MEGABYTE}


async def _rate_figures(
    key: str,
    settings: Settings,
    turn: Turn,
    concurrency: int,
    target: Target,
    counters: Counters,
) -> FigureValues:
    """Requests per second at `concurrency` after a warm-up, and what the proxy used for them."""
    async with new_session() as session:
        await turns_per_second(
            session, turn, counters, concurrency=concurrency, seconds=settings.warmup_seconds
        )
        async with metered(target.pids) as usage:
            rate = await turns_per_second(
                session, turn, counters, concurrency=concurrency, seconds=settings.seconds
            )
    return {key: rate.per_second, **_usage_figures(key, usage, rate.done)}


async def measure_rate(
    settings: Settings, load: Workload, concurrency: int, target: Target, counters: Counters
) -> FigureValues:
    """Small SSE turns per second at `concurrency`, after a warm-up."""
    turn = make_turn(target.base, SMALL_TURN, load.headers, load.body)
    return await _rate_figures(f"rps_{concurrency}", settings, turn, concurrency, target, counters)


async def measure_websocket(
    settings: Settings, load: Workload, concurrency: int, target: Target, counters: Counters
) -> FigureValues:
    """WebSocket turns per second on `concurrency` persistent connections, after a warm-up."""
    turn = make_ws_turn(target.base, load.ws_headers, load.create)
    key = f"ws_{concurrency}"
    async with new_session() as session:
        rate, usage = await websocket_turns_per_second(
            session,
            turn,
            counters,
            concurrency=concurrency,
            warmup=settings.warmup_seconds,
            seconds=settings.seconds,
            pids=target.pids,
        )
    return {key: rate.per_second, **_usage_figures(key, usage, rate.done)}


async def measure_usage(
    settings: Settings, load: Workload, target: Target, counters: Counters
) -> FigureValues:
    """GET /backend-api/wham/usage per second at the usage concurrency, after a warm-up."""
    concurrency = settings.usage_concurrency
    query = make_usage_query(target.base, load.usage_headers, load.usage_bytes)
    return await _rate_figures(
        f"usage_{concurrency}", settings, query, concurrency, target, counters
    )


async def measure_latency(
    settings: Settings, load: Workload, target: Target, counters: Counters
) -> FigureValues:
    """p50/p99 of time to first byte and to first event on the slow stream, in ms."""
    turn = make_turn(target.base, SLOW_TURN, load.headers, load.body)
    async with new_session() as session:
        sample = partial(
            latencies,
            session,
            turn,
            counters,
            concurrency=settings.latency_concurrency,
            spread=SLOW_TURN.duration,
        )
        await sample(samples=settings.warmup_samples)
        sampled = await sample(samples=settings.samples)
    values: FigureValues = {}
    for name, series in (("ttfb", sampled.first_byte), ("ttfe", sampled.first_event)):
        for percent in (50, 99):
            values[f"{name}_p{percent}"] = percentile(series, percent) * 1000
    values["latency_samples"] = float(len(sampled.first_event))
    return values


def _big_url(target: Target, megabytes: int) -> str:
    return f"{target.base}{BIG_PATH}?mb={megabytes}"


async def measure_stream(settings: Settings, target: Target, counters: Counters) -> FigureValues:
    """MB/s of one large stream read with iter_any, after a smaller warm-up stream."""
    warmup, megabytes = settings.warmup_megabytes, settings.megabytes
    async with new_session() as session:
        await stream_megabytes_per_second(
            session, _big_url(target, warmup), warmup * MEGABYTE, counters
        )
        async with metered(target.pids) as usage:
            rate = await stream_megabytes_per_second(
                session, _big_url(target, megabytes), megabytes * MEGABYTE, counters
            )
    return {"stream": rate, **_usage_figures("stream", usage, 1, scale=1e3)}


def scenarios(settings: Settings, load: Workload) -> list[Scenario]:
    """The measurements of one round, in order."""
    rates = [
        Scenario(f"SSE turns c={concurrency}", partial(measure_rate, settings, load, concurrency))
        for concurrency in settings.rate_concurrencies
    ]
    websockets = [
        Scenario(
            f"WS turns c={concurrency}", partial(measure_websocket, settings, load, concurrency)
        )
        for concurrency in settings.ws_concurrencies
    ]
    return [
        *rates,
        *websockets,
        Scenario(
            f"wham/usage c={settings.usage_concurrency}", partial(measure_usage, settings, load)
        ),
        Scenario("slow stream latency", partial(measure_latency, settings, load)),
        Scenario(f"{settings.megabytes} MB stream", partial(measure_stream, settings)),
    ]


async def run_round(
    number: int,
    order: Sequence[Target],
    settings: Settings,
    load: Workload,
    counters: Mapping[str, Counters],
) -> dict[str, FigureValues]:
    """Every scenario against every target in `order`; figure key → target name → value."""
    names = ", ".join(target.name for target in order)
    print(f"round {number}/{settings.rounds} (order: {names})", flush=True)
    figures: dict[str, FigureValues] = {}
    width = max(11, *(len(target.name) for target in order))
    for scenario in scenarios(settings, load):
        for target in order:
            values = await scenario.measure(target, counters[target.name])
            for key, value in values.items():
                if key == PEAK_RSS:  # the round keeps its largest peak
                    peaks = figures.setdefault(ROUND_RSS, {})
                    previous = peaks.get(target.name, math.nan)
                    peaks[target.name] = value if math.isnan(previous) else max(previous, value)
                else:
                    figures.setdefault(key, {})[target.name] = value
            print(f"  {scenario.name:<20} {target.name:<{width}} {describe(values)}", flush=True)
    return figures


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _health(body: Any) -> Health:
    """The parts of a healthz answer the bench reports; not settled yet."""
    snapshots, depth = body["snapshots"], int(body["queue"]["depth"])
    requests = body.get("requests") or {}
    return Health(
        status=str(body["status"]),
        capture=bool(body["capture"]),
        recorded=int(snapshots["recorded"]),
        dropped=int(snapshots["dropped"]),
        unattributed=int(snapshots["unattributed"]),
        requests_logged=_optional_int(requests.get("logged")),
        requests_dropped=_optional_int(requests.get("dropped")),
        queue_depth=depth,
        db_state=str(body["db"]["state"]),
        last_error=body["db"]["last_error"],
        settled=False,
    )


async def _read_health(session: ClientSession, base: str) -> Health | None:
    try:
        async with session.get(f"{base}/codexgate/healthz") as response:
            return _health(orjson.loads(await response.read()))
    except (ClientError, TimeoutError, ValueError, KeyError, TypeError):
        return None  # orjson.JSONDecodeError is a ValueError; the others mean another shape


async def settled_health(base: str, within: float = SETTLE_WITHIN) -> Health | None:
    """codexgate's healthz once its queue is empty and its counters held still for a while.

    Otherwise the last answer after `within` s, not settled.
    """
    deadline = time.perf_counter() + within
    last: Health | None = None
    first_empty: Counts | None = None  # the counters when the queue first looked empty
    quiet_since: float | None = None  # since when the queue was empty and nothing moved
    async with ClientSession(timeout=ClientTimeout(total=5.0)) as session:
        while time.perf_counter() < deadline:
            current = await _read_health(session, base)
            now = time.perf_counter()
            if current is None or current.queue_depth != 0:
                quiet_since = None
            else:
                first_empty = first_empty or current.counts()
                if quiet_since is None or last is None or last.counts() != current.counts():
                    quiet_since = now
                elif now - quiet_since >= STABLE_FOR:
                    moved = current.counts() != first_empty
                    return dataclasses.replace(current, settled=True, moved_after_empty=moved)
            last = current or last
            await asyncio.sleep(POLL_EVERY)
    if last is None:
        return None
    moved = first_empty is not None and last.counts() != first_empty
    return dataclasses.replace(last, moved_after_empty=moved)


def rotated(targets: Sequence[_T], index: int) -> list[_T]:
    """The targets (or cases) in round `index`'s order: each round starts one further along."""
    shift = index % len(targets)
    return [*targets[shift:], *targets[:shift]]


async def run(
    settings: Settings, targets: Sequence[Target], gateways: Mapping[str, str]
) -> RunResult:
    """All rounds with the target order rotated, then each codexgate's healthz (name → base)."""
    load = workload()
    counters = {target.name: Counters() for target in targets}
    rounds = []
    for index in range(settings.rounds):
        rounds.append(await run_round(index + 1, rotated(targets, index), settings, load, counters))
    health = {name: await settled_health(base) for name, base in gateways.items()}
    return RunResult(rounds=rounds, counters=counters, health=health)
