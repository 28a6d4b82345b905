"""What the dashboard shows, built from store rows: cards, windows, the summary. Pure functions.

The page script applies the same rules to live events (web/static/js/windows.js): the fixed
windows 5h and 7d are always shown (unknown when not reported), monthly and any other window
only when reported; a bar's level comes from the used percent and the configured thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from codexgate.core import limits
from codexgate.core.accounts import DEFAULT_TITLE, account_title
from codexgate.core.forecast import Forecast
from codexgate.core.models import FIVE_HOUR, SEVEN_DAY, SPEND_LIMIT_KINDS
from codexgate.core.outlook import (
    FULL_PERCENT,
    Back,
    ForecastCandidate,
    comes_back,
    urgent_forecast,
)
from codexgate.core.rows import AccountRow, LatestUsageRow, UsageRow, spend_limits_of
from codexgate.core.text import is_stale
from codexgate.core.use_next import seat_limits
from codexgate.core.windows import FIXED_WINDOWS, WindowNow, as_of

MAIN_LIMIT: Final = limits.MAIN_LIMIT
# Shown on every card even when not reported, so that "unknown" is visible rather than absent.
ALWAYS_SHOWN: Final = (FIVE_HOUR, SEVEN_DAY)
SORTS: Final = ("name", "used", "reset")
Level = Literal["ok", "warn", "critical", "full", "unknown"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Used percents from which a bar is amber and red (and an account near its limit)."""

    warn: float = 50.0
    critical: float = 80.0

    def steps(self) -> tuple[tuple[float, Level], ...]:
        """Each level above "ok" with the used percent it starts at, the highest first."""
        return ((FULL_PERCENT, "full"), (self.critical, "critical"), (self.warn, "warn"))

    def level(self, used_percent: float | None) -> Level:
        """The bar's level for a used percent: the first step it reaches, else "ok"."""
        if used_percent is None or not math.isfinite(used_percent):
            return "unknown"
        return next((name for start, name in self.steps() if used_percent >= start), "ok")

    def script_levels(self) -> dict[str, Any]:
        """The level rule as the page script applies it (web/static/js/windows.js level)."""
        return {
            "steps": [[start, name] for start, name in self.steps()],
            "below": "ok",
            "unknown": "unknown",
        }


@dataclass(frozen=True, slots=True)
class WindowView:
    """One window's row on a card."""

    key: str  # "5h", "7d", "monthly", or another label the upstream's slot was classified as
    used_percent: float | None  # None: unknown; 0 once the reset is inferred
    resets_at: int | None
    level: Level
    shown: bool  # False: not reported and not one of ALWAYS_SHOWN (rendered hidden)
    forecast: Forecast | None = None
    reported_used_percent: float | None = None  # the last report's figure
    reset_inferred: bool = False  # resets_at passed with no newer report (core/windows.as_of)


@dataclass(frozen=True, slots=True)
class LimitHit:
    """The limit is hit; it comes back at resets_at (None: not said)."""

    kind: str
    resets_at: int | None


@dataclass(frozen=True, slots=True)
class SpendLimitView:
    """One spend limit as a card shows it: which, how much of it is used, whether it is the
    reached one, when it resets."""

    kind: str  # core.models.SPEND_LIMIT_KINDS
    group_name: str | None
    used: str | None  # amounts as sent
    limit: str | None
    used_percent: float | None
    reached: bool  # the spend control names this one as the reached limit
    resets_at: int | None


def spend_limit_views(row: UsageRow) -> tuple[SpendLimitView, ...]:
    """A row's spend limits; the one spend_reached_limit_type names is marked reached."""
    reached = row.spend_reached_limit_type
    return tuple(
        SpendLimitView(
            spend.kind,
            spend.group_name,
            spend.used,
            spend.limit,
            spend.used_percent,
            spend.kind == reached,
            spend.resets_at,
        )
        for spend in spend_limits_of(row.spend_limits)
        if spend.kind in SPEND_LIMIT_KINDS  # a kind this version has no words for is left out
    )


@dataclass(frozen=True, slots=True)
class LimitView:
    """One limit family of an account: its windows and where the numbers came from."""

    limit_id: str
    limit_name: str | None
    source: str
    captured_at: float
    confirmed_at: float
    stale: bool
    windows: tuple[WindowView, ...]
    limit_hit: LimitHit | None
    back: Back | None = None  # reached (hit, or a window at 100 %): when it is back
    forecast_line: WindowView | None = None  # the card's one forecast, when it is this limit's
    # What the seat's workspace sets and the upstream grants, on the row of the limit they came
    # with (the main limit's, core/limits.py report_limit_id).
    spend_limits: tuple[SpendLimitView, ...] = ()
    reset_credits: int | None = None  # None: not reported (never shown as 0)
    promo_message: str | None = None

    @property
    def is_main(self) -> bool:
        return self.limit_id == MAIN_LIMIT


@dataclass(frozen=True, slots=True)
class CardView:
    """One account's card."""

    account_id: int
    display_name: str | None
    email: str | None
    plan_type: str | None
    limits: tuple[LimitView, ...]
    # Display name, else email, else "Account 3" in the page's language (core/accounts.py).
    title: str
    # Why the idle refresh stopped for this account (core/refresh.py StopReason), if it did.
    refresh_stopped: str | None = None

    @property
    def max_used(self) -> float | None:
        """The highest used percent of any known window of the limits that decide the seat."""
        used = [w.used_percent for w in self._seat_windows() if w.used_percent is not None]
        return max(used, default=None)

    def soonest_reset(self, now: float) -> int | None:
        """The earliest reset still ahead of now, of any window."""
        ahead = [w.resets_at for w in self._windows() if w.resets_at is not None]
        return min((at for at in ahead if at > now), default=None)

    def at_limit(self, now: float) -> bool:
        """A limit that decides the seat is hit (and not yet back), or one of its windows is
        used up; another limit reached shows on its own section only."""
        deciding = seat_limits(self.limits)
        for limit in deciding:
            hit = limit.limit_hit
            if hit is not None and (hit.resets_at is None or hit.resets_at > now):
                return True
        return any(w.level == "full" for limit in deciding for w in limit.windows)

    def _windows(self) -> Iterable[WindowView]:
        for limit in self.limits:
            yield from limit.windows

    def _seat_windows(self) -> Iterable[WindowView]:
        for limit in seat_limits(self.limits):
            yield from limit.windows


@dataclass(frozen=True, slots=True)
class Summary:
    """The strip at the top of the overview."""

    accounts: int
    near_limit: int
    at_limit: int
    soonest_reset: int | None
    soonest_reset_account: str | None  # the title of the account it belongs to


def windows_of(
    row: UsageRow,
    thresholds: Thresholds,
    forecasts: Mapping[str, Forecast] | None = None,
    now: float | None = None,
) -> tuple[WindowView, ...]:
    """A usage row's windows in display order: 5h, 7d, monthly, then other reported labels;
    at `now` (when given) a window whose reset time has passed shows as reset (inferred)."""
    found = forecasts or {}
    reported = {window.label: window for window in row.windows()}
    views = []

    def view(key: str, used: float | None, resets_at: int | None, shown: bool) -> WindowView:
        current = as_of(used, resets_at, now) if now is not None else WindowNow(used, used, False)
        known = current.used_percent is not None and not current.reset_inferred
        return WindowView(
            key=key,
            used_percent=current.used_percent,
            resets_at=resets_at,
            level=thresholds.level(current.used_percent),
            shown=shown,
            forecast=found.get(key) if known else None,
            reported_used_percent=current.reported_used_percent,
            reset_inferred=current.reset_inferred,
        )

    for key in FIXED_WINDOWS:
        fixed = reported.pop(key, None)
        used = None if fixed is None else fixed.used_percent
        resets_at = None if fixed is None else fixed.resets_at
        shown = key in ALWAYS_SHOWN or used is not None or resets_at is not None
        views.append(view(key, used, resets_at, shown))
    for label, other in reported.items():  # the other labels, in slot order
        used, resets_at = other.used_percent, other.resets_at
        if used is not None or resets_at is not None:
            views.append(view(label, used, resets_at, True))
    return tuple(views)


def _back(hit: LimitHit | None, windows: Sequence[WindowView], now: float) -> Back | None:
    """Whether the limit is reached and when it is back (core/outlook.comes_back)."""
    active = hit is not None and (hit.resets_at is None or hit.resets_at > now)
    hit_resets_at = None if hit is None else hit.resets_at
    return comes_back(active, hit_resets_at, [(w.used_percent, w.resets_at) for w in windows])


def with_forecast_line(limits: Sequence[LimitView], now: float) -> tuple[LimitView, ...]:
    """A card's limits with its one forecast line set on the limit it belongs to, if any."""
    found = [(index, w) for index, lv in enumerate(limits) for w in lv.windows if w.shown]
    candidates = [
        ForecastCandidate(
            window=w.key,
            used_percent=w.used_percent,
            status=None if w.forecast is None else w.forecast.status,
            exhausts_at=None if w.forecast is None else w.forecast.exhausts_at,
            runs_out_before_reset_seconds=(
                None if w.forecast is None else w.forecast.runs_out_before_reset_seconds
            ),
            blocked=limits[index].back is not None,
        )
        for index, w in found
    ]
    chosen = urgent_forecast(candidates, now)
    if chosen is None:
        return tuple(limits)
    index, window = found[chosen]
    return tuple(
        replace(lv, forecast_line=window) if i == index else lv for i, lv in enumerate(limits)
    )


def limit_view(
    row: UsageRow,
    now: float,
    thresholds: Thresholds,
    forecasts: Mapping[str, Forecast] | None = None,
) -> LimitView:
    """One limit family's newest row as shown on a card."""
    hit = None
    if row.limit_hit_type is not None:
        hit = LimitHit(row.limit_hit_type, row.limit_hit_resets_at)
    windows = windows_of(row, thresholds, forecasts, now)
    return LimitView(
        limit_id=row.limit_id,
        limit_name=row.limit_name,
        source=row.source,
        captured_at=row.captured_at,
        confirmed_at=row.confirmed_at,
        stale=is_stale(now - row.confirmed_at),
        windows=windows,
        limit_hit=hit,
        back=_back(hit, windows, now),
        spend_limits=spend_limit_views(row),
        reset_credits=row.reset_credits,
        promo_message=row.promo_message,
    )


def cards(
    accounts: Sequence[AccountRow],
    latest: Iterable[LatestUsageRow],
    now: float,
    thresholds: Thresholds,
    forecasts: Mapping[tuple[int, str], Mapping[str, Forecast]] | None = None,
    title_template: str = DEFAULT_TITLE,
) -> list[CardView]:
    """A card per account, each with its limit families (the main one first).

    An account nobody named gets title_template ("Account {id}") in the page's language.
    """
    by_account: dict[int, list[LimitView]] = {}
    for row in latest:
        key = (row.usage.account_id, row.usage.limit_id)
        found = (forecasts or {}).get(key)
        by_account.setdefault(row.usage.account_id, []).append(
            limit_view(row.usage, now, thresholds, found)
        )
    result = []
    for account in accounts:
        limits = sorted(
            by_account.get(account.id, ()), key=lambda lv: (not lv.is_main, lv.limit_id)
        )
        result.append(
            CardView(
                account_id=account.id,
                display_name=account.display_name,
                email=account.email,
                plan_type=account.plan_type,
                limits=with_forecast_line(limits, now),
                title=account_title(
                    account.id, account.display_name, account.email, title_template
                ),
            )
        )
    return result


def sort_cards(views: Sequence[CardView], sort: str, now: float) -> list[CardView]:
    """Cards by name, by most used (unknown last) or by soonest reset (unknown last)."""

    def name_key(card: CardView) -> tuple[bool, str, int]:
        # Accounts nobody named ("Account 4") after the named ones, in id order.
        unnamed = card.display_name is None and card.email is None
        return (unnamed, "" if unnamed else card.title.casefold(), card.account_id)

    if sort == "used":
        return sorted(
            views,
            key=lambda c: (c.max_used is None, -(c.max_used or 0.0), *name_key(c)),
        )
    if sort == "reset":
        return sorted(
            views,
            key=lambda c: (c.soonest_reset(now) is None, c.soonest_reset(now) or 0, *name_key(c)),
        )
    return sorted(views, key=name_key)


def summary(views: Sequence[CardView], now: float, thresholds: Thresholds) -> Summary:
    """Counts of accounts near and at their limit, and the soonest reset of them all."""
    at_limit = {card.account_id for card in views if card.at_limit(now)}
    near = [
        card
        for card in views
        if card.account_id not in at_limit
        and card.max_used is not None
        and card.max_used >= thresholds.critical
    ]
    soonest: tuple[int, CardView] | None = None
    for card in views:
        at = card.soonest_reset(now)
        if at is not None and (soonest is None or at < soonest[0]):
            soonest = (at, card)
    return Summary(
        accounts=len(views),
        near_limit=len(near),
        at_limit=len(at_limit),
        soonest_reset=None if soonest is None else soonest[0],
        soonest_reset_account=None if soonest is None else soonest[1].title,
    )
