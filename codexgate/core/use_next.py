"""Which account to use next: the one with the most room left across its windows. Pure.

The room of one window is what is left of it, 0 to 100 percent, where a window that resets soon
counts as nearly free: within SOON of its reset (a tenth of the window's length, at most an hour)
the used part is credited back linearly, all of it at the reset:

    room = left + used * credit,   credit = min(1, max(0, 1 - resets_in / soon))

so a window whose reset time has passed with no newer report counts as reset (room 100). An
account's room is the tightest (lowest) room of its known windows, in the limits that decide the
seat (seat_limits: its main limit "codex" when it reports one, else all of its limits; another
family, one model's limit, says nothing about the seat's other work). A window without a used
percent is left out: an unknown window neither helps nor counts as 0, and with no known window the
account's room is unknown. An account at its limit (a limit hit not back yet, or a window at
100 % whose reset has not passed, in those limits) has no room and is never chosen.

Order ("most left"): known room, highest first; then unknown room; then the accounts at their
limit; ties by name as the other sorts break them (unnamed last, then by id). The account to use
next is the first of that order when its room is known and it is not at its limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from codexgate.core.limits import MAIN_LIMIT
from codexgate.core.models import FIVE_HOUR, MONTHLY, SEVEN_DAY
from codexgate.core.rows import AccountWindows, LimitWindows
from codexgate.core.windows import WindowValue, reset_passed

# A window's used part is credited back over its last tenth, and at most over its last hour.
SOON_SHARE: Final = 0.1
SOON_MAX_SECONDS: Final = 3600.0
# A window at this used percent (or more) is used up.
FULL_PERCENT: Final = 100.0
# The length of a fixed window that did not say its own (window_minutes).
NOMINAL_MINUTES: Final = {FIVE_HOUR: 300, SEVEN_DAY: 7 * 24 * 60, MONTHLY: 30 * 24 * 60}


class _OfALimit(Protocol):
    @property
    def limit_id(self) -> str: ...


_Limit = TypeVar("_Limit", bound=_OfALimit)


def seat_limits(limits: Sequence[_Limit]) -> Sequence[_Limit]:
    """The limits that decide whether a seat can be used: its main limit when it reports one,
    else all of them. The page script's copy is web/static/js/windows.js `seatLimits`, the
    overview's SQL is in the stores (storage/*/usage.py)."""
    main = [limit for limit in limits if limit.limit_id == MAIN_LIMIT]
    return main or limits


@dataclass(frozen=True, slots=True)
class AccountRoom:
    """How much room an account has left now, by the rule above."""

    account_id: int
    title: str | None
    at_limit: bool
    room: float | None  # percent, 0 to 100; None: unknown (or at the limit)

    @property
    def usable(self) -> bool:
        """Whether the account may be the one to use next."""
        return not self.at_limit and self.room is not None


def soon_seconds(window: WindowValue) -> float | None:
    """How long before its reset a window starts to count as freed; None: its length is unknown."""
    minutes = window.window_minutes
    if minutes is None or minutes <= 0:
        minutes = NOMINAL_MINUTES.get(window.label)
    if minutes is None:
        return None
    return min(SOON_MAX_SECONDS, minutes * 60 * SOON_SHARE)


def window_room(window: WindowValue, now: float) -> float | None:
    """A window's room, 0 to 100 percent (a soon reset counted as nearly free); None: unknown."""
    used = window.used_percent
    if used is None or not math.isfinite(used):
        return None
    used = min(FULL_PERCENT, max(0.0, used))
    credit = 0.0
    soon = soon_seconds(window)
    if reset_passed(window.resets_at, now):  # reset, with no report since (core/windows.py)
        credit = 1.0
    elif window.resets_at is not None and soon is not None:
        credit = min(1.0, max(0.0, 1.0 - (window.resets_at - now) / soon))
    return (FULL_PERCENT - used) + used * credit


def at_limit(limits: Iterable[LimitWindows], now: float) -> bool:
    """A limit hit not back yet, or a window at 100 % whose reset has not passed."""
    for limit in limits:
        if limit.limit_hit_type is not None and (
            limit.limit_hit_resets_at is None or limit.limit_hit_resets_at > now
        ):
            return True
        for window in limit.windows:
            used = window.used_percent
            used_up = used is not None and used >= FULL_PERCENT
            if used_up and not reset_passed(window.resets_at, now):
                return True
    return False


def account_room(account: AccountWindows, now: float) -> AccountRoom:
    """An account's room now: the tightest of its known windows in the limits that decide it."""
    deciding = seat_limits(account.limits)
    if at_limit(deciding, now):
        return AccountRoom(account.account_id, account.title, True, None)
    rooms = [
        room
        for limit in deciding
        for window in limit.windows
        if (room := window_room(window, now)) is not None
    ]
    return AccountRoom(account.account_id, account.title, False, min(rooms, default=None))


def order_key(item: AccountRoom) -> tuple[int, float, bool, str, int]:
    """The "most left" order: known room (highest first), unknown, at the limit; then by name."""
    group = 2 if item.at_limit else 1 if item.room is None else 0
    title = item.title
    return (group, -(item.room or 0.0), title is None, (title or "").casefold(), item.account_id)


def most_left(accounts: Iterable[AccountWindows], now: float) -> list[AccountRoom]:
    """Every account's room, in the "most left" order."""
    return sorted((account_room(account, now) for account in accounts), key=order_key)


def use_next(ranked: Sequence[AccountRoom]) -> AccountRoom | None:
    """The account to use next of a "most left" order, or None when none may be used."""
    return ranked[0] if ranked and ranked[0].usable else None


def best(accounts: Iterable[AccountWindows], now: float) -> AccountRoom | None:
    """use_next(most_left(accounts, now)) without ordering every account."""
    rooms = (account_room(account, now) for account in accounts)
    return min((room for room in rooms if room.usable), key=order_key, default=None)
