"""Pure geometry for the dashboard's inline SVG charts: sparklines, step lines and time ticks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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
    if opening is not None and start - opening[0] > max_gap:
        opening = None
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
        return _num((min(max(at, start), end) - start) / (end - start) * width)

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
        _step_to(commands, pen, x_of(previous + max_gap), pen[1])
    return SeriesPath(" ".join(commands), sum(kept), last_value)


def time_ticks(start: float, end: float, count: int = 4) -> list[tuple[float, float]]:
    """count + 1 evenly spaced (fraction 0..1, unix time) pairs from start to end inclusive."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    fractions = [i / count for i in range(count + 1)]
    # Interpolated from both ends, so that the last tick is exactly end.
    return [(f, start * (1 - f) + end * f) for f in fractions]


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
