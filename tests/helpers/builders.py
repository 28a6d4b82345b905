"""Builders of what tests record and evaluate: identities, windows, snapshots, requests, rows."""

from __future__ import annotations

from typing import Any, Final

from codexgate.capture.headers import identity_from_token
from codexgate.core.models import (
    FIVE_HOUR,
    SEVEN_DAY,
    Credits,
    Identity,
    LimitReport,
    RequestRecord,
    Slot,
    Snapshot,
    Source,
    TokenUsage,
    Transport,
    UsageReport,
    Window,
)
from codexgate.core.rows import UsageRow
from codexgate.services.notify import Alert
from tests.helpers.admin_client import JWTS

T0: Final = 1_890_000_000.0  # a capture time; reset times below are a few hours/days after it
FIVE_H_RESET: Final = 1_890_010_000
SEVEN_D_RESET: Final = 1_890_400_000
PATH: Final = "/backend-api/codex/responses"
NOW: Final = 1_800_000_000.0  # the clock of usage_row
RESET: Final = int(NOW + 3600)  # usage_row's 5h reset


def identity(
    key: str = "seat:acct-1:user-1",
    *,
    fingerprint: str = "f" * 64,
    email: str | None = "one@example.com",
    plan: str | None = "plus",
) -> Identity:
    """A made-up seat identity, shaped as capture would build it."""
    parts = key.split(":")
    return Identity(
        account_key=key,
        token_fingerprint=fingerprint,
        chatgpt_account_id=parts[1] if len(parts) == 3 else None,
        chatgpt_user_id=parts[2] if len(parts) == 3 else None,
        email=email,
        plan_type=plan,
    )


OTHER: Final = identity("seat:acct-2:user-2", email="two@example.com", plan="team")
# A seat known only by its opaque token.
TOKEN: Final = identity("token:" + "a" * 64, fingerprint="a" * 64, email=None, plan=None)


def seat_identity(name: str) -> Identity:
    """The identity capture derives from a sample seat's token (`seat_a`, ...)."""
    found = identity_from_token(f"Bearer {JWTS[name]}", None)
    assert found is not None
    return found


def windows(
    five_hour: float | None = 10.0,
    seven_day: float | None = 40.0,
    *,
    five_hour_reset: int = FIVE_H_RESET,
    seven_day_reset: int = SEVEN_D_RESET,
) -> tuple[Window, ...]:
    """A 5h window in the primary slot and a 7d window in the secondary slot."""
    result: list[Window] = []
    if five_hour is not None:
        result.append(Window("primary", "5h", "length", five_hour, 300, five_hour_reset))
    if seven_day is not None:
        slot: Slot = "secondary" if result else "primary"
        result.append(Window(slot, "7d", "length", seven_day, 10080, seven_day_reset))
    return tuple(result)


def snap(
    at: float = T0,
    *,
    who: Identity | None = None,
    wins: tuple[Window, ...] | None = None,
    limits: tuple[LimitReport, ...] | None = None,
    source: Source = "headers",
    plan: str | None = None,
    credits: Credits | None = None,
) -> Snapshot:
    """A snapshot of one report (by default the 'codex' family with 5h and 7d windows)."""
    if limits is None:
        limits = (LimitReport("codex", None, windows() if wins is None else wins),)
    report = UsageReport(limits=limits, plan_type=plan, credits=credits)
    return Snapshot(
        identity=who or identity(),
        captured_at=at,
        source=source,
        report=report,
        http_status=200,
    )


def usage_snapshot(
    who: Identity,
    at: float,
    five_hour: float | None,
    seven_day: float | None = 10.0,
    limit_id: str = "codex",
) -> Snapshot:
    """A report of `who` at `at` with the given used percents (None: window not reported)."""
    found = []
    if five_hour is not None:
        found.append(Window("primary", FIVE_HOUR, "length", five_hour, 300, 1893456000))
    if seven_day is not None:
        found.append(Window("secondary", SEVEN_DAY, "length", seven_day, 10080, 1893955000))
    return snap(at, who=who, limits=(LimitReport(limit_id, None, tuple(found)),))


def request_record(
    at: float = T0,
    *,
    who: Identity | None = None,
    anonymous: bool = False,
    status: int | None = 200,
    transport: Transport = "sse",
    tokens: TokenUsage | None = None,
    proven: bool = True,
) -> RequestRecord:
    """A proxied /responses turn's request-log record, by default of the default seat; `proven`:
    whether the upstream's answer proved the credential."""
    return RequestRecord(
        started_at=at,
        identity=None if anonymous else (who or identity()),
        method="POST",
        path=PATH,
        transport=transport,
        status=status,
        tokens=tokens,
        proven=proven,
    )


def usage_row(
    used: float | None,
    *,
    row_id: int = 1,
    resets_at: int | None = RESET,
    limit_hit: str | None = None,
    hit_until: int | None = None,
    confirmed_at: float = NOW,
) -> UsageRow:
    """A 'codex' row of account 1 with the 5h window at `used`."""
    fields: dict[str, Any] = dict.fromkeys(UsageRow.__slots__)
    fields.update(
        id=row_id,
        account_id=1,
        captured_at=confirmed_at,
        confirmed_at=confirmed_at,
        source="headers",
        limit_id="codex",
        five_hour_used_percent=used,
        five_hour_window_minutes=300,
        five_hour_resets_at=resets_at,
        limit_hit_type=limit_hit,
        limit_hit_resets_at=hit_until,
    )
    return UsageRow(**fields)


def make_alert(**changes: Any) -> Alert:
    """A threshold alert as the notifier gets it; keyword arguments replace its fields."""
    fields: dict[str, Any] = {
        "kind": "threshold",
        "at": 1_772_366_400.0,
        "account_id": 3,
        "account": "alice@example.com",
        "limit_id": "codex",
        "window": "5h",
        "used_percent": 91.0,
        "threshold": 90.0,
        "resets_at": 1_772_374_200,
        "exhausts_at": None,
        "message": "alice@example.com: 5h window at 91% (crossed 90%), resets in 2h 10m",
        "id": 17,
    }
    fields.update(changes)
    return Alert(**fields)
