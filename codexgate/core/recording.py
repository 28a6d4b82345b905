"""What a batch of captured traffic writes: identity merge, insert-or-confirm, the seat limit.

Pure rules that every storage backend calls, so that a backend holds only SQL: which accounts
a batch creates or updates and with which fields, which seats max_accounts refuses, which limit
reports become new history rows and which only confirm the newest row.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import itemgetter
from typing import Any, Final, TypeVar

from codexgate.core.models import (
    FIVE_HOUR,
    MONTHLY,
    SEVEN_DAY,
    Identity,
    LimitReport,
    RequestRecord,
    Snapshot,
    Window,
)
from codexgate.core.rows import UsageRow
from codexgate.core.windows import UNCHANGED_RESET_SECONDS

_T = TypeVar("_T")

# The limit family that a report's limit_hit and spend_control are about.
CODEX_LIMIT: Final = "codex"

# The value fields of a usage row (UsageRow's fields from limit_name on, in order). Two reports
# are "the same" when these are equal (reset times within UNCHANGED_RESET_SECONDS); times,
# source and http_status do not count.
_USAGE_FIELDS: Final = tuple(f.name for f in fields(UsageRow))
VALUE_FIELDS: Final = _USAGE_FIELDS[_USAGE_FIELDS.index("limit_name") :]
_RESET_INDEXES: Final = frozenset(
    i for i, name in enumerate(VALUE_FIELDS) if name.endswith("_resets_at")
)

UsageKey = tuple[int, str]  # (account id, limit id)
UsageValues = tuple[Any, ...]  # laid out like VALUE_FIELDS; bools as 0/1


@dataclass(slots=True)
class SeenAccount:
    """What one batch says about one account: its newest non-NULL fields and time span."""

    account_key: str
    first_seen_at: float
    last_seen_at: float
    chatgpt_account_id: str | None = None
    chatgpt_user_id: str | None = None
    email: str | None = None
    plan_type: str | None = None
    token_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class NewestRow:
    """The newest usage row of one (account, limit), as far as the writer knows."""

    row_id: int
    values: UsageValues
    captured_at: float
    confirmed_at: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One limit report of a snapshot, to be written as a usage row or to confirm one."""

    key: UsageKey
    captured_at: float
    source: str
    http_status: int | None
    values: UsageValues


@dataclass(slots=True)
class NewUsageRow:
    """A usage row to insert; confirmed_at moves when a later sample of the batch confirms it."""

    id: int
    sample: Sample
    captured_at: float
    confirmed_at: float


@dataclass(slots=True)
class UsagePlan:
    """What a batch's samples write: new rows, and existing rows whose confirmed_at moves."""

    inserts: list[NewUsageRow] = field(default_factory=list)
    confirms: dict[UsageKey, tuple[int, float]] = field(default_factory=dict)  # (row id, at)
    newest: dict[UsageKey, NewestRow] = field(default_factory=dict)  # after the batch
    inserted: int = 0
    confirmed: int = 0  # samples that only confirmed a row (of the table or of this batch)
    superseded: int = 0  # samples older than their newest row, with other values: not written


def split_batch(
    items: Sequence[Snapshot | RequestRecord],
) -> tuple[list[Snapshot], list[RequestRecord]]:
    """The snapshots in time order (whatever order the queue delivered), the requests as given."""
    snapshots: list[Snapshot] = []
    requests: list[RequestRecord] = []
    for item in items:
        if isinstance(item, Snapshot):
            snapshots.append(item)
        else:
            requests.append(item)
    return sorted(snapshots, key=lambda snapshot: snapshot.captured_at), requests


def seen_accounts(
    ordered: Sequence[Snapshot], requests: Sequence[RequestRecord]
) -> dict[str, SeenAccount]:
    """Fold a batch's proven identities, in time order, into one entry per account: newest wins."""
    # (time, identity, plan): a snapshot's plan is its report's, else the token claim.
    sightings: Iterable[tuple[float, Identity, str | None]] = (
        (s.captured_at, s.identity, s.report.plan_type or s.identity.plan_type) for s in ordered
    )
    if requests:
        by_time = sorted(
            (
                (r.started_at, r.identity, r.identity.plan_type)
                for r in requests
                if r.identity is not None and r.proven
            ),
            key=itemgetter(0),
        )
        # Requests first: at equal times the snapshot comes later, so its report's plan wins.
        sightings = heapq.merge(by_time, sightings, key=itemgetter(0))
    seen: dict[str, SeenAccount] = {}
    for at, identity, plan_type in sightings:
        account = seen.get(identity.account_key)
        if account is None:
            account = SeenAccount(identity.account_key, at, at)
            seen[identity.account_key] = account
        account.last_seen_at = at
        account.chatgpt_account_id = identity.chatgpt_account_id or account.chatgpt_account_id
        account.chatgpt_user_id = identity.chatgpt_user_id or account.chatgpt_user_id
        account.email = identity.email or account.email
        account.plan_type = plan_type or account.plan_type
        account.token_fingerprint = identity.token_fingerprint or account.token_fingerprint
    return seen


def unproven_keys(requests: Sequence[RequestRecord], seen: Mapping[str, SeenAccount]) -> list[str]:
    """The account keys that only unproven requests of a batch name, sorted."""
    keys = {
        r.identity.account_key
        for r in requests
        if r.identity is not None and not r.proven and r.identity.account_key not in seen
    }
    return sorted(keys)


def admit_accounts(
    new: Sequence[_T], existing: int, max_accounts: int | None
) -> tuple[list[_T], list[_T]]:
    """(the new accounts to create, in order; those refused): at most max_accounts in all."""
    if max_accounts is None:
        return list(new), []
    room = max(0, max_accounts - existing)
    return list(new[:room]), list(new[room:])


def limits(snapshot: Snapshot) -> tuple[LimitReport, ...]:
    """The limit reports to write: a windowless "codex" one added when only it is hit or capped."""
    report = snapshot.report
    if (report.limit_hit is None and report.spend_control is None) or any(
        limit.limit_id == CODEX_LIMIT for limit in report.limits
    ):
        return report.limits
    return (LimitReport(CODEX_LIMIT, None, ()), *report.limits)


def samples(snapshot: Snapshot, account_id: int) -> list[Sample]:
    """One sample per limit report that a snapshot writes."""
    return [
        Sample(
            (account_id, limit.limit_id),
            snapshot.captured_at,
            snapshot.source,
            snapshot.http_status,
            usage_values(snapshot, limit),
        )
        for limit in limits(snapshot)
    ]


def usage_values(snapshot: Snapshot, limit: LimitReport) -> UsageValues:
    """One limit report of a snapshot laid out like VALUE_FIELDS."""
    report = snapshot.report
    classified: dict[str, Window] = {}
    slots: dict[str, Window] = {}
    for window in limit.windows:
        classified.setdefault(window.label, window)
        slots.setdefault(window.slot, window)
    primary = slots.get("primary")
    secondary = slots.get("secondary")
    credits = report.credits
    codex = limit.limit_id == CODEX_LIMIT
    hit = report.limit_hit if codex else None
    spend = report.spend_control if codex else None
    return (
        limit.limit_name,
        report.plan_type or snapshot.identity.plan_type,
        report.active_limit,
        report.rate_limit_reached_type,
        *_window_fields(classified.get(FIVE_HOUR)),
        *_window_fields(classified.get(SEVEN_DAY)),
        *_window_fields(classified.get(MONTHLY)),
        primary.label if primary else None,
        primary.classified_by if primary else None,
        *_window_fields(primary),
        secondary.label if secondary else None,
        secondary.classified_by if secondary else None,
        *_window_fields(secondary),
        limit.over_secondary_limit_percent,
        _flag(credits.has_credits) if credits else None,
        _flag(credits.unlimited) if credits else None,
        credits.balance if credits else None,
        hit.error_type if hit else None,
        hit.resets_at if hit else None,
        _flag(spend.reached) if spend else None,
        spend.limit if spend else None,
        spend.used if spend else None,
        spend.used_percent if spend else None,
        spend.resets_at if spend else None,
        spend.source if spend else None,
    )


def request_values(request: RequestRecord, account_id: int | None) -> tuple[Any, ...]:
    """A request laid out like RequestRow's fields after its id."""
    tokens = request.tokens
    return (
        request.started_at,
        account_id,
        request.method,
        request.path,
        request.transport,
        request.status,
        request.model,
        request.upstream_request_id,
        request.response_id,
        request.ttfb_ms,
        request.duration_ms,
        request.bytes_in,
        request.bytes_out,
        None if tokens is None else tokens.input_tokens,
        None if tokens is None else tokens.cached_input_tokens,
        None if tokens is None else tokens.output_tokens,
        None if tokens is None else tokens.reasoning_tokens,
        None if tokens is None else tokens.total_tokens,
        request.error_code,
    )


def same_values(old: UsageValues, new: UsageValues) -> bool:
    """Whether two value tuples are equal, reset times within UNCHANGED_RESET_SECONDS."""
    if old == new:
        return True
    for index, (a, b) in enumerate(zip(old, new, strict=True)):
        if a == b:
            continue
        if (
            index in _RESET_INDEXES
            and a is not None
            and b is not None
            and abs(a - b) <= UNCHANGED_RESET_SECONDS
        ):
            continue
        return False
    return True


def plan_usage(
    batch: Sequence[Sample],
    newest: Mapping[UsageKey, NewestRow | None],
    *,
    heartbeat: float,
    next_id: int,
) -> UsagePlan:
    """Insert-or-confirm for samples in time order, given each key's newest row (None: none).

    A sample confirms the newest row when its values are the same and it came less than
    heartbeat seconds after that row was captured; otherwise it is a new row, with ids from
    next_id on, unless it was captured before the newest row (superseded: not written), so
    that the newest row is always the newest report.
    """
    plan = UsagePlan()
    pending: dict[UsageKey, NewUsageRow] = {}  # the newest row inserted per key
    for sample in batch:
        key = sample.key
        last = plan.newest[key] if key in plan.newest else newest[key]
        captured_at = sample.captured_at
        if (
            last is not None
            and captured_at - last.captured_at < heartbeat
            and same_values(last.values, sample.values)
        ):
            confirmed_at = max(last.confirmed_at, captured_at)
            written = pending.get(key)
            if written is not None:  # inserted by this batch: not in the table yet
                written.confirmed_at = confirmed_at
            else:
                plan.confirms[key] = (last.row_id, confirmed_at)
            plan.newest[key] = NewestRow(last.row_id, last.values, last.captured_at, confirmed_at)
            plan.confirmed += 1
            continue
        if last is not None and captured_at < last.captured_at:
            # A report captured before the newest row but written after it: another instance
            # (or a slower request here) committed late. The newer report already says what is
            # true now; written, the older one would show as current (the feed and the page
            # take each new row as the newest). It is counted, not written.
            plan.superseded += 1
            continue
        row = NewUsageRow(next_id, sample, captured_at, captured_at)
        plan.inserts.append(row)
        pending[key] = row
        plan.newest[key] = NewestRow(next_id, sample.values, captured_at, captured_at)
        next_id += 1
        plan.inserted += 1
    return plan


def _window_fields(window: Window | None) -> tuple[float | None, int | None, int | None]:
    """(used_percent, window_minutes, resets_at) of a window, all None when it is absent."""
    if window is None:
        return None, None, None
    return window.used_percent, window.window_minutes, window.resets_at


def _flag(value: bool | None) -> int | None:
    """A bool as a 0/1 value column holds it."""
    return None if value is None else int(value)
