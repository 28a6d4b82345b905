"""How codexgate writes times, percents and spans, for the API, pages, alerts, webhooks and CLI.

Pure: no I/O. The page script (web/static/js/text.js) writes durations and percents by the
same rules, so that a countdown it updates reads like the one the server rendered;
tests/unit/test_js.py checks that both write the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Final, Literal

# Latest values older than this (since last confirmed) are flagged stale.
STALE_AFTER_SECONDS: Final = 900.0
# A moment this close to now (either way) is written as its clock time alone ("14:05"), within
# CLOCK_WEEKDAY_SECONDS with its weekday ("Tue 09:32"), further off with its date.
CLOCK_TIME_SECONDS: Final = 86400.0
CLOCK_WEEKDAY_SECONDS: Final = 6 * 86400.0
ClockStyle = Literal["time", "weekday", "date"]
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# A span's units, largest first: (suffix, seconds).
_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def iso(at: float | None) -> str | None:
    """Unix seconds as ISO-8601 UTC (`2026-03-01T12:00:00Z`, milliseconds when fractional)."""
    if at is None:
        return None
    try:
        moment = datetime.fromtimestamp(at, UTC)
    except (OverflowError, OSError, ValueError):
        return None  # beyond what a calendar date can say; the number stays in the answer
    spec = "seconds" if float(at).is_integer() else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def percent_number(value: float) -> str:
    """A percent's number as shown: whole when whole, else one decimal (`42`, `12.5`)."""
    rounded = round(value, 1)
    return f"{rounded:.0f}" if rounded == int(rounded) else f"{rounded:.1f}"


def percent(value: float) -> str:
    """A percent as shown: `42%`, `12.5%`."""
    return percent_number(value) + "%"


def duration_parts(seconds: float) -> list[tuple[str, int]]:
    """A span's two largest units as (unit, count), the second left out when it is zero:
    [("d", 2), ("h", 4)], [("h", 3)], [("s", 45)]; a negative span is [("s", 0)]."""
    rest = max(0, int(seconds))
    units = []
    for unit, size in _UNITS:
        count, rest = divmod(rest, size)
        units.append((unit, count))
    first = next((i for i, (_, count) in enumerate(units) if count), len(units) - 1)
    shown = [units[first]]
    # The largest unit and the next one unless it is zero: never "2h 0m".
    if first < len(units) - 1 and units[first + 1][1]:
        shown.append(units[first + 1])
    return shown


def duration(seconds: float) -> str:
    """A span as its two largest units: 45s, 12m, 3h 5m, 2d 4h (never "2d 0h")."""
    return " ".join(f"{count}{unit}" for unit, count in duration_parts(seconds))


def is_stale(age_seconds: float) -> bool:
    """Whether values last confirmed this long ago are flagged stale."""
    return age_seconds > STALE_AFTER_SECONDS


def clock_style(at: float, now: float) -> ClockStyle:
    """How a moment is written at `now`: its time alone, with its weekday, or with its date."""
    distance = abs(at - now)
    if distance < CLOCK_TIME_SECONDS:
        return "time"
    return "weekday" if distance < CLOCK_WEEKDAY_SECONDS else "date"


def clock(
    at: float, now: float, zone: tzinfo | None = UTC, weekdays: Sequence[str] = WEEKDAYS
) -> str:
    """A moment as a clock reads it: `14:05`, `Tue 09:32`, `2026-03-03 09:32` (zone None: local)."""
    try:
        moment = datetime.fromtimestamp(at, zone)  # zone None: this machine's local time
    except (OverflowError, OSError, ValueError):
        return iso(at) or ""
    style = clock_style(at, now)
    if style == "time":
        return moment.strftime("%H:%M")
    if style == "weekday":
        return f"{weekdays[moment.weekday()]} {moment.strftime('%H:%M')}"
    return moment.strftime("%Y-%m-%d %H:%M")


def clock_rules() -> dict[str, float]:
    """The clock-style rule as the page script applies it (web/static/js/text.js clockStyle)."""
    return {"time_within": CLOCK_TIME_SECONDS, "weekday_within": CLOCK_WEEKDAY_SECONDS}
