"""Plain data that flows from capture to the store: windows, reports, identities, snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Slot = Literal["primary", "secondary"]
ClassifiedBy = Literal["length", "slot"]
Source = Literal["headers", "event", "usage_body", "error"]
Transport = Literal["http", "sse", "websocket"]

# Window labels: "5h", "daily", "7d", "monthly" for the known lengths, "<minutes>m" for others.
FIVE_HOUR: str = "5h"
DAILY: str = "daily"
SEVEN_DAY: str = "7d"
MONTHLY: str = "monthly"


@dataclass(frozen=True, slots=True)
class Window:
    """One reported rate-limit window of one limit family; None means that field is unknown."""

    slot: Slot
    label: str
    classified_by: ClassifiedBy
    used_percent: float | None
    window_minutes: int | None
    resets_at: int | None  # absolute unix seconds


@dataclass(frozen=True, slots=True)
class LimitReport:
    """The windows of one limit family (limit id "codex", "codex_bengalfox", ...)."""

    limit_id: str
    limit_name: str | None
    windows: tuple[Window, ...]  # only the reported ones; an absent window is unknown
    over_secondary_limit_percent: float | None = None


@dataclass(frozen=True, slots=True)
class Credits:
    """The credits fields the upstream reports next to the windows."""

    has_credits: bool | None = None
    unlimited: bool | None = None
    balance: str | None = None  # decimal string as sent


# The kinds of spend limit a workspace sets, as `wham/usage` names them (its key less "_limit").
SPEND_LIMIT_KINDS: Final = (
    "individual",
    "group_default",
    "workspace_default",
    "role_budget",
    "group_shared",
    "workspace_shared",
)


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """One spend limit on a seat (`wham/usage` spend_control), amounts as sent."""

    kind: str  # one of SPEND_LIMIT_KINDS
    limit: str | None = None  # decimal strings
    used: str | None = None
    remaining: str | None = None
    used_percent: float | None = None
    remaining_percent: float | None = None
    resets_at: int | None = None  # absolute unix seconds
    group_id: str | None = None  # the group limits' group
    group_name: str | None = None


@dataclass(frozen=True, slots=True)
class SpendControl:
    """A workspace's spend limits on a seat, as `wham/usage` reports them (amounts as sent).

    The flat fields are the individual limit's; `limits` has every limit the body named, the
    individual one included, in SPEND_LIMIT_KINDS order.
    """

    reached: bool | None = None
    limit: str | None = None
    used: str | None = None
    used_percent: float | None = None
    resets_at: int | None = None
    source: str | None = None  # e.g. "workspace_spend_controls"
    reached_limit_type: str | None = None  # which of SPEND_LIMIT_KINDS is reached
    limits: tuple[SpendLimit, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitHit:
    """A quota error (429 usage_limit_reached): the limit is hit and comes back at resets_at."""

    error_type: str  # "usage_limit_reached", "usage_not_included", ...
    resets_at: int | None = None  # absolute unix seconds


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Everything one upstream report (a header set, an event, a body) says about usage."""

    limits: tuple[LimitReport, ...]
    plan_type: str | None = None
    active_limit: str | None = None
    credits: Credits | None = None
    rate_limit_reached_type: str | None = None
    promo_message: str | None = None
    spend_control: SpendControl | None = None
    # Set on source "error" (and a usage body's limit_reached); applies to the limit that
    # active_limit names, else to "codex" (core.recording.report_limit_id).
    limit_hit: LimitHit | None = None
    reset_credits: int | None = None  # rate-limit reset credits the seat may still spend


# The account key of a token that is not a JWT: this, then the token's SHA-256.
TOKEN_KEY_PREFIX: Final = "token:"  # noqa: S105 - a key prefix, not a secret


@dataclass(frozen=True, slots=True)
class Identity:
    """The ChatGPT seat a request belongs to, derived from its credentials (never the token)."""

    # Stable: "seat:<chatgpt_account_id>:<chatgpt_user_id>" or "token:<sha256>"; shown shortened.
    account_key: str
    token_fingerprint: str  # sha256 hex of the bearer token; only its first 8 digits are shown
    chatgpt_account_id: str | None = None
    chatgpt_user_id: str | None = None
    email: str | None = None
    plan_type: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One captured usage report, attributed to a seat, at a moment, from a source."""

    identity: Identity
    captured_at: float  # unix seconds
    source: Source
    report: UsageReport
    http_status: int | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one finished turn (`response.completed` → `response.usage`)."""

    input_tokens: int | None = None
    cached_input_tokens: int | None = None  # part of input_tokens
    output_tokens: int | None = None
    reasoning_tokens: int | None = None  # part of output_tokens
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One proxied HTTP request or WebSocket turn, for the request log."""

    started_at: float  # unix seconds, when the request (or the turn's response.create) arrived
    identity: Identity | None
    method: str
    path: str  # without the query string
    transport: Transport
    status: int | None  # HTTP status; for a WebSocket turn 200, or the wrapped error's status
    model: str | None = None
    upstream_request_id: str | None = None
    response_id: str | None = None
    ttfb_ms: float | None = None  # until the first response byte (or server frame) arrived
    duration_ms: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    tokens: TokenUsage | None = None
    error_code: str | None = None
    # Whether the upstream's answer proved the credential (see observe._Sink). Unproven, the row
    # joins an account that already exists, and creates or updates none.
    proven: bool = True
