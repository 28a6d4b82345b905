"""Forecast when one account's rate-limit window runs out, from its recorded history (pure).

The burn rate is the slope of a weighted least-squares line through the samples of the current
stretch of use, each weighted by exp(-age / tau) with tau a quarter of the window (75 min for 5h,
42 h for 7d). A regression, unlike the last interval or a ratio of smoothed sums, reads a whole
stretch of whole-number steps: a burst moves its slope by the burst's height over the stretch,
not over the few minutes the burst took, and whether the newest sample falls just before or just
after a burst hardly matters. The exponential weights let a lasting change of pace take over
within about tau.

A stretch of use ends at a pause longer than a sixth of the window (50 min for 5h, 28 h for 7d).
The gateway records a sample whenever requests flow, so a gap that long means nobody worked:
counting it as time spent at the old pace would dilute the rate of whoever comes back, and the
old pace says little about theirs. Shorter pauses (between bursts, overnight for the 7d window)
are part of the pace. The rate restarts at a window reset and after such a pause, and until the
new stretch has moved 5 points or lasted 5 % of the window, the forecast says it lacks data.

Too little data is said, not guessed: fewer than 3 samples since the reset, or less than 5 % of
the window between the first and the newest of them. Enough data without any movement since the
reset is idle. A reset time already past means the window reset after the newest sample, so
nothing is known about the new period. At 100 % the window ran out when it first got there.
Without a reported reset time, any pace runs out, with no margin to tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from codexgate.core.windows import SAME_PERIOD_SECONDS

ForecastStatus = Literal["insufficient_data", "idle", "runs_out", "lasts"]

# A used percent that falls by more than this is a reset whose new reset time was not seen.
RESET_DROP_POINTS: Final = 5.0
MIN_SAMPLES: Final = 3
# Less data than this share of the window since the period's first sample is no basis for a pace.
MIN_ELAPSED_FRACTION: Final = 0.05
PAUSE_FRACTION: Final = 1 / 6
SMOOTHING_FRACTION: Final = 1 / 4
# Whole-number steps make a pace read from fewer points up to a third off.
MIN_STRETCH_POINTS: Final = 5.0
# Without window_minutes, the window is taken as at least this long (the common 5h window).
DEFAULT_WINDOW_MINUTES: Final = 300


@dataclass(frozen=True, slots=True)
class Sample:
    """One recorded reading of a window."""

    at: float  # unix seconds (captured_at)
    used_percent: float  # as reported
    resets_at: int | None  # the window's reset time as reported with this sample


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a window is heading at the current pace."""

    status: ForecastStatus  # idle: enough data, but no use since the reset (rate 0): lasts
    used_percent: float | None  # the newest sample's
    resets_at: int | None  # the newest sample's (the period's newest reported one)
    rate_per_hour: float | None  # smoothed burn rate; None when insufficient_data
    exhausts_at: float | None  # when used reaches 100 at that rate; None if rate <= 0
    runs_out_before_reset_seconds: float | None  # resets_at - exhausts_at when runs_out
    sustainable_rate_per_hour: float | None  # (100 - used) / hours until reset
    since_reset: float | None  # unix time the current window period started
    samples: int  # samples used (since the last reset)


def forecast(
    samples: Sequence[Sample], *, now: float, window_minutes: int | None = None
) -> Forecast:
    """Forecast the window's period that is current at `now` from its time-sorted samples."""
    period = samples[_period_start(samples) :]
    if not period:
        return _unknown()
    resets_at = _newest_reset(period)
    if resets_at is not None and now >= resets_at:
        # The window has reset since the newest sample: nothing is known about the new period.
        return _unknown()
    newest = period[-1]
    window = _window_seconds(window_minutes, resets_at, period[0].at)
    pause = window * PAUSE_FRACTION
    rate = _stretch_rate(period, now=now, window=window)

    def result(
        status: ForecastStatus, rate: float | None = None, exhausts_at: float | None = None
    ) -> Forecast:
        before = None
        if status == "runs_out" and resets_at is not None and exhausts_at is not None:
            before = _finite(resets_at - exhausts_at)
        return Forecast(
            status=status,
            used_percent=newest.used_percent,
            resets_at=resets_at,
            rate_per_hour=rate,
            exhausts_at=exhausts_at,
            runs_out_before_reset_seconds=before,
            sustainable_rate_per_hour=_sustainable(newest.used_percent, resets_at, now),
            since_reset=period[0].at,
            samples=len(period),
        )

    if newest.used_percent >= 100:
        reached = next(s.at for s in period if s.used_percent >= 100)
        return result("runs_out", rate, reached)
    if len(period) < MIN_SAMPLES or not newest.at - period[0].at >= window * MIN_ELAPSED_FRACTION:
        return result("insufficient_data")
    if all(s.used_percent == period[0].used_percent for s in period):
        return result("idle", 0.0)
    if not now - newest.at <= pause or rate is None:
        # A pause is going on, or use has just resumed after one: the pace is not known.
        return result("insufficient_data")
    if rate <= 0:
        return result("lasts", 0.0)
    exhausts_at = _finite(max(now, newest.at + (100 - newest.used_percent) / rate * 3600))
    if exhausts_at is None:
        return result("lasts", rate)
    if resets_at is not None and exhausts_at >= resets_at:
        return result("lasts", rate, exhausts_at)
    return result("runs_out", rate, exhausts_at)


def _period_start(samples: Sequence[Sample]) -> int:
    """Index of the first sample after the last reset the samples show."""
    start = 0
    known = samples[0].resets_at if samples else None  # the period's newest reported reset
    prev_used = samples[0].used_percent if samples else 0.0
    for i in range(1, len(samples)):
        cur = samples[i]
        reset = cur.resets_at
        if cur.used_percent < prev_used - RESET_DROP_POINTS or (
            known is not None
            and (cur.at >= known or (reset is not None and reset - known > SAME_PERIOD_SECONDS))
        ):
            start = i
            known = reset
        elif reset is not None:
            known = reset
        prev_used = cur.used_percent
    return start


def _newest_reset(period: Sequence[Sample]) -> int | None:
    """The newest reset time reported in the period."""
    for sample in reversed(period):
        if sample.resets_at is not None:
            return sample.resets_at
    return None


def _window_seconds(window_minutes: int | None, resets_at: int | None, first_at: float) -> float:
    """The window's length, or when unknown a lower bound for it."""
    if window_minutes is not None and window_minutes > 0:
        return window_minutes * 60.0
    known = DEFAULT_WINDOW_MINUTES * 60.0
    if resets_at is not None:
        known = max(known, resets_at - first_at)
    return known if math.isfinite(known) else DEFAULT_WINDOW_MINUTES * 60.0


def _stretch_rate(period: Sequence[Sample], *, now: float, window: float) -> float | None:
    """The smoothed pace of the current stretch of use in percent per hour, if it is known."""
    pause = window * PAUSE_FRACTION
    first = len(period) - 1
    while first > 0 and period[first].at - period[first - 1].at <= pause:
        first -= 1
    stretch = period[first:]
    if len(stretch) < MIN_SAMPLES:
        return None
    moved = stretch[-1].used_percent - stretch[0].used_percent
    lasted = stretch[-1].at - stretch[0].at
    if not (moved >= MIN_STRETCH_POINTS or lasted >= window * MIN_ELAPSED_FRACTION):
        return None
    slope = _weighted_slope(stretch, tau=window * SMOOTHING_FRACTION)
    return None if slope is None else _finite(max(0.0, slope * 3600))


def _weighted_slope(points: Sequence[Sample], *, tau: float) -> float | None:
    """Least-squares slope in percent per second, each point weighted by exp(-age / tau)."""
    end = points[-1].at
    exp = math.exp
    sw = swx = swy = swxx = swxy = 0.0
    for p in points:
        x = p.at - end
        w = exp(x / tau)
        wx = w * x
        sw += w
        swx += wx
        swy += w * p.used_percent
        swxx += wx * x
        swxy += wx * p.used_percent
    sxx = swxx - swx * swx / sw
    if not sxx > 0:
        return None
    return _finite((swxy - swx * swy / sw) / sxx)


def _sustainable(used: float, resets_at: int | None, now: float) -> float | None:
    """The pace that would reach exactly 100 % at the reset, in percent per hour."""
    if resets_at is None or resets_at <= now:
        return None
    return _finite(max(0.0, 100 - used) / ((resets_at - now) / 3600))


def _finite(value: float) -> float | None:
    """The value, or None when arithmetic on extreme inputs overflowed."""
    return value if math.isfinite(value) else None


def _unknown() -> Forecast:
    """A forecast for a period nothing is known about."""
    return Forecast(
        status="insufficient_data",
        used_percent=None,
        resets_at=None,
        rate_per_hour=None,
        exhausts_at=None,
        runs_out_before_reset_seconds=None,
        sustainable_rate_per_hour=None,
        since_reset=None,
        samples=0,
    )
