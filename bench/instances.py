"""SSE turns through one codexgate, through nginx in front of it, and through nginx in front of
two codexgates on the same PostgreSQL database.

One fake upstream of its own, two codexgate processes (capture on) on one fresh database of the
bench's PostgreSQL server, and two nginx processes with the bench's config: one with the first
codexgate as its only upstream server, one with both (round-robin, keep-alive to each). All run
for the whole case; each round measures small SSE turns at every concurrency through the three
routes back to back, the order rotated each round. The second codexgate stays up while the first
two routes run, idle, and its CPU then is reported apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import nginx, procfs
from .accounting import health_lines
from .load import Counters, make_turn, new_session, timed_turns_per_second, turns_per_second
from .meter import metered
from .postgres import BenchPostgres
from .processes import LOG_TAIL_LINES, LOOPBACK, Service, codexgate_service, free_ports, wait_ready
from .protocol import PING_PATH, REPO_ROOT, SMALL_TURN
from .report import number
from .run import Health, rotated, settled_health, workload
from .settings import Settings
from .stats import median, percentile

HEALTH_PATH: Final = "/codexgate/healthz"
ONE: Final = "one codexgate"
ONE_BEHIND_NGINX: Final = "nginx → one codexgate"
TWO_BEHIND_NGINX: Final = "nginx → two codexgates"
CASES: Final = (ONE, ONE_BEHIND_NGINX, TWO_BEHIND_NGINX)


@dataclass(frozen=True, slots=True)
class Route:
    """One way to the upstream: where the load goes, and whose CPU counts for it."""

    name: str
    base: str
    gateway_pids: tuple[int, ...]  # the codexgates that serve it
    idle_gateway_pids: tuple[int, ...]  # the codexgate that is up but serves none of it
    nginx_pids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CaseRun:
    """One measured run through one route; CPU in µs per turn, NaN where there is no process."""

    turns_per_second: float
    first_event_p50_ms: float
    first_event_p99_ms: float
    gateway_cpu_us: float  # every codexgate serving the route, summed
    idle_gateway_cpu_us: float  # the codexgate up beside it, serving nothing
    nginx_cpu_us: float
    server_cpu_us: float  # the PostgreSQL server: the postmaster and every process under it
    load_cpu_us: float  # the load generator (this process) and the fake upstream
    busy_cores: float  # the whole machine's busy CPU seconds per second
    outside_cores: float  # of it, what no process of this case used (other work on the machine)


@dataclass(frozen=True, slots=True)
class InstancesComparison:
    """Every round's runs (concurrency → route → run), and whether every turn was recorded."""

    rounds: list[dict[int, dict[str, CaseRun]]]
    healthy: bool
    health: list[str]
    counters: dict[str, Counters]

    def median(self, concurrency: int, case: str, figure: Callable[[CaseRun], float]) -> float:
        """The median of one figure of `case` at `concurrency` over the rounds."""
        return median(figure(runs[concurrency][case]) for runs in self.rounds)

    def ratio(
        self, concurrency: int, numerator: str, denominator: str, figure: Callable[[CaseRun], float]
    ) -> float:
        """The median over the rounds of one figure's ratio between two cases run back to back."""
        return median(
            _divided(figure(runs[concurrency][numerator]), figure(runs[concurrency][denominator]))
            for runs in self.rounds
        )


def _divided(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def _gateway(
    settings: Settings, workdir: Path, name: str, database: str, port: int, upstream_port: int
) -> Service:
    """A codexgate (capture on) on `port` with its data on the shared database, not started."""
    return codexgate_service(
        f"codexgate {name}",
        port=port,
        upstream_port=upstream_port,
        workdir=workdir,
        log_name=f"instances-codexgate-{name}.log",
        extra_args=settings.gateway_args,
        env={"CODEXGATE_DB": database},
    )


def _pids(service: Service) -> tuple[int, ...]:
    return () if service.process is None else (service.process.pid,)


def _nginx_pids(service: Service) -> tuple[int, ...]:
    """nginx's master and its workers."""
    pids = _pids(service)
    return () if not pids else (pids[0], *procfs.children(pids[0]))


async def _measure(
    settings: Settings,
    route: Route,
    concurrency: int,
    counters: Counters,
    postgres: BenchPostgres,
    load_pids: tuple[int, ...],
    bench_pids: tuple[int, ...],
) -> CaseRun:
    """Small SSE turns at `concurrency` through `route` after a warm-up, each turn timed."""
    load = workload()
    turn = make_turn(route.base, SMALL_TURN, load.headers, load.body)
    server_pids = postgres.pids()  # asked for each time: the pools may have grown
    everything = (*bench_pids, *server_pids)
    async with new_session() as session:
        await turns_per_second(
            session,
            turn,
            counters,
            concurrency=concurrency,
            seconds=settings.instance_warmup_seconds,
        )
        machine_before = procfs.machine_busy_seconds()
        bench_before = procfs.cpu_seconds(everything)
        async with (
            metered(route.gateway_pids) as gateways,
            metered(route.idle_gateway_pids) as idle,
            metered(route.nginx_pids) as proxy,
            metered(server_pids) as server,
            metered(load_pids) as load_generator,
        ):
            timed = await timed_turns_per_second(
                session, turn, counters, concurrency=concurrency, seconds=settings.instance_seconds
            )
        machine = procfs.machine_busy_seconds() - machine_before
        bench = procfs.cpu_seconds(everything) - bench_before
    done = timed.rate.done or math.nan
    seconds = timed.rate.seconds
    return CaseRun(
        turns_per_second=timed.rate.per_second,
        first_event_p50_ms=percentile(timed.first_event, 50) * 1000,
        first_event_p99_ms=percentile(timed.first_event, 99) * 1000,
        gateway_cpu_us=gateways.cpu_seconds / done * 1e6,
        idle_gateway_cpu_us=idle.cpu_seconds / done * 1e6,
        nginx_cpu_us=proxy.cpu_seconds / done * 1e6,
        server_cpu_us=server.cpu_seconds / done * 1e6,
        load_cpu_us=load_generator.cpu_seconds / done * 1e6,
        busy_cores=machine / seconds,
        outside_cores=max(0.0, machine - bench) / seconds,
    )


def _summed(first: Health | None, second: Health | None) -> Health | None:
    """Two codexgates' healthz counters as one, settled when both were."""
    if first is None or second is None:
        return None

    def added(one: int | None, other: int | None) -> int | None:
        return None if one is None or other is None else one + other

    return dataclasses.replace(
        first,
        status=first.status if first.status == second.status else f"{first.status}/{second.status}",
        recorded=first.recorded + second.recorded,
        dropped=first.dropped + second.dropped,
        unattributed=first.unattributed + second.unattributed,
        requests_logged=added(first.requests_logged, second.requests_logged),
        requests_dropped=added(first.requests_dropped, second.requests_dropped),
        queue_depth=first.queue_depth + second.queue_depth,
        settled=first.settled and second.settled,
        moved_after_empty=first.moved_after_empty or second.moved_after_empty,
    )


def _all_traffic(counters: dict[str, Counters]) -> Counters:
    """What the load generator saw over every route, as one tally."""
    total = Counters()
    for counter in counters.values():
        total.turns += counter.turns
        total.errors += counter.errors
        total.first_errors.extend(counter.first_errors)
    return total


async def _health(bases: Sequence[str], counters: dict[str, Counters]) -> tuple[bool, list[str]]:
    """Both codexgates' healthz together against every turn the load generator completed."""
    first, second = [await settled_health(base) for base in bases]
    # The second codexgate serves only the route through both: its share shows the balancing.
    split = (
        f"  the second codexgate recorded {second.recorded:,} snapshots, of "
        f"{counters[TWO_BEHIND_NGINX].turns:,} turns answered through {TWO_BEHIND_NGINX}"
        if first is not None and second is not None
        else "  a codexgate did not answer healthz"
    )
    good, lines = health_lines("both instances", _summed(first, second), _all_traffic(counters))
    return good, [*lines, split]


async def _rounds(
    settings: Settings,
    postgres: BenchPostgres,
    upstream: tuple[Service, str],
    gateways: Sequence[tuple[Service, str]],
    proxies: tuple[tuple[Service, str], tuple[Service, str]],
) -> InstancesComparison:
    """Wait for every process, run the rounds, then check what both codexgates recorded."""
    await wait_ready(upstream[0], f"{upstream[1]}{PING_PATH}")
    (first, first_base), (second, second_base) = gateways
    # One after the other: the first migrates the fresh database, the second finds it done.
    await wait_ready(first, f"{first_base}{HEALTH_PATH}")
    with second:
        await wait_ready(second, f"{second_base}{HEALTH_PATH}")
        for service, base in proxies:
            await wait_ready(service, f"{base}{HEALTH_PATH}")
        (one_nginx, one_base), (two_nginx, two_base) = proxies
        routes = [
            Route(ONE, first_base, _pids(first), _pids(second), ()),
            Route(ONE_BEHIND_NGINX, one_base, _pids(first), _pids(second), _nginx_pids(one_nginx)),
            Route(
                TWO_BEHIND_NGINX,
                two_base,
                (*_pids(first), *_pids(second)),
                (),
                _nginx_pids(two_nginx),
            ),
        ]
        load_pids = (os.getpid(), *_pids(upstream[0]))
        bench_pids = (
            *load_pids,
            *_pids(first),
            *_pids(second),
            *_nginx_pids(one_nginx),
            *_nginx_pids(two_nginx),
        )
        counters = {route.name: Counters() for route in routes}
        rounds: list[dict[int, dict[str, CaseRun]]] = []
        for index in range(settings.instance_rounds):
            order = rotated(routes, index)
            names = "; ".join(route.name for route in order)
            print(f"  round {index + 1}/{settings.instance_rounds} (order: {names})", flush=True)
            runs: dict[int, dict[str, CaseRun]] = {}
            for concurrency in settings.instance_concurrencies:
                for route in order:
                    run = await _measure(
                        settings,
                        route,
                        concurrency,
                        counters[route.name],
                        postgres,
                        load_pids,
                        bench_pids,
                    )
                    runs.setdefault(concurrency, {})[route.name] = run
                    print(f"    c={concurrency:<3} {route.name:<22} {run_line(run)}", flush=True)
            rounds.append(runs)
        healthy, lines = await _health((first_base, second_base), counters)
    healthy = healthy and all(counter.errors == 0 for counter in counters.values())
    return InstancesComparison(rounds=rounds, healthy=healthy, health=lines, counters=counters)


def instances_comparison(
    runner: asyncio.Runner,
    settings: Settings,
    workdir: Path,
    postgres: BenchPostgres,
    nginx_binary: Path,
) -> InstancesComparison:
    """Start the upstream, both codexgates and both nginx, run the rounds, stop them all."""
    upstream_port, first_port, second_port, one_port, two_port = free_ports(5)
    upstream = Service(
        name="fake upstream",
        argv=[sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
        cwd=REPO_ROOT,
        log_path=workdir / "instances-upstream.log",
    )
    database = runner.run(postgres.fresh_database())
    first = _gateway(settings, workdir, "1", database.dsn, first_port, upstream_port)
    second = _gateway(settings, workdir, "2", database.dsn, second_port, upstream_port)
    one_nginx = nginx.service(nginx_binary, workdir / "nginx-one", one_port, [first_port])
    two_nginx = nginx.service(
        nginx_binary, workdir / "nginx-two", two_port, [first_port, second_port]
    )
    concurrencies = " and ".join(str(value) for value in settings.instance_concurrencies)
    print(
        f"SSE turns at concurrency {concurrencies}: one codexgate, nginx in front of it, nginx in "
        f"front of two on one PostgreSQL database, {settings.instance_rounds} round(s)",
        flush=True,
    )
    with ExitStack() as stack:
        for service in (upstream, first, one_nginx, two_nginx):
            stack.enter_context(service)
        # The second codexgate starts once the first has migrated the database (in _rounds).
        stack.callback(second.stop)
        comparison = runner.run(
            _rounds(
                settings,
                postgres,
                (upstream, f"http://{LOOPBACK}:{upstream_port}"),
                [
                    (first, f"http://{LOOPBACK}:{first_port}"),
                    (second, f"http://{LOOPBACK}:{second_port}"),
                ],
                (
                    (one_nginx, f"http://{LOOPBACK}:{one_port}"),
                    (two_nginx, f"http://{LOOPBACK}:{two_port}"),
                ),
            )
        )
    for service in (first, second, one_nginx, two_nginx):
        if service.exit_code != 0 or service.killed:
            how = "killed after the SIGTERM wait ran out" if service.killed else "stopped"
            stopped = f"{service.name} {how}, exit code {service.exit_code}; its log ends:"
            comparison = dataclasses.replace(
                comparison,
                healthy=False,
                health=[*comparison.health, stopped, *service.log_lines()[-LOG_TAIL_LINES:]],
            )
    return comparison


def run_line(run: CaseRun) -> str:
    """One route's figures in one round."""
    parts = [
        f"{run.turns_per_second:,.0f} turns/s",
        f"first event p50 {run.first_event_p50_ms:.2f} ms p99 {run.first_event_p99_ms:.2f} ms",
        f"codexgate CPU {run.gateway_cpu_us:,.0f} µs/turn",
    ]
    if not math.isnan(run.idle_gateway_cpu_us):
        parts.append(f"idle codexgate {run.idle_gateway_cpu_us:,.0f}")
    if not math.isnan(run.nginx_cpu_us):
        parts.append(f"nginx {run.nginx_cpu_us:,.0f}")
    parts.append(f"PostgreSQL {run.server_cpu_us:,.0f}")
    parts.append(f"load generator and upstream {run.load_cpu_us:,.0f}")
    parts.append(f"machine busy {run.busy_cores:.2f} cores ({run.outside_cores:.2f} outside)")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the table: its label, the figure, decimals, whether a ratio means anything."""

    label: str
    figure: Callable[[CaseRun], float]
    decimals: int
    ratio: bool = True


ROWS: Final = (
    Row("turns/s", lambda run: run.turns_per_second, 0),
    Row("time to first event p50 (ms)", lambda run: run.first_event_p50_ms, 2),
    Row("time to first event p99 (ms)", lambda run: run.first_event_p99_ms, 2),
    Row("codexgate CPU per turn, every instance serving (µs)", lambda run: run.gateway_cpu_us, 0),
    Row("idle second codexgate's CPU per turn (µs)", lambda run: run.idle_gateway_cpu_us, 0),
    Row("nginx CPU per turn (µs)", lambda run: run.nginx_cpu_us, 0),
    Row("PostgreSQL server CPU per turn (µs)", lambda run: run.server_cpu_us, 0),
    Row("load generator and fake upstream CPU per turn (µs)", lambda run: run.load_cpu_us, 0),
    Row("machine busy, every process (cores)", lambda run: run.busy_cores, 2),
    Row(
        "of it outside the bench's processes (cores)",
        lambda run: run.outside_cores,
        2,
        ratio=False,
    ),
)


def _cell(value: float, decimals: int) -> str:
    return "—" if math.isnan(value) else number(value, decimals)


def instances_table(comparison: InstancesComparison) -> list[str]:
    """The markdown table: each figure at each concurrency, the three routes side by side.

    The ratios are medians of each round's ratio (the three routes ran back to back), not
    ratios of the medians.
    """
    lines = [
        f"| SSE turns | {' | '.join(CASES)} | two / one, both behind nginx | two / one alone |",
        "|---|" + "---:|" * (len(CASES) + 2),
    ]
    concurrencies = sorted(comparison.rounds[0], reverse=True) if comparison.rounds else []
    for concurrency in concurrencies:
        for row in ROWS:
            values = [comparison.median(concurrency, case, row.figure) for case in CASES]
            ratios = [
                comparison.ratio(concurrency, TWO_BEHIND_NGINX, case, row.figure)
                if row.ratio
                else math.nan
                for case in (ONE_BEHIND_NGINX, ONE)
            ]
            lines.append(
                f"| concurrency {concurrency}, {row.label} | "
                + " | ".join(_cell(value, row.decimals) for value in values)
                + " | "
                + " | ".join(_cell(ratio, 2) for ratio in ratios)
                + " |"
            )
    return lines


def instances_lines(comparison: InstancesComparison, cores: int | None) -> list[str]:
    """The table, what (c)'s CPU per turn predicts per core, the accounting check."""
    lines = instances_table(comparison)
    concurrency = max(comparison.rounds[0]) if comparison.rounds else None
    if concurrency is not None:
        gateway = comparison.median(concurrency, TWO_BEHIND_NGINX, lambda run: run.gateway_cpu_us)
        whole = comparison.median(
            concurrency,
            TWO_BEHIND_NGINX,
            lambda run: run.gateway_cpu_us + run.nginx_cpu_us + run.server_cpu_us,
        )
        lines.append(
            f"  per core of CPU, from two codexgates' CPU per turn at concurrency {concurrency}: "
            f"{1e6 / gateway:,.0f} turns/s for codexgate alone, {1e6 / whole:,.0f} turns/s with "
            f"nginx's and the PostgreSQL server's ({whole:,.0f} µs per turn together); "
            f"this machine has {cores or 'an unknown number of'} cores"
        )
    lines.extend(comparison.health)
    lines.append(
        "  request errors: "
        + ", ".join(f"{name} {counter.errors}" for name, counter in comparison.counters.items())
    )
    for name, counter in comparison.counters.items():
        lines.extend(f"    {name}: {message}" for message in counter.first_errors)
    return lines
