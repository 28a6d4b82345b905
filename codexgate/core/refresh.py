"""When an idle account's usage is asked of the upstream, and what its answer means. Pure rules.

The gateway asks only for accounts whose access token it saw accepted in traffic, only while
that token is unexpired, and only once the account's newest data is older than the interval
(jittered so that accounts seen together are not polled together). Traffic that keeps the data
fresh moves the baseline forward, so an account in use is never polled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# --refresh-after, in minutes: the default and the least it may be.
DEFAULT_REFRESH_AFTER_MINUTES: Final = 15.0
MIN_REFRESH_AFTER_MINUTES: Final = 5.0
# Each wait is the interval times a factor drawn in [1 - JITTER, 1 + JITTER].
JITTER: Final = 0.2
# A token that expires sooner than this is not used: the answer could come back refused.
EXPIRY_MARGIN_SECONDS: Final = 60.0
# After a server error or no answer, the wait doubles per failure, up to this.
MAX_RETRY_DELAY_SECONDS: Final = 6 * 3600.0
# "Refresh now" of one account at most this often.
MANUAL_MIN_GAP_SECONDS: Final = 60.0

RefreshState = Literal["off", "idle", "scheduled", "stopped"]
# Why refreshing an account stopped: the upstream refused the token (401), refused the account
# (403), asked to slow down (429), or answered another client error (a path it does not serve).
StopReason = Literal["unauthorized", "forbidden", "rate_limited", "rejected"]
Verdict = Literal["ok", "stop", "retry"]

_STOPS: Final[dict[int, StopReason]] = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}


@dataclass(frozen=True, slots=True)
class RefreshStatus:
    """One account's refresh state, as the API and the dashboard show it."""

    enabled: bool  # --refresh-idle is on
    available: bool  # an unexpired token is at hand: "Refresh now" can work
    state: RefreshState
    stopped_reason: StopReason | None = None
    last_at: float | None = None  # the last refresh that brought usage (unix seconds)
    next_at: float | None = None  # when the next one is due, while scheduled


# What an account shows when --refresh-idle is off (or nothing runs it: the offline CLI).
REFRESH_OFF: Final = RefreshStatus(enabled=False, available=False, state="off")


def jitter_factor(unit: float) -> float:
    """The factor of one wait, from a uniform draw `unit` in [0, 1)."""
    return 1.0 + JITTER * (2.0 * unit - 1.0)


def usable(expires_at: float | None, now: float) -> bool:
    """Whether a token may be sent now: it has an expiry and is not within the margin of it."""
    return expires_at is not None and now < expires_at - EXPIRY_MARGIN_SECONDS


def next_refresh_at(
    *,
    newest_data_at: float | None,
    tracked_since: float,
    last_attempt_at: float | None,
    interval: float,
    factor: float,
    retry_at: float | None,
    expires_at: float | None,
) -> float | None:
    """When the account is next asked for, or None when its token expires first.

    The wait starts at the newest of: the account's newest data (traffic keeps moving it), the
    last attempt, and when the token was first kept (an account without data waits too).
    """
    baseline = max(
        tracked_since,
        newest_data_at if newest_data_at is not None else tracked_since,
        last_attempt_at if last_attempt_at is not None else tracked_since,
    )
    due = baseline + interval * factor
    if retry_at is not None:
        due = max(due, retry_at)
    if not usable(expires_at, due):
        return None
    return due


def verdict(status: int) -> Verdict:
    """What an answer of the usage endpoint means for the account's refreshing."""
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500 and status != 408:
        return "stop"
    return "retry"  # 5xx, 408, or anything unexpected: back off and try later


def stop_reason(status: int) -> StopReason:
    """Why refreshing stopped, for a status whose verdict is "stop"."""
    return _STOPS.get(status, "rejected")


def retry_delay(failures: int, interval: float) -> float:
    """How long to wait after `failures` failed attempts in a row (1 or more)."""
    return min(interval * 2.0 ** max(failures - 1, 0), MAX_RETRY_DELAY_SECONDS)
