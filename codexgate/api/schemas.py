"""Every JSON shape codexgate answers, once: the REST API, the compat routes, the live feed and
the command line's `--json` all render through these functions.

Each shape is a TypedDict (the OpenAPI components are generated from them, api/openapi.py) and
one function that builds it from the rows in core/. No shape carries a token or the whole
SHA-256 of one: a fingerprint or token key is cut to its first 8 hex digits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Final, Literal, TypedDict, cast

from codexgate.config import AlertConfig, WebhookFormat
from codexgate.core import models
from codexgate.core.accounts import account_title
from codexgate.core.alerts import Severity, severity
from codexgate.core.forecast import Forecast as ForecastResult
from codexgate.core.models import FIVE_HOUR, MONTHLY, SEVEN_DAY, TOKEN_KEY_PREFIX
from codexgate.core.refresh import REFRESH_OFF, RefreshState, RefreshStatus, StopReason
from codexgate.core.rows import (
    AccountEventKind,
    AccountRow,
    AlertKind,
    AlertRow,
    InstanceRole,
    InstanceRow,
    InstancesView,
    LatestUsageRow,
    RequestRow,
    UsageRow,
    spend_limits_of,
)
from codexgate.core.text import STALE_AFTER_SECONDS, is_stale, iso
from codexgate.core.use_next import AccountRoom
from codexgate.core.windows import FIXED_WINDOWS, as_of
from codexgate.services.notify import redact_url

# How many hex digits of a token's SHA-256 are ever shown.
SHOWN_HEX: Final = 8


class Doc:
    """What the OpenAPI document says of a field beyond its type: `Annotated[int, Doc(...)]`,
    a description and JSON Schema keywords (minimum, maxLength, format, ...)."""

    __slots__ = ("keywords", "text")

    def __init__(self, text: str | None = None, **keywords: object) -> None:
        self.text = text
        self.keywords = keywords


RowId = Annotated[int, Doc(minimum=1, maximum=2**63 - 1)]
UnixSeconds = Annotated[float, Doc("unix seconds")]
MaybeUnixSeconds = Annotated[float | None, Doc("unix seconds")]
Iso = Annotated[str | None, Doc("ISO-8601 UTC", format="date-time")]
ResetIn = Annotated[float | None, Doc("seconds until resets_at, negative once it has passed")]
# What a report says for the limit it is about (its x-codex-active-limit, else codex), as its
# quota error and spend control are: on that limit only, null on the others.
ReachedType = Annotated[
    str | None,
    Doc("which rate limit the upstream says is reached; on the limit the report was about"),
]
ResetCredits = Annotated[
    int | None,
    Doc("rate-limit reset credits the seat may still spend; on the limit the report was about"),
]
PromoMessage = Annotated[
    str | None, Doc("the upstream's promotion text; on the limit the report was about")
]
# The values the store writes (the rows keep them as plain strings).
Source = Literal["headers", "event", "usage_body", "error"]
Transport = Literal["http", "sse", "websocket"]
ClassifiedBy = Literal["length", "slot"]
InstanceState = Literal["leader", "standby", "stopped", "gone"]


# -- accounts and their latest usage ------------------------------------------------------------


class Forecast(TypedDict):
    """A window's forecast from its history since its last reset."""

    status: Annotated[
        Literal["insufficient_data", "idle", "runs_out", "lasts"],
        Doc(
            "runs_out: 100% is reached at the current pace (before the reset when "
            "runs_out_before_reset_seconds > 0); lasts: it is not; idle: no use since the "
            "reset; insufficient_data: too few reports to say"
        ),
    ]
    rate_per_hour: Annotated[float | None, Doc("smoothed burn rate, percent per hour")]
    exhausts_at: MaybeUnixSeconds
    exhausts_at_iso: Iso
    runs_out_before_reset_seconds: float | None
    sustainable_rate_per_hour: Annotated[
        float | None, Doc("the rate that would last until the reset")
    ]
    since_reset: MaybeUnixSeconds
    since_reset_iso: Iso
    samples: int


class Window(TypedDict):
    """A window's newest values, with the seconds left until it resets."""

    used_percent: Annotated[
        float | None,
        Doc(
            "null when the upstream did not report it (never 0 for unknown); 0 once reset_inferred"
        ),
    ]
    reported_used_percent: Annotated[
        float | None, Doc("the last report's figure (equal to used_percent unless reset_inferred)")
    ]
    reset_inferred: Annotated[
        bool,
        Doc(
            "resets_at has passed with no newer report: the window has reset (used_percent 0),"
            " inferred rather than reported"
        ),
    ]
    window_minutes: int | None
    resets_at: MaybeUnixSeconds
    resets_at_iso: Iso
    reset_in_seconds: ResetIn


class LimitWindow(Window):
    """A window's newest values with its forecast."""

    forecast: Forecast | None


LimitWindows = TypedDict(
    "LimitWindows",
    {"5h": LimitWindow | None, "7d": LimitWindow | None, "monthly": LimitWindow | None},
)


class LimitHit(TypedDict):
    """The quota error the upstream answered while a limit is hit."""

    type: Annotated[str, Doc("usage_limit_reached, ...")]
    resets_at: MaybeUnixSeconds
    resets_at_iso: Iso
    reset_in_seconds: ResetIn


class Credits(TypedDict):
    """The credits the upstream reported."""

    has_credits: bool | None
    unlimited: bool | None
    balance: str | None


class SpendLimit(TypedDict):
    """One spend limit the workspace sets on the seat."""

    kind: Annotated[str, Doc(f"one of {', '.join(models.SPEND_LIMIT_KINDS)}")]
    limit: Annotated[str | None, Doc("amount as the upstream sent it")]
    used: str | None
    remaining: str | None
    used_percent: float | None
    remaining_percent: float | None
    resets_at: MaybeUnixSeconds
    resets_at_iso: Iso
    group_id: Annotated[str | None, Doc("the group limits' group")]
    group_name: str | None


class HistorySpendControl(TypedDict):
    """The workspace's spend limits as reported: the flat fields are the individual limit's."""

    reached: bool | None
    limit: Annotated[str | None, Doc("amount as the upstream sent it")]
    used: str | None
    used_percent: float | None
    resets_at: MaybeUnixSeconds
    resets_at_iso: Iso
    source: str | None
    reached_limit_type: Annotated[str | None, Doc("which of limits' kinds is reached")]
    limits: Annotated[list[SpendLimit], Doc("every spend limit reported, the individual one too")]


class SpendControl(HistorySpendControl):
    """The workspace spend limit, with the seconds left until it resets."""

    reset_in_seconds: ResetIn


class Limit(TypedDict):
    """The newest values of one limit family."""

    limit_id: Annotated[str, Doc("codex, codex_bengalfox, ...")]
    limit_name: str | None
    source: Source
    captured_at: UnixSeconds
    captured_at_iso: Iso
    confirmed_at: UnixSeconds
    confirmed_at_iso: Iso
    age_seconds: Annotated[float, Doc("since confirmed_at")]
    stale: Annotated[bool, Doc(f"age_seconds > {STALE_AFTER_SECONDS:g}")]
    http_status: int | None
    plan_type: str | None
    active_limit: str | None
    rate_limit_reached_type: ReachedType
    windows: LimitWindows
    limit_hit: LimitHit | None
    credits: Credits | None
    spend_control: SpendControl | None
    reset_credits: ResetCredits
    promo_message: PromoMessage


AccountKey = Annotated[str, Doc("seat:<workspace>:<user>, or token:<first 8 hex of the SHA-256>")]
Fingerprint = Annotated[
    str | None, Doc("first 8 hex characters of the token's SHA-256", maxLength=SHOWN_HEX)
]


class Account(TypedDict):
    """An account with the newest values of each of its limit families (never its token)."""

    id: RowId
    account_key: AccountKey
    # What to call it: the display name, else the email, else "Account 3" (core/accounts.py).
    title: str
    display_name: str | None
    email: str | None
    plan_type: str | None
    token_fingerprint: Fingerprint
    first_seen_at: UnixSeconds
    first_seen_at_iso: Iso
    last_seen_at: UnixSeconds
    last_seen_at_iso: Iso
    limits: list[Limit]
    refresh: AccountRefresh


class AccountRefresh(TypedDict):
    """Whether codexgate refreshes the account while it is idle (--refresh-idle); never a token."""

    available: Annotated[
        bool, Doc("an unexpired access token of the account is at hand: Refresh now can work")
    ]
    state: Annotated[
        RefreshState,
        Doc(
            "off (--refresh-idle is off), idle (nothing scheduled: no usable token), scheduled "
            "(asked at next_at unless traffic brings data first), stopped (see stopped_reason)"
        ),
    ]
    stopped_reason: Annotated[
        StopReason | None,
        Doc(
            "why the upstream stopped it: unauthorized (401), forbidden (403), rate_limited "
            "(429), rejected (another 4xx); a new token from traffic starts it again"
        ),
    ]
    last_at: Annotated[float | None, Doc("unix seconds of the last refresh that brought usage")]
    next_at: Annotated[
        float | None, Doc("unix seconds when the next refresh is due, while scheduled")
    ]


class RefreshResult(TypedDict):
    """What POST accounts/{id}/refresh came to."""

    result: Annotated[
        Literal["ok", "stopped", "failed", "no_token"],
        Doc(
            "ok: usage recorded (it reaches the feed and the alerts like any report); stopped: "
            "the upstream refused (refresh.stopped_reason); failed: no usable answer, tried "
            "again later; no_token: the token went away meanwhile"
        ),
    ]
    upstream_status: Annotated[int | None, Doc("the usage endpoint's HTTP status, if it answered")]
    refresh: AccountRefresh


class AccountList(TypedDict):
    """Every account, or a page of them."""

    accounts: list[Account]
    next_cursor: str | None


class UseNext(TypedDict):
    """The account to use next (the most room left, docs/dashboard.md); nulls when none may be."""

    account_id: RowId | None
    title: Annotated[str | None, Doc("display name, else email; null: unnamed or none chosen")]
    room_percent: Annotated[
        float | None,
        Doc("its tightest window's room, 0 to 100, a window resetting soon counted as nearly free"),
    ]
    order: Annotated[
        list[RowId] | None,
        Doc('the asked `accounts` that exist, in the "most left" order; null when none asked'),
    ]


class AccountRecord(TypedDict):
    """An account's own fields, without its usage (the feed's `account` events)."""

    id: RowId
    account_key: AccountKey
    title: str  # as in Account
    chatgpt_account_id: str | None
    chatgpt_user_id: str | None
    display_name: str | None
    email: str | None
    plan_type: str | None
    token_fingerprint: Fingerprint
    first_seen_at: UnixSeconds
    last_seen_at: UnixSeconds


# -- history ------------------------------------------------------------------------------------


class HistoryWindow(TypedDict):
    """A window's values as reported then."""

    used_percent: Annotated[
        float | None, Doc("null when the upstream did not report it (never 0 for unknown)")
    ]
    window_minutes: int | None
    resets_at: MaybeUnixSeconds
    resets_at_iso: Iso


class Slot(HistoryWindow):
    """A raw primary or secondary slot, with the label it was classified as."""

    window: Annotated[str | None, Doc("the label it was given")]
    classified_by: ClassifiedBy | None


class Slots(TypedDict):
    """The raw slots of a report."""

    primary: Slot | None
    secondary: Slot | None


class HistoryLimitHit(TypedDict):
    """The quota error the upstream answered then."""

    type: str
    resets_at: MaybeUnixSeconds
    resets_at_iso: Iso


class HistoryRow(TypedDict):
    """What one report said about one limit family."""

    id: RowId
    limit_id: str
    limit_name: str | None
    source: Source
    captured_at: UnixSeconds
    captured_at_iso: Iso
    confirmed_at: UnixSeconds
    confirmed_at_iso: Iso
    http_status: int | None
    plan_type: str | None
    active_limit: str | None
    rate_limit_reached_type: ReachedType
    windows: Annotated[
        dict[str, HistoryWindow | None],
        Doc(
            "every window the report gave, by label: 5h, 7d and monthly always (null when not"
            " reported), then any other label of its slots"
        ),
    ]
    slots: Slots
    over_secondary_limit_percent: float | None
    limit_hit: HistoryLimitHit | None
    credits: Credits | None
    spend_control: HistorySpendControl | None
    reset_credits: ResetCredits
    promo_message: PromoMessage


class HistoryPage(TypedDict):
    """A page of history, oldest first."""

    items: list[HistoryRow]
    next_cursor: str | None


# -- requests -----------------------------------------------------------------------------------


class Request(TypedDict):
    """One proxied request or WebSocket turn."""

    id: RowId
    started_at: UnixSeconds
    started_at_iso: Iso
    account_id: int | None
    method: str
    path: Annotated[str, Doc("without the query string")]
    transport: Transport
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


class RequestPage(TypedDict):
    """A page of the request log, newest first."""

    items: list[Request]
    next_cursor: str | None


# -- alerts -------------------------------------------------------------------------------------


class Alert(TypedDict):
    """An alert that fired."""

    id: RowId
    at: UnixSeconds
    kind: AlertKind
    severity: Annotated[
        Severity,
        Doc(
            "how urgent its kind is: critical (limit_hit), warning (threshold, forecast), "
            "info (limit_reset, stale), test (test)"
        ),
    ]
    account_id: Annotated[int | None, Doc("null once the account is deleted, and for a test")]
    account: Annotated[str | None, Doc("its name when it fired")]
    limit_id: str | None
    window: str | None
    used_percent: float | None
    threshold: float | None
    resets_at: int | None
    exhausts_at: float | None
    message: str
    at_iso: Iso
    resets_at_iso: Iso
    exhausts_at_iso: Iso


class AlertPage(TypedDict):
    """A page of alerts, newest first."""

    items: list[Alert]
    next_cursor: str | None


class AlertRules(TypedDict):
    """The alert rules in force and where they come from."""

    thresholds: list[float]
    limit_hit: bool
    limit_reset: bool
    forecast: bool
    stale_minutes: float
    source: Literal["config", "api"]


class Webhook(TypedDict):
    """A webhook: never its whole URL."""

    id: int | None
    name: str | None
    format: WebhookFormat
    url: Annotated[str, Doc("its origin only: the URL is a secret")]
    source: Literal["config", "api"]


class WebhookList(TypedDict):
    """Every webhook."""

    items: list[Webhook]


class WebhookResult(TypedDict):
    """How sending the test alert to one webhook went."""

    name: str | None
    format: str
    url: str
    ok: bool
    error: str | None


class TestAlert(TypedDict):
    """The test alert and how each webhook took it."""

    alert: Alert | None
    webhooks: list[WebhookResult]


class SessionsEnded(TypedDict):
    """How many browser sessions were ended."""

    ended: Annotated[int, Doc("sessions ended", minimum=0)]


# -- instances ----------------------------------------------------------------------------------


class Instance(TypedDict):
    """A codexgate process sharing the database, as its last heartbeat said."""

    id: Annotated[str, Doc("random, new at each start")]
    hostname: Annotated[str, Doc("the machine it runs on")]
    pid: int
    version: str
    role: Annotated[
        InstanceRole,
        Doc(
            "as its last heartbeat said: leader (it held the singleton lease), standby, or "
            "stopped (it shut down)"
        ),
    ]
    started_at: UnixSeconds
    started_at_iso: Iso
    seen_at: Annotated[float, Doc("unix seconds of its last heartbeat, by the database's clock")]
    seen_at_iso: Iso
    age_seconds: Annotated[float, Doc("since seen_at, by the database's clock", minimum=0)]
    alive: Annotated[
        bool, Doc("not stopped, and its last heartbeat recent enough (30 s by default)")
    ]
    state: Annotated[
        InstanceState,
        Doc(
            "what the rows say together: leader (alive and holding the singleton lease), "
            "standby (alive), stopped (shut down), gone (no heartbeat lately: killed, or its "
            "machine or network is down)"
        ),
    ]
    this: Annotated[bool, Doc("the instance that answered")]


class InstanceList(TypedDict):
    """Every instance that shared the database lately, newest start first."""

    now: Annotated[float, Doc("unix seconds, by the database's clock")]
    now_iso: Iso
    leader: Annotated[
        str | None,
        Doc(
            "the id of the instance doing the singleton work (alert evaluation, webhook "
            "delivery, retention): the holder of the lease, when it is alive; else null"
        ),
    ]
    instances: list[Instance]


# -- the original plan's routes -------------------------------------------------------------


class CompatUsage(TypedDict):
    """One account's "codex" windows in the plan's shape."""

    key: Annotated[str, Doc("the account id")]
    name: str | None
    email: str | None
    plan_type: str | None
    five_hour: Window | None
    seven_day: Window | None
    monthly: Window | None
    updated_at: MaybeUnixSeconds
    updated_at_iso: Iso


class CompatToken(TypedDict):
    """An account as the plan listed its tokens: never the token."""

    key: Annotated[str, Doc("the account id")]
    name: str | None
    email: str | None
    fingerprint: Fingerprint


# -- the live feed --------------------------------------------------------------------------


class UsageEvent(TypedDict):
    """A `usage` event: a history row written or confirmed, with its family's forecasts now."""

    account_id: int
    limit_id: str
    row: HistoryRow
    age_seconds: Annotated[float, Doc("since the row's confirmed_at")]
    forecasts: dict[str, Forecast]


class AccountEvent(TypedDict):
    """An `account` event: created, updated or deleted (then `account` is null)."""

    id: RowId
    kind: AccountEventKind
    account: AccountRecord | None


# -- rendering ------------------------------------------------------------------------------


def short_fingerprint(fingerprint: str | None) -> str | None:
    """The first 8 hex characters of a token's SHA-256: enough to tell tokens apart."""
    return None if fingerprint is None else fingerprint[:SHOWN_HEX]


def shown_key(account_key: str) -> str:
    """An account key as shown: a "token:<sha256>" key cut to its first 8 hex digits."""
    if account_key.startswith(TOKEN_KEY_PREFIX):
        return TOKEN_KEY_PREFIX + account_key[len(TOKEN_KEY_PREFIX) :][:SHOWN_HEX]
    return account_key


def account_row_json(account: AccountRow) -> AccountRecord:
    """An account's own fields, the key and fingerprint shortened."""
    return {
        "id": account.id,
        "account_key": shown_key(account.account_key),
        "title": account_title(account.id, account.display_name, account.email),
        "chatgpt_account_id": account.chatgpt_account_id,
        "chatgpt_user_id": account.chatgpt_user_id,
        "display_name": account.display_name,
        "email": account.email,
        "plan_type": account.plan_type,
        "token_fingerprint": short_fingerprint(account.token_fingerprint),
        "first_seen_at": account.first_seen_at,
        "last_seen_at": account.last_seen_at,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def forecast_json(result: ForecastResult) -> Forecast:
    """A window's forecast: burn rate, projected exhaustion, and the pace that would last."""
    exhausts_at = _rounded(result.exhausts_at)
    since_reset = _rounded(result.since_reset)
    return {
        "status": result.status,
        "rate_per_hour": _rounded(result.rate_per_hour),
        "exhausts_at": exhausts_at,
        "exhausts_at_iso": iso(exhausts_at),
        "runs_out_before_reset_seconds": _rounded(result.runs_out_before_reset_seconds),
        "sustainable_rate_per_hour": _rounded(result.sustainable_rate_per_hour),
        "since_reset": since_reset,
        "since_reset_iso": iso(since_reset),
        "samples": result.samples,
    }


def window_json(
    used_percent: float | None,
    window_minutes: int | None,
    resets_at: int | None,
    reset_in_seconds: float | None,
    now: float,
) -> Window | None:
    """A latest window as it stands at `now` (reset once resets_at has passed), or None when the
    upstream reported none of its fields."""
    if used_percent is None and window_minutes is None and resets_at is None:
        return None
    current = as_of(used_percent, resets_at, now)
    return {
        "used_percent": current.used_percent,
        "reported_used_percent": current.reported_used_percent,
        "reset_inferred": current.reset_inferred,
        "window_minutes": window_minutes,
        "resets_at": resets_at,
        "resets_at_iso": iso(resets_at),
        "reset_in_seconds": reset_in_seconds,
    }


def latest_windows(latest: LatestUsageRow) -> dict[str, Window]:
    """The fixed windows a latest row reports, by label (5h, 7d, monthly)."""
    windows: dict[str, Window] = {}
    for window in latest.usage.windows():
        if window.label in (FIVE_HOUR, SEVEN_DAY, MONTHLY):
            shown = window_json(
                window.used_percent,
                window.window_minutes,
                window.resets_at,
                latest.reset_in_seconds(window.label),
                latest.read_at,
            )
            if shown is not None:
                windows[window.label] = shown
    return windows


def _limit_window(window: Window | None, found: ForecastResult | None) -> LimitWindow | None:
    if window is None:
        return None
    return {**window, "forecast": None if found is None else forecast_json(found)}


def _credits(row: UsageRow) -> Credits | None:
    credits = (row.credits_has_credits, row.credits_unlimited, row.credits_balance)
    if all(value is None for value in credits):
        return None
    return {
        "has_credits": row.credits_has_credits,
        "unlimited": row.credits_unlimited,
        "balance": row.credits_balance,
    }


def _spend_limit(limit: models.SpendLimit) -> SpendLimit:
    return {
        "kind": limit.kind,
        "limit": limit.limit,
        "used": limit.used,
        "remaining": limit.remaining,
        "used_percent": limit.used_percent,
        "remaining_percent": limit.remaining_percent,
        "resets_at": limit.resets_at,
        "resets_at_iso": iso(limit.resets_at),
        "group_id": limit.group_id,
        "group_name": limit.group_name,
    }


def _history_spend(row: UsageRow) -> HistorySpendControl | None:
    fields = (
        row.spend_control_reached,
        row.spend_limit,
        row.spend_used,
        row.spend_used_percent,
        row.spend_resets_at,
        row.spend_source,
        row.spend_reached_limit_type,
        row.spend_limits,
    )
    if all(value is None for value in fields):
        return None
    return {
        "reached": row.spend_control_reached,
        "limit": row.spend_limit,
        "used": row.spend_used,
        "used_percent": row.spend_used_percent,
        "resets_at": row.spend_resets_at,
        "resets_at_iso": iso(row.spend_resets_at),
        "source": row.spend_source,
        "reached_limit_type": row.spend_reached_limit_type,
        "limits": [_spend_limit(limit) for limit in spend_limits_of(row.spend_limits)],
    }


def _spend_control(row: UsageRow, reset_in_seconds: float | None) -> SpendControl | None:
    spend = _history_spend(row)
    if spend is None:
        return None
    return {
        "reached": spend["reached"],
        "limit": spend["limit"],
        "used": spend["used"],
        "used_percent": spend["used_percent"],
        "resets_at": spend["resets_at"],
        "resets_at_iso": spend["resets_at_iso"],
        "reset_in_seconds": reset_in_seconds,
        "source": spend["source"],
        "reached_limit_type": spend["reached_limit_type"],
        "limits": spend["limits"],
    }


def limit_json(latest: LatestUsageRow, forecasts: Mapping[str, ForecastResult]) -> Limit:
    """One limit family's newest values, with their source, how old they are, and forecasts."""
    row = latest.usage
    windows = latest_windows(latest)
    return {
        "limit_id": row.limit_id,
        "limit_name": row.limit_name,
        "source": cast(Source, row.source),
        "captured_at": row.captured_at,
        "captured_at_iso": iso(row.captured_at),
        "confirmed_at": row.confirmed_at,
        "confirmed_at_iso": iso(row.confirmed_at),
        "age_seconds": latest.age_seconds,
        "stale": is_stale(latest.age_seconds),
        "http_status": row.http_status,
        "plan_type": row.plan_type,
        "active_limit": row.active_limit,
        "rate_limit_reached_type": row.rate_limit_reached_type,
        "windows": {
            "5h": _limit_window(windows.get(FIVE_HOUR), forecasts.get(FIVE_HOUR)),
            "7d": _limit_window(windows.get(SEVEN_DAY), forecasts.get(SEVEN_DAY)),
            "monthly": _limit_window(windows.get(MONTHLY), forecasts.get(MONTHLY)),
        },
        "limit_hit": None
        if row.limit_hit_type is None
        else {
            "type": row.limit_hit_type,
            "resets_at": row.limit_hit_resets_at,
            "resets_at_iso": iso(row.limit_hit_resets_at),
            "reset_in_seconds": latest.limit_hit_reset_in_seconds,
        },
        "credits": _credits(row),
        "spend_control": _spend_control(row, latest.spend_reset_in_seconds),
        "reset_credits": row.reset_credits,
        "promo_message": row.promo_message,
    }


def instances_json(
    view: InstancesView,
    *,
    this_id: str,
    holder: str | None,
    alive: Callable[[InstanceRow, float], bool],
) -> InstanceList:
    """The instances as a heartbeat read found them; `holder` is the lease's holder as this
    instance last saw it, named the leader only while its row is alive."""
    now = view.now
    alive_ids = {row.id for row in view.instances if alive(row, now)}
    leader = holder if holder is not None and holder in alive_ids else None
    items: list[Instance] = []
    for row in view.instances:
        state: InstanceState
        if row.id == leader:
            state = "leader"
        elif row.id in alive_ids:
            state = "standby"
        else:
            state = "stopped" if row.role == "stopped" else "gone"
        items.append(
            {
                "id": row.id,
                "hostname": row.hostname,
                "pid": row.pid,
                "version": row.version,
                "role": row.role,
                "started_at": row.started_at,
                "started_at_iso": iso(row.started_at),
                "seen_at": row.seen_at,
                "seen_at_iso": iso(row.seen_at),
                "age_seconds": round(max(0.0, now - row.seen_at), 3),
                "alive": row.id in alive_ids,
                "state": state,
                "this": row.id == this_id,
            }
        )
    return {"now": now, "now_iso": iso(now), "leader": leader, "instances": items}


def use_next_json(chosen: AccountRoom | None, order: list[int] | None = None) -> UseNext:
    """The account to use next (nulls when none may be used now), and an order if one was asked."""
    if chosen is None:
        return {"account_id": None, "title": None, "room_percent": None, "order": order}
    room = chosen.room
    return {
        "account_id": chosen.account_id,
        "title": chosen.title,
        "room_percent": None if room is None else round(room, 2),
        "order": order,
    }


ForecastTable = Mapping[tuple[int, str], Mapping[str, ForecastResult]]


def refresh_json(status: RefreshStatus) -> AccountRefresh:
    """An account's idle-refresh state (core/refresh.py)."""
    return {
        "available": status.available,
        "state": status.state,
        "stopped_reason": status.stopped_reason,
        "last_at": status.last_at,
        "next_at": status.next_at,
    }


def account_json(
    account: AccountRow,
    latest: Iterable[LatestUsageRow],
    forecasts: ForecastTable,
    *,
    refresh: RefreshStatus = REFRESH_OFF,
) -> Account:
    """An account with the newest values of each of its limit families (never its token)."""
    return {
        "id": account.id,
        "account_key": shown_key(account.account_key),
        "title": account_title(account.id, account.display_name, account.email),
        "display_name": account.display_name,
        "email": account.email,
        "plan_type": account.plan_type,
        "token_fingerprint": short_fingerprint(account.token_fingerprint),
        "first_seen_at": account.first_seen_at,
        "first_seen_at_iso": iso(account.first_seen_at),
        "last_seen_at": account.last_seen_at,
        "last_seen_at_iso": iso(account.last_seen_at),
        "limits": [
            limit_json(row, forecasts.get((row.usage.account_id, row.usage.limit_id), {}))
            for row in latest
        ],
        "refresh": refresh_json(refresh),
    }


def _history_windows(row: UsageRow) -> dict[str, HistoryWindow | None]:
    windows: dict[str, HistoryWindow | None] = dict.fromkeys(FIXED_WINDOWS)
    for window in row.windows():
        windows[window.label] = {
            "used_percent": window.used_percent,
            "window_minutes": window.window_minutes,
            "resets_at": window.resets_at,
            "resets_at_iso": iso(window.resets_at),
        }
    return windows


def _slot(
    label: str | None,
    classified_by: str | None,
    used_percent: float | None,
    window_minutes: int | None,
    resets_at: int | None,
) -> Slot | None:
    """A raw primary/secondary slot of a history row, with the label it was classified as."""
    if label is None and used_percent is None and window_minutes is None and resets_at is None:
        return None
    return {
        "window": label,
        "classified_by": cast(ClassifiedBy | None, classified_by),
        "used_percent": used_percent,
        "window_minutes": window_minutes,
        "resets_at": resets_at,
        "resets_at_iso": iso(resets_at),
    }


def history_json(row: UsageRow) -> HistoryRow:
    """One history row: what one report said about one limit family."""
    return {
        "id": row.id,
        "limit_id": row.limit_id,
        "limit_name": row.limit_name,
        "source": cast(Source, row.source),
        "captured_at": row.captured_at,
        "captured_at_iso": iso(row.captured_at),
        "confirmed_at": row.confirmed_at,
        "confirmed_at_iso": iso(row.confirmed_at),
        "http_status": row.http_status,
        "plan_type": row.plan_type,
        "active_limit": row.active_limit,
        "rate_limit_reached_type": row.rate_limit_reached_type,
        "windows": _history_windows(row),
        "slots": {
            "primary": _slot(
                row.primary_window,
                row.primary_classified_by,
                row.primary_used_percent,
                row.primary_window_minutes,
                row.primary_resets_at,
            ),
            "secondary": _slot(
                row.secondary_window,
                row.secondary_classified_by,
                row.secondary_used_percent,
                row.secondary_window_minutes,
                row.secondary_resets_at,
            ),
        },
        "over_secondary_limit_percent": row.over_secondary_limit_percent,
        "limit_hit": None
        if row.limit_hit_type is None
        else {
            "type": row.limit_hit_type,
            "resets_at": row.limit_hit_resets_at,
            "resets_at_iso": iso(row.limit_hit_resets_at),
        },
        "credits": _credits(row),
        "spend_control": _history_spend(row),
        "reset_credits": row.reset_credits,
        "promo_message": row.promo_message,
    }


def request_json(row: RequestRow) -> Request:
    """One request-log row."""
    return {
        "id": row.id,
        "started_at": row.started_at,
        "started_at_iso": iso(row.started_at),
        "account_id": row.account_id,
        "method": row.method,
        "path": row.path,
        "transport": cast(Transport, row.transport),
        "status": row.status,
        "model": row.model,
        "upstream_request_id": row.upstream_request_id,
        "response_id": row.response_id,
        "ttfb_ms": row.ttfb_ms,
        "duration_ms": row.duration_ms,
        "bytes_in": row.bytes_in,
        "bytes_out": row.bytes_out,
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "total_tokens": row.total_tokens,
        "error_code": row.error_code,
    }


def alert_json(row: AlertRow) -> Alert:
    """One alert as the API and the feed show it."""
    return {
        "id": row.id,
        "at": row.at,
        "kind": row.kind,
        "severity": severity(row.kind),
        "account_id": row.account_id,
        "account": row.account,
        "limit_id": row.limit_id,
        "window": row.window,
        "used_percent": row.used_percent,
        "threshold": row.threshold,
        "resets_at": row.resets_at,
        "exhausts_at": row.exhausts_at,
        "message": row.message,
        "at_iso": iso(row.at),
        "resets_at_iso": iso(row.resets_at),
        "exhausts_at_iso": iso(row.exhausts_at),
    }


def rules_json(rules: AlertConfig, source: Literal["config", "api"]) -> AlertRules:
    """The rules as the API shows them."""
    return {
        "thresholds": list(rules.thresholds),
        "limit_hit": rules.limit_hit,
        "limit_reset": rules.limit_reset,
        "forecast": rules.forecast,
        "stale_minutes": rules.stale_minutes,
        "source": source,
    }


def webhook_json(
    url: str,
    format_: str,
    name: str | None,
    *,
    webhook_id: int | None,
    source: Literal["config", "api"],
) -> Webhook:
    """A webhook as the API shows it: never its whole URL."""
    return {
        "id": webhook_id,
        "name": name,
        "format": cast(WebhookFormat, format_),
        "url": redact_url(url),
        "source": source,
    }


def webhook_result_json(
    url: str, format_: str, name: str | None, error: str | None
) -> WebhookResult:
    """How sending to one webhook went (its URL shown as its origin only)."""
    return {
        "name": name,
        "format": format_,
        "url": redact_url(url),
        "ok": error is None,
        "error": error,
    }


def usage_compat_json(account: AccountRow, latest: Iterable[LatestUsageRow]) -> CompatUsage:
    """One account's "codex" windows in the plan's shape."""
    codex = next((row for row in latest if row.usage.limit_id == "codex"), None)
    windows = latest_windows(codex) if codex is not None else {}
    updated_at = codex.usage.confirmed_at if codex is not None else None
    return {
        "key": str(account.id),
        "name": account.display_name,
        "email": account.email,
        "plan_type": account.plan_type,
        "five_hour": windows.get(FIVE_HOUR),
        "seven_day": windows.get(SEVEN_DAY),
        "monthly": windows.get(MONTHLY),
        "updated_at": updated_at,
        "updated_at_iso": iso(updated_at),
    }


def token_compat_json(account: AccountRow) -> CompatToken:
    """An account as the plan listed its tokens: never the token, a short fingerprint."""
    return {
        "key": str(account.id),
        "name": account.display_name,
        "email": account.email,
        "fingerprint": short_fingerprint(account.token_fingerprint),
    }


def usage_event_json(
    row: UsageRow, now: float, forecasts: Mapping[str, ForecastResult]
) -> UsageEvent:
    """The feed's `usage` event: the row as GET accounts/{id}/history has it, its age now and
    the forecasts of its limit family's windows."""
    return {
        "account_id": row.account_id,
        "limit_id": row.limit_id,
        "row": history_json(row),
        "age_seconds": round(max(0.0, now - row.confirmed_at), 3),
        "forecasts": {window: forecast_json(found) for window, found in forecasts.items()},
    }


def account_event_json(
    account_id: int, kind: AccountEventKind, account: AccountRow | None
) -> AccountEvent:
    """The feed's `account` event: the account as it is now, or null once deleted."""
    return {
        "id": account_id,
        "kind": kind,
        "account": None if account is None else account_row_json(account),
    }
