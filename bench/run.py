"""One benchmark run: rounds of every scenario against both targets, order rotated each round."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout

from .load import (
    Counters,
    latencies,
    make_turn,
    new_session,
    stream_megabytes_per_second,
    turns_per_second,
)
from .protocol import (
    BIG_PATH,
    MEGABYTE,
    SLOW_TURN,
    SMALL_TURN,
    request_body,
    request_headers,
    seat_claims,
)
from .report import FigureValues, describe
from .settings import Settings
from .stats import percentile

SETTLE_WITHIN: Final = 15.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load generator sends its traffic: the upstream itself, or codexgate."""

    name: str
    base: str


@dataclass(frozen=True, slots=True)
class Workload:
    """The request every turn sends: a seat's headers and a Responses API body."""

    headers: Mapping[str, str]
    body: bytes


Measure = Callable[[Target, Counters], Awaitable[FigureValues]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measurement, run against each target in the round's order."""

    name: str
    measure: Measure


@dataclass(frozen=True, slots=True)
class Health:
    """codexgate's healthz after the run, once its snapshot queue was empty (or the wait ended)."""

    status: str
    recorded: int
    dropped: int
    unattributed: int
    queue_depth: int
    db_state: str
    last_error: str | None
    settled: bool


@dataclass(frozen=True, slots=True)
class RunResult:
    """Every round's figures, per-target counters and codexgate's final healthz."""

    rounds: list[dict[str, FigureValues]]
    counters: dict[str, Counters]
    health: Health | None


def workload() -> Workload:
    """Seat A's Codex CLI headers and a realistic body."""
    return Workload(headers=request_headers(seat_claims("seat_a")), body=request_body())


async def measure_rate(
    settings: Settings, load: Workload, concurrency: int, target: Target, counters: Counters
) -> FigureValues:
    """Small SSE turns per second at `concurrency`, after a warm-up."""
    turn = make_turn(target.base, SMALL_TURN, load.headers, load.body)
    async with new_session() as session:
        await turns_per_second(
            session, turn, counters, concurrency=concurrency, seconds=settings.warmup_seconds
        )
        rate = await turns_per_second(
            session, turn, counters, concurrency=concurrency, seconds=settings.seconds
        )
    return {f"rps_{concurrency}": rate}


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
        rate = await stream_megabytes_per_second(
            session, _big_url(target, megabytes), megabytes * MEGABYTE, counters
        )
    return {"stream": rate}


def scenarios(settings: Settings, load: Workload) -> list[Scenario]:
    """The measurements of one round, in order."""
    rates = [
        Scenario(f"turns c={concurrency}", partial(measure_rate, settings, load, concurrency))
        for concurrency in settings.rate_concurrencies
    ]
    return [
        *rates,
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
    print(f"round {number}/{settings.rounds} ({order[0].name} first)", flush=True)
    figures: dict[str, FigureValues] = {}
    for scenario in scenarios(settings, load):
        for target in order:
            values = await scenario.measure(target, counters[target.name])
            for key, value in values.items():
                figures.setdefault(key, {})[target.name] = value
            print(f"  {scenario.name:<22} {target.name:<10} {describe(values)}", flush=True)
    return figures


def _health(body: Any) -> Health:
    """The parts of a healthz answer the bench reports; settled when the queue is empty."""
    snapshots, depth = body["snapshots"], int(body["queue"]["depth"])
    return Health(
        status=str(body["status"]),
        recorded=int(snapshots["recorded"]),
        dropped=int(snapshots["dropped"]),
        unattributed=int(snapshots["unattributed"]),
        queue_depth=depth,
        db_state=str(body["db"]["state"]),
        last_error=body["db"]["last_error"],
        settled=depth == 0,
    )


async def settled_health(base: str, within: float = SETTLE_WITHIN) -> Health | None:
    """codexgate's healthz once its snapshot queue is empty, or the last one after `within` s."""
    deadline = time.perf_counter() + within
    last: Health | None = None
    async with ClientSession(timeout=ClientTimeout(total=5.0)) as session:
        while time.perf_counter() < deadline:
            try:
                async with session.get(f"{base}/codexgate/healthz") as response:
                    last = _health(orjson.loads(await response.read()))
            except (ClientError, TimeoutError, ValueError, KeyError, TypeError):
                pass  # orjson.JSONDecodeError is a ValueError; the others mean another shape
            if last is not None and last.settled:
                return last
            await asyncio.sleep(0.1)
    return last


async def run(settings: Settings, targets: Sequence[Target], gateway_base: str) -> RunResult:
    """All rounds, direct-first and codexgate-first alternating, then codexgate's healthz."""
    load = workload()
    counters = {target.name: Counters() for target in targets}
    rounds = []
    for index in range(settings.rounds):
        order = list(targets) if index % 2 == 0 else list(reversed(targets))
        rounds.append(await run_round(index + 1, order, settings, load, counters))
    health = await settled_health(gateway_base)
    return RunResult(rounds=rounds, counters=counters, health=health)
