"""What the bench prints after the rounds: the table, the targets, the checks, the side figures."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .accounting import health_lines
from .auth import AuthCost, auth_line
from .backends import CONCURRENCY, StoreComparison, comparison_lines
from .before import Revision
from .feed import FeedDelay, feed_line
from .idle import IdleResult, idle_lines
from .instances import InstancesComparison, instances_lines
from .protocol import MEGABYTE
from .recording import POSTGRESQL, SQLITE, RecorderRate, recorder_line
from .report import (
    BEFORE,
    CAPTURE_OFF,
    CAPTURE_ON,
    FigureValues,
    added_times,
    capture_costs,
    medians,
    method,
    proxy_label,
    table,
)
from .run import RunResult
from .session import Outcome, Stopped
from .settings import Settings
from .targets import (
    IDLE_RSS_GOAL,
    IDLE_STREAMS_GOAL,
    INSTANCES,
    RECORDER_GOAL,
    SideResults,
    goal_lines,
    goals,
)

# The PostgreSQL issue's target for the recorder alone, when every snapshot is a new row.
POSTGRES_RECORDER_GOAL = 10_000


@dataclass(frozen=True, slots=True)
class SideFigures:
    """The measurements outside the rounds, and the nginx note."""

    idle: list[IdleResult]
    recorder: list[RecorderRate]  # today's tree, on SQLite and on PostgreSQL
    nginx_note: str
    recorder_before: list[RecorderRate] = field(default_factory=list)  # --before, on SQLite
    before: Revision | None = None
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


def _process_lines(stopped: Stopped) -> list[str]:
    """How one proxy stopped and what it logged at WARNING and above."""
    stop = stopped.stop_seconds
    how = "killed after the SIGTERM wait ran out" if stopped.killed else "on SIGTERM"
    label = proxy_label(stopped.name)
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
    for name in (CAPTURE_ON, BEFORE, CAPTURE_OFF):
        if name not in result.counters:  # no --before
            continue
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
        lines.append(
            f"RSS with idle streams (target for codexgate with {IDLE_STREAMS_GOAL:,}: "
            f"<= {IDLE_RSS_GOAL} MB):"
        )
        for result in side.idle:
            lines.extend(f"  {line}" for line in idle_lines(result))
            if result.name in INSTANCES and result.wanted >= IDLE_STREAMS_GOAL:
                met = result.holding <= IDLE_RSS_GOAL * MEGABYTE and result.opened == result.wanted
                lines.append(f"  {proxy_label(result.name)} with {result.wanted:,}: {_met(met)}")
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


def _sqlite_recorder_line(rate: RecorderRate) -> str:
    """One mode's figures, with the verdict where the target applies (a new row each)."""
    met = rate.snapshots_per_second >= RECORDER_GOAL
    return recorder_line(rate) + (f": {_met(met)}" if rate.mode.changing else "")


def _recorder_lines(side: SideFigures) -> list[str]:
    """The recorder alone on SQLite (with --before, the earlier revision's beside it), then on
    PostgreSQL beside it."""
    sqlite = {rate.mode: rate for rate in side.recorder if rate.backend == SQLITE}
    before = {rate.mode: rate for rate in side.recorder_before}
    postgres = [rate for rate in side.recorder if rate.backend == POSTGRESQL]
    lines = []
    if sqlite:
        separately = (
            ", each mode in a process of its own, today's tree and the before revision "
            "alternating which goes first"
            if before
            else ""
        )
        lines.append(
            "recorder alone (codexgate.services.recorder.Recorder over the SQLite store on a "
            f"temp file, queue kept full{separately}; target >= {RECORDER_GOAL:,} new rows/s "
            "when a value changed each time):"
        )
        if before and side.before is not None:
            lines.append(f"  before: codexgate {side.before.describe()}")
        for rate in sqlite.values():
            lines.append(f"  {_sqlite_recorder_line(rate)}")
            earlier = before.get(rate.mode)
            if earlier is not None and side.before is not None:
                speedup = rate.snapshots_per_second / (earlier.snapshots_per_second or math.nan)
                ratio = "" if math.isnan(speedup) else f"; today / before {speedup:.2f}"
                lines.append(
                    f"    before {side.before.commit}: {_sqlite_recorder_line(earlier)}{ratio}"
                )
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


def _goal_lines(
    settings: Settings, outcome: Outcome, side: SideFigures, values: dict[str, FigureValues]
) -> list[str]:
    """Issue 17's targets: capture on, and the before revision beside it when it ran."""
    result = outcome.result
    recorded_all = {
        name: health_lines(name, result.health.get(name), result.counters[name])[0]
        for name in INSTANCES
        if name in result.counters
    }
    recorder = {
        CAPTURE_ON: [rate for rate in side.recorder if rate.backend == SQLITE],
        BEFORE: side.recorder_before,
    }
    return goal_lines(goals(settings, values, SideResults(recorder, side.idle, recorded_all)))


def _before_commit(outcome: Outcome) -> str | None:
    return None if outcome.before is None else outcome.before.commit


def summary(settings: Settings, outcome: Outcome, side: SideFigures, elapsed: float) -> list[str]:
    """Everything printed after the rounds."""
    values = medians(outcome.result.rounds)
    healthy, checked = checks(outcome)
    before = "" if outcome.before is None else f", before = {outcome.before.commit}"
    return [
        "",
        f"== direct vs nginx vs codexgate (capture on, capture off{before}), medians of "
        f"{settings.rounds} round(s) ==",
        f"nginx: {side.nginx_note}",
        "",
        *table(settings, values),
        "",
        method(settings, _before_commit(outcome)),
        *added_times(values),
        *capture_costs(settings, values),
        "",
        *_goal_lines(settings, outcome, side, values),
        "",
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
            method(settings, _before_commit(outcome)),
            "",
            *added_times(values),
            *capture_costs(settings, values),
            "",
            *_goal_lines(settings, outcome, side, values),
            "",
            *side_lines(side),
            "",
        ]
    )
