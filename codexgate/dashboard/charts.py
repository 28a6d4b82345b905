"""Pure geometry for the dashboard's inline SVG charts: sparklines, step lines, time ticks,
the current window's span and the reset and "now" markers.

The page script mirrors what must run in the browser (web/static/js/charts.js: the ticks in the
reader's time zone, the moving "now" marker); tests/unit/test_js.py checks both give the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

DAY: Final = 86400
# Tick steps in seconds, smallest first; a chart takes the smallest that gives at most
# MAX_TICK_INTERVALS intervals, each tick on a whole step of the reader's local time.
TICK_STEPS: Final = (
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    DAY,
    2 * DAY,
    5 * DAY,
    10 * DAY,
    30 * DAY,
)
MAX_TICK_INTERVALS: Final = 7
# How a tick's time is written: a day ("11-30"), a day and a time, or only a time.
TickKind = Literal["date", "datetime", "time"]
MarkerKind = Literal["reset", "now"]


@dataclass(frozen=True, slots=True)
class Sparkline:
    """The points of a sparkline's <polyline> and the value at its top."""

    points: str  # "x,y x,y ...", coordinates rounded to 1 decimal
    maximum: float  # the largest value; 0 when all are zero or there are none


@dataclass(frozen=True, slots=True)
class SeriesPath:
    """The data of a step line's <path> over a time range."""

    d: str  # absolute M/H/V commands; "" when no sample falls in the range
    points: int  # how many samples were drawn, after downsampling
    last_value: float | None  # the newest drawn sample's value as reported (not clamped)


@dataclass(frozen=True, slots=True)
class Tick:
    """A time label under a chart."""

    x: str  # the x coordinate, rounded like every coordinate
    at: float  # unix time
    kind: TickKind


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at a moment: the window's reset, or now."""

    kind: MarkerKind
    x: str
    at: float


def sparkline(values: Sequence[float], width: float = 100, height: float = 24) -> Sparkline:
    """A sparkline of evenly spaced values, 0 at the bottom and the maximum at the top."""
    cleaned = [value if value > 0 and math.isfinite(value) else 0.0 for value in values]
    if not cleaned:
        return Sparkline("", 0.0)
    maximum = max(cleaned)
    # A 1-unit margin at the top and bottom, so that the stroke is not clipped.
    ys = [height - 1 - (value / maximum * (height - 2) if maximum else 0.0) for value in cleaned]
    if len(ys) == 1:
        return Sparkline(f"0,{_num(ys[0])} {_num(width)},{_num(ys[0])}", maximum)
    step = width / (len(ys) - 1)
    points = " ".join(f"{_num(i * step)},{_num(y)}" for i, y in enumerate(ys))
    return Sparkline(points, maximum)


def step_path(
    samples: Sequence[tuple[float, float]],
    *,
    start: float,
    end: float,
    width: float,
    height: float,
    max_gap: float,
    max_points: int = 600,
    until: float | None = None,
    carry_in: bool = True,
) -> SeriesPath:
    """A step line of (unix time, percent) samples sorted by time, drawn from start to end.

    A value holds until the next sample, or for max_gap seconds when no sample follows within
    max_gap (the pen lifts across a gap). More than max_points samples are downsampled: per
    equal time bucket, the highest sample and the last one are kept.
    Raises ValueError when end <= start or max_points < 3.
    """
    if not end > start:
        raise ValueError(f"end must be after start, not {end} <= {start}")
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, not {max_points}")
    opening: tuple[float, float] | None = None  # the last sample before start
    inside: list[tuple[float, float]] = []  # (time, clamped percent) from start to end
    last_value: float | None = None
    for at, value in samples:
        if at > end:
            break
        if at < start:
            opening = (at, value)
        else:
            inside.append((at, _percent(value)))
            last_value = value
    if opening is not None and (not carry_in or start - opening[0] > max_gap):
        opening = None
    stop = end if until is None else min(max(until, start), end)
    drawn = inside
    kept = [True] * len(inside)
    # The opening value counts against max_points; each bucket keeps at most two samples.
    budget = max_points - (opening is not None)
    if len(inside) > budget:
        kept = _bucket_keep(inside, start, end, budget // 2)
    if opening is not None:
        drawn = [(opening[0], _percent(opening[1])), *inside]
        kept = [True, *kept]
        last_value = opening[1] if last_value is None else last_value

    def x_of(at: float) -> str:
        return x_at(at, start, end, width)

    commands: list[str] = []
    pen: tuple[str, str] | None = None  # the pen's (x, y) while a segment is being drawn
    previous = start  # the time of the previous sample, drawn or not; unused until pen is set
    for (at, value), keep in zip(drawn, kept, strict=True):
        # Gaps are judged on every sample, so that downsampling never makes one up.
        if pen is not None and at - previous > max_gap:
            _step_to(commands, pen, x_of(previous + max_gap), pen[1])
            pen = None
        previous = at
        if keep:
            x, y = x_of(at), _num(height - value / 100.0 * height)
            if pen is None:
                commands.append(f"M {x} {y}")
            else:
                _step_to(commands, pen, x, y)
            pen = (x, y)
    if pen is not None:
        _step_to(commands, pen, x_of(max(min(previous + max_gap, stop), previous)), pen[1])
    return SeriesPath(" ".join(commands), sum(kept), last_value)


def x_at(at: float, start: float, end: float, width: float) -> str:
    """The x coordinate of a moment on a chart from start to end, clamped to its edges."""
    return _num((min(max(at, start), end) - start) / (end - start) * width)


def tick_step(span: float) -> int:
    """The tick step for a range of `span` seconds: the smallest giving few enough ticks."""
    return next((s for s in TICK_STEPS if span / s <= MAX_TICK_INTERVALS), TICK_STEPS[-1])


def time_ticks(start: float, end: float, width: float, utc_offset: int = 0) -> list[Tick]:
    """The ticks from start to end on whole steps of a time zone `utc_offset` seconds east.

    A tick is written as a day when the step is a day or more; else as a time, with its day
    on the first tick and wherever the day changes.
    Raises ValueError when end <= start.
    """
    if not end > start:
        raise ValueError(f"end must be after start, not {end} <= {start}")
    step = tick_step(end - start)
    ticks: list[Tick] = []
    index = math.ceil((start + utc_offset) / step)
    previous_day: int | None = None
    while (at := index * step - utc_offset) <= end:
        day = math.floor((at + utc_offset) / DAY)
        kind: TickKind = "date" if step >= DAY else "time" if day == previous_day else "datetime"
        ticks.append(Tick(x_at(at, start, end, width), at, kind))
        previous_day = day
        index += 1
    return ticks


def tick_lines(at: float, kind: TickKind) -> tuple[str, ...]:
    """A tick's text in UTC, for the page without its script: "11-30", "14:00", or the time
    over its day ("14:00", "11-30")."""
    moment = datetime.fromtimestamp(at, UTC)
    day, clock = moment.strftime("%m-%d"), moment.strftime("%H:%M")
    return {"date": (day,), "time": (clock,), "datetime": (clock, day)}[kind]


def current_window(resets_at: float, length: float, now: float) -> tuple[float, float]:
    """The (start, reset) of the window period holding `now`.

    A reset already past with no newer report rolls forward by whole window lengths: the
    window has started again since. Raises ValueError when length <= 0.
    """
    if not length > 0:
        raise ValueError(f"length must be positive, not {length}")
    if resets_at <= now:
        resets_at += (math.floor((now - resets_at) / length) + 1) * length
    return resets_at - length, resets_at


def markers(
    start: float,
    end: float,
    now: float,
    width: float,
    window: tuple[float, float] | None,
) -> list[Marker]:
    """The markers of a chart: the resets of the current `window` (start, reset) inside the
    range (its opening only after the range starts), then "now" when it is inside."""
    found: list[Marker] = []
    if window is not None:
        opened, resets = window
        if start < opened <= end:
            found.append(Marker("reset", x_at(opened, start, end, width), opened))
        if start <= resets <= end:
            found.append(Marker("reset", x_at(resets, start, end, width), resets))
    if start <= now <= end:
        found.append(Marker("now", x_at(now, start, end, width), now))
    return found


def value_changes(
    samples: Sequence[tuple[float, float]], start: float, end: float, limit: int
) -> list[tuple[float, float]]:
    """The samples from start to end whose value differs from the one before (the first one
    always): a chart's points as a table. Past `limit`, the newest are kept."""
    changes: list[tuple[float, float]] = []
    previous: float | None = None
    for at, value in samples:
        if start <= at <= end and (not changes or value != previous):
            changes.append((at, value))
        if at <= end:
            previous = value
    return changes[-limit:] if limit > 0 else []


def _bucket_keep(
    samples: Sequence[tuple[float, float]], start: float, end: float, buckets: int
) -> list[bool]:
    """Which samples to keep: per equal time bucket of start..end, the highest and the last."""
    highest: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, (at, value) in enumerate(samples):
        bucket = min(int((at - start) * buckets / (end - start)), buckets - 1)
        if bucket not in highest or value > samples[highest[bucket]][1]:
            highest[bucket] = i
        last[bucket] = i
    keep = [False] * len(samples)
    for i in (*highest.values(), *last.values()):
        keep[i] = True
    return keep


def _step_to(commands: list[str], pen: tuple[str, str], x: str, y: str) -> None:
    """Append the step from the pen to (x, y): across first, then up or down; skip no-ops."""
    if x != pen[0]:
        if commands[-1].startswith("H"):
            commands.pop()  # a level run: one H to its end is enough
        commands.append(f"H {x}")
    if y != pen[1]:
        commands.append(f"V {y}")


def _percent(value: float) -> float:
    """value clamped into 0..100; NaN is 0."""
    return min(value, 100.0) if value > 0 else 0.0


def _num(value: float) -> str:
    """value rounded to 1 decimal, without a trailing ".0" or a negative zero."""
    text = f"{round(value, 1) + 0.0:.1f}"
    return text.removesuffix(".0")
