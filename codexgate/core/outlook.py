"""What a card's one line says about what comes next: when a reached limit is back, or which
window's forecast to tell (pure).

A limit is reached while the upstream's quota error holds (a hit not yet back) or while one of its
windows stands at 100 %; it is back when the last of those comes back. A card then tells no
forecast for that limit. Otherwise it tells at most one: the window that runs out soonest among
those that run out before their reset. The page script applies the same rules to live events
(web/static/js/windows.js `comesBack`, `urgentForecast`; tests check both give the same answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from codexgate.core.forecast import ForecastStatus

# A window used this much (or more) is used up, whatever the thresholds.
FULL_PERCENT: Final = 100.0


@dataclass(frozen=True, slots=True)
class Back:
    """A reached limit: it comes back at `at` (unix seconds; None: not known)."""

    at: float | None


@dataclass(frozen=True, slots=True)
class ForecastCandidate:
    """One window's forecast, as a card's line might tell it."""

    window: str
    used_percent: float | None  # as the window stands now (0 once its reset is inferred)
    status: ForecastStatus | None  # None: no forecast
    exhausts_at: float | None
    runs_out_before_reset_seconds: float | None
    blocked: bool  # its limit is reached: nothing to forecast


def comes_back(
    hit_active: bool,
    hit_resets_at: float | None,
    windows: Sequence[tuple[float | None, float | None]],
) -> Back | None:
    """Whether a limit is reached and when it is back; `windows` as (used now, resets_at).

    None while it is not reached. Back is the latest of the hit's reset and the resets of the
    windows at 100 % that are known; None when none of them is.
    """
    full = [resets_at for used, resets_at in windows if used is not None and used >= FULL_PERCENT]
    if not hit_active and not full:
        return None
    known = [at for at in ([hit_resets_at] if hit_active else []) + full if at is not None]
    return Back(max(known) if known else None)


def urgent_forecast(candidates: Sequence[ForecastCandidate], now: float) -> int | None:
    """The index of the forecast a card tells: the soonest to run out before its reset, if any."""
    best: tuple[float, int] | None = None
    for index, found in enumerate(candidates):
        at = found.exhausts_at
        if at is not None and _tells(found, now) and (best is None or at < best[0]):
            best = (at, index)
    return None if best is None else best[1]


def _tells(found: ForecastCandidate, now: float) -> bool:
    """Whether a window's forecast is worth a line: it runs out ahead, before its reset."""
    return (
        not found.blocked
        and found.status == "runs_out"
        and found.used_percent is not None
        and found.used_percent < FULL_PERCENT
        and found.exhausts_at is not None
        and found.exhausts_at > now
        and found.runs_out_before_reset_seconds is not None
        and found.runs_out_before_reset_seconds > 0
    )
