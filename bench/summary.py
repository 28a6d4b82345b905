"""What the bench prints after the rounds: the table, the targets, the checks, the side figures."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .accounting import health_lines
from .auth import AuthCost, auth_line
from .backends import CONCURRENCY, StoreComparison, comparison_lines
from .feed import FeedDelay, feed_line
from .idle import IdleResult, idle_lines
from .instances import InstancesComparison, instances_lines
from .protocol import MEGABYTE
from .recording import POSTGRESQL, SQLITE, RecorderRate, recorder_line
from .report import (
    CAPTURE_OFF,
    CAPTURE_ON,
    NGINX,
    added_times,
    capture_costs,
    goals,
    medians,
    method,
    table,
)
from .run import RunResult
from .session import Outcome, Stopped
from .settings import Settings

IDLE_RSS_GOAL = 100  # MB with 1,000 idle streams open, the target
RECORDER_GOAL = 20_000  # snapshots per second, the target
# The PostgreSQL issue's target for the recorder alone, when every snapshot is a new row.
POSTGRES_RECORDER_GOAL = 10_000


@dataclass(frozen=True, slots=True)
class SideFigures:
    """The measurements outside the rounds, and the nginx note."""

    idle: list[IdleResult]
    recorder: list[RecorderRate]
    nginx_note: str
    auth: list[AuthCost] = field(default_factory=list)
    feed: FeedDelay | None = None
    # The bench's PostgreSQL server when it ran, else why the PostgreSQL cases did not run.
    postgres: str = ""
    stores: StoreComparison | None = None
    stores_wanted: bool = False  # the SQLite against PostgreSQL comparison was asked for
    instances: InstancesComparison | None = None
    # The PostgreSQL server the instances ran on, or why they did not run.
    instances_note: str = ""
    instances_wanted: bool = False

    @property
    def healthy(self) -> bool:
        """Whether the side cases that check what codexgate recorded found it all."""
        return (self.stores is None or self.stores.healthy) and (
            self.instances is None or self.instances.healthy
        )


def _label(stopped: Stopped) -> str:
    return "nginx" if stopped.name == NGINX else f"codexgate ({stopped.name})"


def _process_lines(stopped: Stopped) -> list[str]:
    """How one proxy stopped and what it logged at WARNING and above."""
    stop = stopped.stop_seconds
    how = "killed after the SIGTERM wait ran out" if stopped.killed else "on SIGTERM"
    label = _label(stopped)
    lines = [
        f"{label} stopped {how} in "
        f"{stop if stop is not None else float('nan'):.2f} s, exit code {stopped.exit_code}"
    ]
    if stopped.log:
        lines.append(f"{label} log ({len(stopped.log)} lines, first 20):")
        lines.extend(f"  {line}" for line in stopped.log[:20])
    else:
        lines.append(f"{label} log: empty (no warnings or errors)")
    return lines


def _error_lines(result: RunResult) -> list[str]:
    """Failed requests per target, with the first messages."""
    lines = [
        "request errors: "
        + ", ".join(f"{name} {counters.errors}" for name, counters in result.counters.items())
    ]
    for name, counters in result.counters.items():
        lines.extend(f"  {name}: {message}" for message in counters.first_errors)
    return lines


def checks(outcome: Outcome) -> tuple[bool, list[str]]:
    """Whether the run had no errors and every proxy behaved; the health lines."""
    result = outcome.result
    healthy = all(counters.errors == 0 for counters in result.counters.values())
    lines: list[str] = []
    for name in (CAPTURE_ON, CAPTURE_OFF):
        good, checked = health_lines(name, result.health.get(name), result.counters[name])
        healthy = healthy and good
        lines.extend(checked)
    stopped = [*outcome.gateways, *([outcome.nginx] if outcome.nginx else [])]
    for process in stopped:
        healthy = healthy and process.exit_code == 0 and not process.killed
        lines.extend(_process_lines(process))
    return healthy, lines


def side_lines(side: SideFigures) -> list[str]:
    """The idle streams, the recorder alone, SQLite against PostgreSQL, the auth middleware
    and the live feed delay."""
    lines = []
    if side.idle:
        lines.append(f"RSS with idle streams (target for codexgate: <= {IDLE_RSS_GOAL} MB):")
        for result in side.idle:
            lines.extend(f"  {line}" for line in idle_lines(result))
            if result.name == CAPTURE_ON and result.wanted >= 1000:
                met = result.holding <= IDLE_RSS_GOAL * MEGABYTE and result.opened == result.wanted
                lines.append(f"  codexgate with {result.wanted:,}: {_met(met)}")
    lines.extend(_recorder_lines(side))
    if side.stores is not None or side.stores_wanted:
        lines.append(
            f"SSE turns at concurrency {CONCURRENCY} through codexgate (capture on) on SQLite "
            "and on PostgreSQL, one upstream, order rotated each round (target: PostgreSQL "
            "within 5 % of SQLite):"
        )
        lines.append(f"  {side.postgres}")
        if side.stores is not None:
            lines.extend(comparison_lines(side.stores))
    if side.instances is not None or side.instances_wanted:
        rounds = (
            f", medians of {len(side.instances.rounds)} round(s), order rotated each round"
            if side.instances is not None
            else ""
        )
        lines.append(
            "SSE turns through one codexgate (capture on) on PostgreSQL, through nginx in front "
            "of it, and through nginx in front of two codexgates on the same database "
            f"(round-robin), one upstream{rounds}:"
        )
        lines.append(f"  {side.instances_note}")
        if side.instances is not None:
            lines.extend(instances_lines(side.instances, os.cpu_count()))
    if side.auth:
        lines.append(
            "auth middleware alone (codexgate.security.auth_middleware on one mocked request, "
            "the handler's answer made once; µs per call):"
        )
        lines.extend(f"  {auth_line(cost)}" for cost in side.auth)
    if side.feed is not None:
        lines.append(
            "live feed delay (one subscriber on api/v1/events of a codexgate process, one "
            "turn at a time, each writing a new history row):"
        )
        lines.append(f"  {feed_line(side.feed)}")
    return lines


def _recorder_lines(side: SideFigures) -> list[str]:
    """The recorder alone on SQLite, then on PostgreSQL beside it."""
    sqlite = {rate.mode: rate for rate in side.recorder if rate.backend == SQLITE}
    postgres = [rate for rate in side.recorder if rate.backend == POSTGRESQL]
    lines = []
    if sqlite:
        lines.append(
            "recorder alone (codexgate.services.recorder.Recorder over the SQLite store on a "
            f"temp file, queue kept full; target >= {RECORDER_GOAL:,} snapshots/s):"
        )
        for rate in sqlite.values():
            met = rate.snapshots_per_second >= RECORDER_GOAL
            lines.append(f"  {recorder_line(rate)}: {_met(met)}")
    if postgres:
        lines.append(
            "recorder alone on PostgreSQL (the same, on a fresh database of the bench's "
            f"throwaway server; target >= {POSTGRES_RECORDER_GOAL:,} snapshots/s when every "
            "snapshot is a new row):"
        )
        lines.append(f"  {side.postgres}")
        for rate in postgres:
            beside = sqlite.get(rate.mode)
            ratio = (
                f"; {rate.snapshots_per_second / beside.snapshots_per_second:.2f} x SQLite"
                if beside and beside.snapshots_per_second
                else ""
            )
            verdict = (
                f": {_met(rate.snapshots_per_second >= POSTGRES_RECORDER_GOAL)}"
                if rate.mode.changing
                else ""
            )
            lines.append(f"  {recorder_line(rate)}{ratio}{verdict}")
    elif sqlite and side.postgres:
        lines.append(f"recorder alone on PostgreSQL: {side.postgres}")
    return lines


def _met(met: bool) -> str:
    return "target met" if met else "target NOT met"


def summary(settings: Settings, outcome: Outcome, side: SideFigures, elapsed: float) -> list[str]:
    """Everything printed after the rounds."""
    values = medians(outcome.result.rounds)
    healthy, checked = checks(outcome)
    return [
        "",
        f"== direct vs nginx vs codexgate (capture on, capture off), medians of "
        f"{settings.rounds} round(s) ==",
        f"nginx: {side.nginx_note}",
        "",
        *table(settings, values),
        "",
        method(settings),
        *added_times(values),
        *goals(settings, values),
        *capture_costs(settings, values),
        *side_lines(side),
        *checked,
        *_error_lines(outcome.result),
        f"verdict: {'healthy' if healthy and side.healthy else 'NOT HEALTHY (see above)'}",
        f"bench took {elapsed:.1f} s",
    ]


def markdown(settings: Settings, outcome: Outcome, side: SideFigures, machine_line: str) -> str:
    """The machine line, the table and how it was measured, for the README."""
    values = medians(outcome.result.rounds)
    return "\n".join(
        [
            machine_line,
            "",
            *table(settings, values),
            "",
            method(settings),
            "",
            *added_times(values),
            *goals(settings, values),
            *capture_costs(settings, values),
            "",
            *side_lines(side),
            "",
        ]
    )
