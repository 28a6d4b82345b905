"""Issue 17's targets for codexgate with capture on: each figure and whether it is met, and with
--before the same figures of the earlier revision beside them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from .idle import IdleResult
from .protocol import MEGABYTE
from .recording import MODES, RecorderRate
from .report import (
    BEFORE,
    CAPTURE_OFF,
    CAPTURE_ON,
    DIRECT,
    HEADINGS,
    NGINX,
    FigureValues,
    cpu_key,
    number,
    value_of,
)
from .settings import Settings

CPU_GOAL: Final = 2.5  # at most x nginx's proxy CPU per small SSE turn
CPU_CONCURRENCIES: Final = (1, 32)
CAPTURE_COST_GOAL: Final = 0.10  # at most, 1 - on/off throughput
ADDED_FIRST_EVENT_GOAL: Final = 1.0  # at most, ms over direct at p50
THROUGHPUT_GOAL: Final = 0.7  # at least x nginx's small SSE turns per second
THROUGHPUT_CONCURRENCY: Final = 32
RECORDER_GOAL: Final = 25_000  # at least, new history rows/s: a value changed in each snapshot
IDLE_RSS_GOAL: Final = 90  # at most, MB
IDLE_STREAMS_GOAL: Final = 1000  # the idle streams the RSS target is for
CHANGING: Final = next(mode for mode in MODES if mode.changing)
TURNS: Final = next(mode for mode in MODES if mode.requests)

MET: Final = "met"
NOT_MET: Final = "NOT met"
UNKNOWN: Final = "n/a"
INSTANCES: Final = (CAPTURE_ON, BEFORE)


@dataclass(frozen=True, slots=True)
class Result:
    """One instance's figure for a target, as shown, and the verdict ("" where none applies)."""

    figure: str
    verdict: str


NOT_RUN: Final = Result("not run", UNKNOWN)


@dataclass(frozen=True, slots=True)
class SideResults:
    """What the targets are checked against besides the rounds' medians, by instance name."""

    recorder: Mapping[str, Sequence[RecorderRate]]  # the recorder alone on SQLite
    idle: Sequence[IdleResult]
    recorded_all: Mapping[str, bool]  # healthz accounted for every snapshot and request row


@dataclass(frozen=True, slots=True)
class Goal:
    """One target: what it asks, and each instance's result."""

    label: str
    results: dict[str, Result]


def verdict(value: float, goal: float, at_least: bool) -> str:
    """met, NOT met, or n/a when the figure is missing."""
    if math.isnan(value):
        return UNKNOWN
    return MET if (value >= goal if at_least else value <= goal) else NOT_MET


def _divided(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def _cpu(values: dict[str, FigureValues], concurrency: int, name: str) -> Result:
    key = cpu_key(f"rps_{concurrency}")
    own, nginx = value_of(values, key, name), value_of(values, key, NGINX)
    ratio = _divided(own, nginx)
    return Result(
        f"{number(ratio, 2)} x nginx ({number(own, 0)} µs against {number(nginx, 0)})",
        verdict(ratio, CPU_GOAL, at_least=False),
    )


def _capture_cost(values: dict[str, FigureValues], key: str, name: str) -> Result:
    if name != CAPTURE_ON:  # only today's tree runs a capture-off instance to compare with
        return Result("—", "")
    on, off = value_of(values, key, CAPTURE_ON), value_of(values, key, CAPTURE_OFF)
    cost = 1 - _divided(on, off)
    figure = "n/a" if math.isnan(cost) else f"{cost:+.1%} ({on:,.0f} against {off:,.0f} req/s)"
    return Result(figure, verdict(cost, CAPTURE_COST_GOAL, at_least=False))


def _first_event(values: dict[str, FigureValues], name: str) -> Result:
    added = value_of(values, "ttfe_p50", name) - value_of(values, "ttfe_p50", DIRECT)
    figure = "n/a" if math.isnan(added) else f"{added:+.2f} ms"
    return Result(figure, verdict(added, ADDED_FIRST_EVENT_GOAL, at_least=False))


def _throughput(values: dict[str, FigureValues], name: str) -> Result:
    key = f"rps_{THROUGHPUT_CONCURRENCY}"
    own, nginx = value_of(values, key, name), value_of(values, key, NGINX)
    ratio = _divided(own, nginx)
    return Result(
        f"{number(ratio, 2)} x nginx ({number(own, 0)} against {number(nginx, 0)} req/s)",
        verdict(ratio, THROUGHPUT_GOAL, at_least=True),
    )


def _rate(side: SideResults, name: str, changing: bool) -> RecorderRate | None:
    mode = CHANGING if changing else TURNS
    return next((rate for rate in side.recorder.get(name, ()) if rate.mode == mode), None)


def _recorder_rows(side: SideResults, name: str) -> Result:
    rate = _rate(side, name, changing=True)
    if rate is None:
        return NOT_RUN
    return Result(
        f"{rate.snapshots_per_second:,.0f} new rows/s",
        verdict(rate.snapshots_per_second, RECORDER_GOAL, at_least=True),
    )


def _recorder_turns(side: SideResults, name: str) -> Result:
    rate = _rate(side, name, changing=False)
    if rate is None:
        return Result("not run", "")
    return Result(
        f"{rate.requests_per_second:,.0f} request rows/s, {rate.snapshots_per_second:,.0f} "
        "snapshots/s",
        "",
    )


def _idle(side: SideResults, name: str) -> Result:
    result = next((idle for idle in side.idle if idle.name == name), None)
    if result is None:
        return NOT_RUN
    figure = f"{result.holding / MEGABYTE:.1f} MB with {result.opened:,} open"
    if result.wanted < IDLE_STREAMS_GOAL or result.opened != result.wanted:
        return Result(figure, UNKNOWN)
    return Result(figure, verdict(result.holding / MEGABYTE, IDLE_RSS_GOAL, at_least=False))


def _recorded(side: SideResults, name: str) -> Result:
    recorded = side.recorded_all.get(name)
    if recorded is None:
        return NOT_RUN
    if recorded:
        return Result("every one recorded", MET)
    return Result("NOT all recorded (see the healthz lines)", NOT_MET)


def goals(settings: Settings, values: dict[str, FigureValues], side: SideResults) -> list[Goal]:
    """Every target with the result of each instance: capture on, and before when it ran."""
    names = [name for name in INSTANCES if name != BEFORE or settings.before]
    cost_keys = (
        (f"SSE turns at concurrency {THROUGHPUT_CONCURRENCY}", f"rps_{THROUGHPUT_CONCURRENCY}"),
        (
            f"wham/usage at concurrency {settings.usage_concurrency}",
            f"usage_{settings.usage_concurrency}",
        ),
    )
    return [
        *(
            Goal(
                f"proxy CPU per small SSE turn, concurrency {concurrency}: "
                f"<= {CPU_GOAL:g} x nginx's",
                {name: _cpu(values, concurrency, name) for name in names},
            )
            for concurrency in CPU_CONCURRENCIES
        ),
        *(
            Goal(
                f"capture's cost in throughput (1 - on/off), {scenario}: "
                f"<= {CAPTURE_COST_GOAL:.0%}",
                {name: _capture_cost(values, key, name) for name in names},
            )
            for scenario, key in cost_keys
        ),
        Goal(
            f"time to first event at p50: <= +{ADDED_FIRST_EVENT_GOAL:g} ms over direct",
            {name: _first_event(values, name) for name in names},
        ),
        Goal(
            f"small SSE turns at concurrency {THROUGHPUT_CONCURRENCY}: "
            f">= {THROUGHPUT_GOAL:g} x nginx",
            {name: _throughput(values, name) for name in names},
        ),
        Goal(
            f"recorder alone on SQLite, {CHANGING.name}: >= {RECORDER_GOAL:,} new rows/s",
            {name: _recorder_rows(side, name) for name in names},
        ),
        Goal(
            f"recorder alone on SQLite, {TURNS.name} (no target)",
            {name: _recorder_turns(side, name) for name in names},
        ),
        Goal(
            f"RSS with {IDLE_STREAMS_GOAL:,} idle streams: <= {IDLE_RSS_GOAL} MB",
            {name: _idle(side, name) for name in names},
        ),
        Goal(
            "nothing lost: every snapshot and request row of the rounds recorded",
            {name: _recorded(side, name) for name in names},
        ),
    ]


def goal_lines(goals_: Sequence[Goal]) -> list[str]:
    """A markdown table: each target, then each instance's figure and verdict."""
    names = list(goals_[0].results) if goals_ else [CAPTURE_ON]
    headings = " | ".join(f"{HEADINGS[name]} | verdict" for name in names)
    lines = [
        "issue 17's targets for codexgate with capture on"
        + (", the before revision beside it" if BEFORE in names else "")
        + ":",
        "",
        f"| target | {headings} |",
        "|---|" + "---:|---|" * len(names),
    ]
    for goal in goals_:
        cells = " | ".join(
            f"{goal.results[name].figure} | {goal.results[name].verdict}" for name in names
        )
        lines.append(f"| {goal.label} | {cells} |")
    if BEFORE in names:
        lines.append(
            "(capture's cost needs a capture-off instance of the same code: only today's tree "
            "runs one)"
        )
    return lines
