"""The rows codexgate keeps, as every reader sees them: accounts, usage, requests, alerts, sessions.

Pure data, returned by every storage backend (storage/interface.py) and read by the services and
edges. A field that is None was not reported: unknown, never 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Literal

import orjson

from codexgate.core.models import FIVE_HOUR, MONTHLY, SEVEN_DAY, SpendLimit
from codexgate.core.windows import WindowValue, reported

AccountEventKind = Literal["created", "updated", "deleted"]

_SPEND_LIMIT_FIELDS: Final = tuple(f.name for f in fields(SpendLimit))


def spend_limits_json(limits: tuple[SpendLimit, ...]) -> str | None:
    """The text of a usage row's spend_limits column: a JSON list of objects, keys as
    SpendLimit's fields; None when there is no limit."""
    if not limits:
        return None
    return orjson.dumps([asdict(limit) for limit in limits]).decode()


def spend_limits_of(text: str | None) -> tuple[SpendLimit, ...]:
    """The spend limits spend_limits_json wrote; () for NULL, and for what it did not write
    (a row is never lost to a column it cannot read)."""
    if text is None:
        return ()
    try:
        items: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(items, list):
        return ()
    found = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("kind"), str):
            known: dict[str, Any] = {name: item.get(name) for name in _SPEND_LIMIT_FIELDS}
            found.append(SpendLimit(**known))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class UpcomingReset:
    """A window of an account that resets at `at` (unix seconds)."""

    at: int
    account_id: int
    title: str | None  # display name, else email


@dataclass(frozen=True, slots=True)
class OverviewPage:
    """What the overview shows of every account, and which accounts are on one page."""

    accounts: int
    near_limit: int
    at_limit: int
    max_account_id: int  # the highest id of an account (0: none)
    account_ids: list[int]  # the page, in order
    resets: list[UpcomingReset]  # the soonest resets still ahead, soonest first


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What one record() batch wrote."""

    accounts_created: int
    rows_inserted: int  # new history rows
    rows_confirmed: int  # limit reports that only advanced an existing row's confirmed_at
    requests_inserted: int = 0  # new requests rows
    # Ids of existing usage rows whose confirmed_at this batch advanced (no row inserted for
    # them), ascending: their values are unchanged but their age starts again. Not compared,
    # so that a result still equals RecordResult(created, inserted, confirmed, requests).
    confirmed_row_ids: tuple[int, ...] = field(default=(), compare=False)
    # What max_accounts kept out: new seats not created, their snapshots (not written) and
    # their requests (written without an account).
    seats_refused: int = 0
    snapshots_refused: int = 0
    requests_refused: int = 0


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One row of `accounts`."""

    id: int
    account_key: str
    chatgpt_account_id: str | None
    chatgpt_user_id: str | None
    display_name: str | None
    email: str | None
    plan_type: str | None
    token_fingerprint: str | None
    first_seen_at: float
    last_seen_at: float


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One row of `usage_snapshots`; None means not reported (unknown), never 0.

    A quota error and the account-wide fields (rate_limit_reached_type, the spend columns,
    reset_credits, promo_message) are on the row of the limit the report was about
    (core.limits.report_limit_id: its active limit, else "codex") and NULL on the others.
    """

    id: int
    account_id: int
    captured_at: float
    confirmed_at: float
    source: str
    http_status: int | None
    limit_id: str
    limit_name: str | None
    plan_type: str | None
    active_limit: str | None
    rate_limit_reached_type: str | None
    five_hour_used_percent: float | None
    five_hour_window_minutes: int | None
    five_hour_resets_at: int | None
    seven_day_used_percent: float | None
    seven_day_window_minutes: int | None
    seven_day_resets_at: int | None
    monthly_used_percent: float | None
    monthly_window_minutes: int | None
    monthly_resets_at: int | None
    primary_window: str | None
    primary_classified_by: str | None
    primary_used_percent: float | None
    primary_window_minutes: int | None
    primary_resets_at: int | None
    secondary_window: str | None
    secondary_classified_by: str | None
    secondary_used_percent: float | None
    secondary_window_minutes: int | None
    secondary_resets_at: int | None
    over_secondary_limit_percent: float | None
    credits_has_credits: bool | None
    credits_unlimited: bool | None
    credits_balance: str | None
    limit_hit_type: str | None  # the quota error's type while the limit is hit
    limit_hit_resets_at: int | None
    spend_control_reached: bool | None  # a workspace spend limit is reached
    spend_limit: str | None  # spend_limit to spend_source: the individual limit
    spend_used: str | None
    spend_used_percent: float | None
    spend_resets_at: int | None
    spend_source: str | None
    spend_reached_limit_type: str | None  # which spend limit is reached ("individual", ...)
    spend_limits: str | None  # JSON: every spend limit (spend_limits_of reads it)
    reset_credits: int | None  # rate-limit reset credits left
    promo_message: str | None

    def windows(self) -> tuple[WindowValue, ...]:
        """The windows this row reports: 5h, 7d, monthly, then other labels of its slots."""
        return reported(
            (self.five_hour_used_percent, self.five_hour_window_minutes, self.five_hour_resets_at),
            (self.seven_day_used_percent, self.seven_day_window_minutes, self.seven_day_resets_at),
            (self.monthly_used_percent, self.monthly_window_minutes, self.monthly_resets_at),
            (
                self.primary_window,
                self.primary_used_percent,
                self.primary_window_minutes,
                self.primary_resets_at,
            ),
            (
                self.secondary_window,
                self.secondary_used_percent,
                self.secondary_window_minutes,
                self.secondary_resets_at,
            ),
        )


@dataclass(frozen=True, slots=True)
class LatestUsageRow:
    """One row of the `latest_usage` view: an account's newest row of one limit family."""

    usage: UsageRow
    account_key: str
    display_name: str | None
    email: str | None
    account_plan_type: str | None
    age_seconds: float  # since the values were last confirmed
    five_hour_reset_in_seconds: float | None  # negative once the reset time has passed
    seven_day_reset_in_seconds: float | None
    monthly_reset_in_seconds: float | None
    limit_hit_reset_in_seconds: float | None
    spend_reset_in_seconds: float | None

    @property
    def read_at(self) -> float:
        """The store's clock when it read this row (unix seconds): what its ages count from."""
        return self.usage.confirmed_at + self.age_seconds

    def reset_in_seconds(self, label: str) -> float | None:
        """Seconds until a fixed window (5h, 7d, monthly) resets; None for other labels."""
        if label == FIVE_HOUR:
            return self.five_hour_reset_in_seconds
        if label == SEVEN_DAY:
            return self.seven_day_reset_in_seconds
        if label == MONTHLY:
            return self.monthly_reset_in_seconds
        return None


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One row of `requests`; token counts are None unless the turn completed with usage."""

    id: int
    started_at: float
    account_id: int | None  # None: no credential the upstream accepted, or no account for it
    method: str
    path: str
    transport: str
    status: int | None
    model: str | None
    upstream_request_id: str | None
    response_id: str | None
    ttfb_ms: float | None
    duration_ms: float | None
    bytes_in: int
    bytes_out: int
    input_tokens: int | None
    cached_input_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    total_tokens: int | None
    error_code: str | None


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """Requests and tokens of one time bucket of the request log."""

    index: int  # 0 is the bucket starting at `since`
    requests: int
    tokens: int  # sum of total_tokens (NULL counts as 0)


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """One row of `account_events`: a change to an account, in commit order (by id)."""

    id: int
    account_id: int  # the account's id then; a 'deleted' account no longer has a row
    kind: AccountEventKind
    at: float  # unix seconds when the change was written


@dataclass(frozen=True, slots=True)
class FeedCursor:
    """The newest id of each table the feed follows; 0 when the table is empty."""

    usage: int  # usage_snapshots.id
    request: int  # requests.id
    account: int  # account_events.id
    alert: int = 0  # alerts.id


AlertKind = Literal["threshold", "limit_hit", "limit_reset", "forecast", "stale", "test"]


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One row of `alerts`: an alert that fired."""

    id: int
    at: float
    kind: AlertKind
    account_id: int | None  # None once the account is deleted, and for a test alert
    account: str | None  # the account's name or email when it fired
    limit_id: str | None
    window: str | None
    used_percent: float | None
    threshold: float | None
    resets_at: int | None
    exhausts_at: float | None
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAlert:
    """An alert to write (AlertRow without its id); what a rule does not say stays None."""

    at: float
    kind: AlertKind
    message: str
    account_id: int | None = None
    account: str | None = None
    limit_id: str | None = None
    window: str | None = None
    used_percent: float | None = None
    threshold: float | None = None
    resets_at: int | None = None
    exhausts_at: float | None = None


@dataclass(frozen=True, slots=True)
class AlertState:
    """What has fired for the current crossing of one rule on one window."""

    account_id: int
    limit_id: str
    window: str  # "*" for rules about the whole limit family
    rule: str  # "threshold:90", "limit_hit", "forecast", "stale"
    period: int | None  # the window's reset time when it fired
    fired_at: float

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.account_id, self.limit_id, self.window, self.rule)


@dataclass(frozen=True, slots=True)
class WebhookRow:
    """A webhook added through the API; url is a secret."""

    id: int
    url: str
    format: str
    name: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A signed-in browser's session, known by the SHA-256 of its cookie."""

    id_sha256: str
    created_at: float
    expires_at: float
    last_used_at: float


@dataclass(frozen=True, slots=True)
class LimitWindows:
    """The windows and limit hit of an account's newest row of one limit family."""

    limit_id: str
    windows: tuple[WindowValue, ...]
    limit_hit_type: str | None
    limit_hit_resets_at: int | None


@dataclass(frozen=True, slots=True)
class AccountWindows:
    """An account's title and the newest windows of each of its limit families (none: no data)."""

    account_id: int
    title: str | None  # display name, else email
    limits: tuple[LimitWindows, ...]


InstanceRole = Literal["leader", "standby", "stopped"]


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One row of `instances`: a codexgate process sharing the database, as it last said."""

    id: str  # random, new at each start
    hostname: str
    pid: int
    version: str
    started_at: float
    seen_at: float  # its last heartbeat, by the database's clock
    role: InstanceRole  # "leader" holds the singleton lease: alerts, webhooks, retention


@dataclass(frozen=True, slots=True)
class InstancesView:
    """Every instance seen lately, and the database's clock when they were read."""

    now: float
    instances: list[InstanceRow]


@dataclass(frozen=True, slots=True)
class Lease:
    """The singleton lease as a claim left it: who holds it, until when, and how far its work got.

    `now` is the database's clock (PostgreSQL's, so that instances whose clocks differ agree)."""

    holder: str
    expires_at: float
    cursor: int  # the newest usage row id the holder's alert engine evaluated
    now: float


@dataclass(frozen=True, slots=True)
class LeaseHeld:
    """What a fenced write checks in its own transaction: this holder still holds the lease;
    and how far the holder's work got, saved with it."""

    holder: str
    cursor: int
