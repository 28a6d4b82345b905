"""Window labels, which windows a usage row reports, and when two reset times are the same.

Pure: no I/O. `UsageRow.windows()` (core/rows.py) reads a row's columns through `reported()`; every
reader (API, pages, charts, forecasts, alerts, metrics) takes a row's windows from there.

A window whose reset time has passed with no newer report has reset: `as_of` says so (0 % used,
the reset inferred), for the API, metrics, the command line and the pages alike; the page script
applies the same rule live (web/static/js/windows.js `asOf`, checked against this one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from codexgate.core.models import FIVE_HOUR, MONTHLY, SEVEN_DAY

# The labels with columns of their own (five_hour_*, seven_day_*, monthly_*), in column order;
# any other label ("daily", "<minutes>m") is found only in the raw slot columns.
FIXED_WINDOWS: Final = (FIVE_HOUR, SEVEN_DAY, MONTHLY)
COLUMN_PREFIXES: Final = {FIVE_HOUR: "five_hour", SEVEN_DAY: "seven_day", MONTHLY: "monthly"}

# Two reports whose reset times differ by at most this report the same values (insert-or-confirm):
# a reset time derived from reset-after-seconds moves by a second or two between reports.
UNCHANGED_RESET_SECONDS: Final = 5.0
# Two reset times of one window at most this far apart belong to the same window period (alerts,
# forecasts): the reported time jitters (relative reset times, reports read at different moments),
# while a new period resets a whole window (5 hours or more) after the old one.
SAME_PERIOD_SECONDS: Final = 120

# (used_percent, window_minutes, resets_at) of a fixed window's columns.
FixedColumns = tuple[float | None, int | None, int | None]
# (label, used_percent, window_minutes, resets_at) of a raw slot's columns.
SlotColumns = tuple[str | None, float | None, int | None, int | None]


@dataclass(frozen=True, slots=True)
class WindowValue:
    """One window's values in one usage row; None means that field was not reported."""

    label: str  # "5h", "7d", "monthly", or another label a slot was classified as
    used_percent: float | None
    window_minutes: int | None
    resets_at: int | None  # unix seconds


def reported(
    five_hour: FixedColumns,
    seven_day: FixedColumns,
    monthly: FixedColumns,
    primary: SlotColumns,
    secondary: SlotColumns,
) -> tuple[WindowValue, ...]:
    """The windows a row reports: 5h, 7d, monthly, then other labels of its raw slots.

    A window is reported when any of its fields is known. A slot under a fixed label is that
    window's own column (the store writes the first window of each label there), and of two
    slots with the same other label the primary one counts.
    """
    found: list[WindowValue] = []
    for label, (used, minutes, resets_at) in zip(
        FIXED_WINDOWS, (five_hour, seven_day, monthly), strict=True
    ):
        if used is not None or minutes is not None or resets_at is not None:
            found.append(WindowValue(label, used, minutes, resets_at))
    other: str | None = None  # the other label already taken
    for slot_label, used, minutes, resets_at in (primary, secondary):
        if slot_label is None or slot_label in COLUMN_PREFIXES or slot_label == other:
            continue
        if used is not None or minutes is not None or resets_at is not None:
            found.append(WindowValue(slot_label, used, minutes, resets_at))
            other = slot_label
    return tuple(found)


@dataclass(frozen=True, slots=True)
class WindowNow:
    """A window's used percent as it stands at a moment, and what the last report said."""

    used_percent: float | None  # 0.0 once the reset is inferred; None: unknown
    reported_used_percent: float | None  # the last report's figure
    reset_inferred: bool  # the reset time passed with no newer report


def reset_passed(resets_at: float | None, now: float) -> bool:
    """Whether a window's reported reset time has come by `now`."""
    return resets_at is not None and resets_at <= now


def as_of(used_percent: float | None, resets_at: float | None, now: float) -> WindowNow:
    """A reported window at `now`: reset (0 % used, inferred) once its reset time has passed."""
    if reset_passed(resets_at, now):
        return WindowNow(0.0, used_percent, True)
    return WindowNow(used_percent, used_percent, False)
