"""SSE turns through codexgate with SQLite and with PostgreSQL as its store, in one run.

Two codexgate processes (capture on) in front of one fake upstream of their own, one with a
SQLite file and one with a database on the bench's throwaway PostgreSQL server; every round runs
small SSE turns at concurrency 32 against both, the order rotated each round, as the main rounds
do. Recording is off the proxy's hot path (a queue and a writer task), so the store should not
show in the turn rate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .accounting import health_lines
from .load import Counters, make_turn, new_session, turns_per_second
from .meter import metered
from .postgres import BenchPostgres
from .processes import LOG_TAIL_LINES, LOOPBACK, Service, codexgate_service, free_ports, wait_ready
from .protocol import PING_PATH, REPO_ROOT, SMALL_TURN
from .recording import POSTGRESQL, SQLITE
from .run import Target, rotated, settled_health, workload
from .settings import Settings
from .stats import median

CONCURRENCY: Final = 32
HEALTH_PATH: Final = "/codexgate/healthz"
# The target: PostgreSQL as the store costs at most 5 % of the SSE turn rate.
STORE_BUDGET: Final = 0.05


@dataclass(frozen=True, slots=True)
class StoreRound:
    """One round's figures for one store."""

    turns_per_second: float
    gateway_cpu_us: float  # codexgate's CPU per turn
    server_cpu_us: float  # the PostgreSQL server's CPU per turn; NaN for SQLite


@dataclass(frozen=True, slots=True)
class StoreComparison:
    """Every round's figures per store, and whether both codexgates recorded every turn."""

    rounds: list[dict[str, StoreRound]]
    healthy: bool
    health: list[str]  # healthz of each codexgate checked against the traffic it saw
    counters: dict[str, Counters]  # what each store's codexgate answered, and the failures

    def turns(self, store: str) -> float:
        """Median turns per second of `store` over the rounds."""
        return median(figures[store].turns_per_second for figures in self.rounds)

    def gateway_cpu(self, store: str) -> float:
        """Median CPU µs per turn of `store`'s codexgate."""
        return median(figures[store].gateway_cpu_us for figures in self.rounds)

    def server_cpu(self) -> float:
        """Median CPU µs per turn of the PostgreSQL server."""
        return median(figures[POSTGRESQL].server_cpu_us for figures in self.rounds)

    def total_cpu(self, store: str) -> float:
        """Median CPU µs per turn of `store`'s codexgate plus, for PostgreSQL, the server."""
        server = store == POSTGRESQL
        return median(
            figures[store].gateway_cpu_us + (figures[store].server_cpu_us if server else 0.0)
            for figures in self.rounds
        )

    def ratios(self) -> list[float]:
        """PostgreSQL's turns/s over SQLite's, round by round (each pair ran back to back)."""
        return [
            figures[POSTGRESQL].turns_per_second / figures[SQLITE].turns_per_second
            for figures in self.rounds
        ]


def _gateway(
    settings: Settings, workdir: Path, store: str, database: str, port: int, upstream_port: int
) -> tuple[Service, str]:
    """A codexgate (capture on) on `port`, not started yet; its base URL."""
    name = store.lower()
    service = codexgate_service(
        f"codexgate ({store})",
        port=port,
        upstream_port=upstream_port,
        workdir=workdir,
        log_name=f"codexgate-{name}.log",
        extra_args=settings.gateway_args,
        env={"CODEXGATE_DB": database},
    )
    return service, f"http://{LOOPBACK}:{port}"


async def _measure(
    settings: Settings, target: Target, server_pids: Sequence[int], counters: Counters
) -> StoreRound:
    """Small SSE turns per second at concurrency 32 after a warm-up, and the CPU they took."""
    load = workload()
    turn = make_turn(target.base, SMALL_TURN, load.headers, load.body)
    async with new_session() as session:
        await turns_per_second(
            session, turn, counters, concurrency=CONCURRENCY, seconds=settings.store_warmup_seconds
        )
        async with metered(target.pids) as gateway, metered(server_pids) as server:
            rate = await turns_per_second(
                session, turn, counters, concurrency=CONCURRENCY, seconds=settings.store_seconds
            )
    done = rate.done or math.nan
    return StoreRound(
        turns_per_second=rate.per_second,
        gateway_cpu_us=gateway.cpu_seconds / done * 1e6,
        server_cpu_us=server.cpu_seconds / done * 1e6,
    )


async def _rounds(
    settings: Settings,
    postgres: BenchPostgres,
    upstream: tuple[Service, str],
    gateways: dict[str, tuple[Service, str]],
) -> StoreComparison:
    """Wait for every process, run the rounds, then check each codexgate's healthz."""
    await wait_ready(upstream[0], f"{upstream[1]}{PING_PATH}")
    targets = []
    for store, (service, base) in gateways.items():
        await wait_ready(service, f"{base}{HEALTH_PATH}")
        pids = () if service.process is None else (service.process.pid,)
        targets.append(Target(store, base, pids))
    counters = {target.name: Counters() for target in targets}
    rounds: list[dict[str, StoreRound]] = []
    for index in range(settings.store_rounds):
        order = rotated(targets, index)
        names = ", ".join(target.name for target in order)
        print(f"  round {index + 1}/{settings.store_rounds} (order: {names})", flush=True)
        figures = {}
        for target in order:
            # The server's backends are asked for each time: the pool may have grown.
            server_pids = postgres.pids() if target.name == POSTGRESQL else ()
            figures[target.name] = await _measure(
                settings, target, server_pids, counters[target.name]
            )
            print(f"    {target.name:<10} {round_line(figures[target.name])}", flush=True)
        rounds.append(figures)
    healthy = all(counter.errors == 0 for counter in counters.values())
    lines: list[str] = []
    for target in targets:
        good, checked = health_lines(
            target.name, await settled_health(target.base), counters[target.name]
        )
        healthy = healthy and good
        lines.extend(checked)
    return StoreComparison(rounds=rounds, healthy=healthy, health=lines, counters=counters)


def store_comparison(
    runner: asyncio.Runner, settings: Settings, workdir: Path, postgres: BenchPostgres
) -> StoreComparison:
    """Start the upstream and the two codexgates, run the rounds, stop them."""
    upstream_port, sqlite_port, postgresql_port = free_ports(3)
    upstream = Service(
        name="fake upstream",
        argv=[sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
        cwd=REPO_ROOT,
        log_path=workdir / "stores-upstream.log",
    )
    database = runner.run(postgres.fresh_database())
    sqlite_file = str(workdir / "bench-sqlite.db")
    gateways = {
        SQLITE: _gateway(settings, workdir, SQLITE, sqlite_file, sqlite_port, upstream_port),
        POSTGRESQL: _gateway(
            settings, workdir, POSTGRESQL, database.dsn, postgresql_port, upstream_port
        ),
    }
    print(
        f"SSE turns at concurrency {CONCURRENCY}: codexgate on SQLite vs on PostgreSQL, "
        f"{settings.store_rounds} round(s)",
        flush=True,
    )
    sqlite, pg = gateways[SQLITE][0], gateways[POSTGRESQL][0]
    with upstream, sqlite, pg:
        comparison = runner.run(
            _rounds(settings, postgres, (upstream, f"http://{LOOPBACK}:{upstream_port}"), gateways)
        )
    for service in (sqlite, pg):
        if service.exit_code != 0 or service.killed:
            how = "killed after the SIGTERM wait ran out" if service.killed else "stopped"
            stopped = f"{service.name} {how}, exit code {service.exit_code}; its log ends:"
            comparison = dataclasses.replace(
                comparison,
                healthy=False,
                health=[*comparison.health, stopped, *service.log_lines()[-LOG_TAIL_LINES:]],
            )
    return comparison


def round_line(figures: StoreRound) -> str:
    """One store's figures in one round."""
    server = (
        ""
        if math.isnan(figures.server_cpu_us)
        else f", PostgreSQL server CPU {figures.server_cpu_us:,.0f} µs/turn"
    )
    return (
        f"{figures.turns_per_second:,.0f} turns/s, codexgate CPU "
        f"{figures.gateway_cpu_us:,.0f} µs/turn{server}"
    )


def comparison_lines(comparison: StoreComparison) -> list[str]:
    """The medians, the ratio against the 5 % budget, the CPU, and the accounting check."""
    sqlite, pg = comparison.turns(SQLITE), comparison.turns(POSTGRESQL)
    ratios = comparison.ratios()
    ratio = median(ratios)
    within = 1 - ratio <= STORE_BUDGET
    spread = f"; from {min(ratios):.3f} to {max(ratios):.3f}" if len(ratios) > 1 else ""
    sqlite_cpu = comparison.total_cpu(SQLITE)
    pg_cpu = comparison.total_cpu(POSTGRESQL)
    return [
        f"  SQLite: {sqlite:,.0f} turns/s, codexgate CPU {sqlite_cpu:,.0f} µs/turn",
        f"  PostgreSQL: {pg:,.0f} turns/s, codexgate CPU "
        f"{comparison.gateway_cpu(POSTGRESQL):,.0f} µs/turn, PostgreSQL server CPU "
        f"{comparison.server_cpu():,.0f} µs/turn",
        f"  PostgreSQL / SQLite: {ratio:.3f} turns/s (median of the {len(ratios)} round(s)' "
        f"ratios, each pair run back to back{spread}; ratio of the medians "
        f"{pg / sqlite:.3f}), target >= {1 - STORE_BUDGET:.2f}: "
        f"{'target met' if within else 'target NOT met'}",
        f"  CPU per turn, codexgate and its store: {pg_cpu / sqlite_cpu:.3f} x SQLite's "
        f"({pg_cpu:,.0f} µs with the PostgreSQL server's against {sqlite_cpu:,.0f} µs, "
        "SQLite's writes being in codexgate's own process)",
        *comparison.health,
        "  request errors: "
        + ", ".join(f"{name} {counters.errors}" for name, counters in comparison.counters.items()),
    ]
