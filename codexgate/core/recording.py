"""What a batch of captured traffic writes: identity merge, insert-or-confirm, the seat limit.

Pure rules that every storage backend calls, so that a backend holds only SQL: which accounts
a batch creates or updates and with which fields, which seats max_accounts refuses, which limit
reports become new history rows and which only confirm the newest row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any, Final, TypeVar

from codexgate.core.limits import report_limit_id
from codexgate.core.models import (
    FIVE_HOUR,
    MONTHLY,
    SEVEN_DAY,
    Identity,
    LimitReport,
    RequestRecord,
    Snapshot,
    UsageReport,
    Window,
)
from codexgate.core.rows import UsageRow, spend_limits_json, spend_limits_of
from codexgate.core.windows import UNCHANGED_RESET_SECONDS

_T = TypeVar("_T")

# The value fields of a usage row (UsageRow's fields from limit_name on, in order). Two reports
# are "the same" when these are equal (reset times within UNCHANGED_RESET_SECONDS); times,
# source and http_status do not count.
_USAGE_FIELDS: Final = tuple(f.name for f in fields(UsageRow))
VALUE_FIELDS: Final = _USAGE_FIELDS[_USAGE_FIELDS.index("limit_name") :]
_RESET_INDEXES: Final = tuple(
    i for i, name in enumerate(VALUE_FIELDS) if name.endswith("_resets_at")
)
# The spend limits' JSON: their reset times jitter like the columns' (same_values).
_SPEND_LIMITS: Final = VALUE_FIELDS.index("spend_limits")
_TOLERANT_INDEXES: Final = tuple(sorted((*_RESET_INDEXES, _SPEND_LIMITS)))
# The (start, end) slices of VALUE_FIELDS between the reset times and the spend limits:
# same_values compares each slice at once, in C.
_BETWEEN_RESETS: Final = tuple(
    (start, end)
    for start, end in zip(
        (0, *(i + 1 for i in _TOLERANT_INDEXES)),
        (*_TOLERANT_INDEXES, len(VALUE_FIELDS)),
        strict=True,
    )
    if start < end
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


# Not frozen (nor is NewUsageRow): one is made for every limit report of every snapshot, and a
# frozen dataclass takes four times as long to make (each field goes through object.__setattr__).
@dataclass(slots=True)
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


_CAPTURED_AT: Final = attrgetter("captured_at")
_TIME: Final = itemgetter(0)


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
    snapshots.sort(key=_CAPTURED_AT)
    return snapshots, requests


def seen_accounts(
    ordered: Sequence[Snapshot], requests: Sequence[RequestRecord]
) -> dict[str, SeenAccount]:
    """Fold a batch's proven identities, in time order, into one entry per account: newest wins."""
    # (time, identity, plan): a snapshot's plan is its report's, else the token claim.
    sightings = [
        (s.captured_at, s.identity, s.report.plan_type or s.identity.plan_type) for s in ordered
    ]
    proven = [
        (r.started_at, r.identity, r.identity.plan_type)
        for r in requests
        if r.identity is not None and r.proven
    ]
    if proven:
        # Requests first and a stable sort: at equal times the snapshot comes later, so its
        # report's plan wins.
        sightings = sorted(proven + sightings, key=_TIME)
    seen: dict[str, SeenAccount] = {}
    folded: dict[str, tuple[Identity, str | None]] = {}  # what each account took last
    for at, identity, plan_type in sightings:
        key = identity.account_key
        account = seen.get(key)
        if account is None:
            account = SeenAccount(key, at, at)
            seen[key] = account
        else:
            account.last_seen_at = at
            last_identity, last_plan = folded[key]
            if last_identity is identity and last_plan == plan_type:
                continue  # the same fields again (capture reuses identities): nothing changes
        folded[key] = (identity, plan_type)
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


def refused_requests(requests: Sequence[RequestRecord], refused: Set[str]) -> int:
    """How many of requests name an account that max_accounts refused (in refused)."""
    if not refused:
        return 0
    return sum(1 for r in requests if r.identity is not None and r.identity.account_key in refused)


def admit_accounts(
    new: Sequence[_T], existing: int, max_accounts: int | None
) -> tuple[list[_T], list[_T]]:
    """(the new accounts to create, in order; those refused): at most max_accounts in all."""
    if max_accounts is None:
        return list(new), []
    room = max(0, max_accounts - existing)
    return list(new[:room]), list(new[room:])


def limits(snapshot: Snapshot) -> tuple[LimitReport, ...]:
    """The limit reports to write: a windowless one added for report_limit_id when the report
    has a quota error or an account-wide field for it but no family of that id."""
    report = snapshot.report
    if (
        report.limit_hit is None
        and report.spend_control is None
        and report.rate_limit_reached_type is None
        and report.reset_credits is None
        and report.promo_message is None
    ):
        return report.limits
    limit_id = report_limit_id(report)
    if any(limit.limit_id == limit_id for limit in report.limits):
        return report.limits
    return (_windowless(limit_id), *report.limits)


# One object per limit id, so that Sampler remembers its values like any other limit's.
@lru_cache(maxsize=64)
def _windowless(limit_id: str) -> LimitReport:
    """The report of a limit the upstream named without a window of it."""
    return LimitReport(limit_id, None, ())


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


# A remembered layout: the limit and report it is of, the plan it took, the values.
_Laid = tuple[LimitReport, UsageReport, str | None, UsageValues]


class Sampler:
    """samples() of whole batches, remembering the values of the limit reports it laid out.

    Capture hands out the same report object again while a seat's values do not move (its header
    parser memoises reports), so most snapshots cost a lookup here, not a layout.
    """

    __slots__ = ("_laid", "_maxsize")

    def __init__(self, maxsize: int = 512) -> None:
        """Remember at most `maxsize` layouts; when full, start afresh. A layout only helps while
        capture still hands out its report (its memo keeps REPORT_MEMO_SIZE, of a limit or two
        each), and each one keeps its report alive."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        # By id(limit). An entry holds its limit, so no other object can have that id meanwhile.
        self._laid: dict[int, _Laid] = {}

    def __len__(self) -> int:
        """The number of remembered layouts."""
        return len(self._laid)

    def samples(
        self, snapshots: Sequence[Snapshot], account_ids: Mapping[str, int]
    ) -> list[Sample]:
        """samples() of every snapshot in order; account_ids has the id of each account key."""
        laid = self._laid
        found: list[Sample] = []
        for snapshot in snapshots:
            account_id = account_ids[snapshot.identity.account_key]
            report = snapshot.report
            plan_type = report.plan_type or snapshot.identity.plan_type
            for limit in limits(snapshot):
                entry = laid.get(id(limit))
                if (
                    entry is not None
                    and entry[0] is limit
                    and entry[1] is report
                    and entry[2] == plan_type
                ):
                    values = entry[3]
                else:
                    values = usage_values(snapshot, limit)
                    if len(laid) >= self._maxsize:
                        laid.clear()
                    laid[id(limit)] = (limit, report, plan_type, values)
                found.append(
                    Sample(
                        (account_id, limit.limit_id),
                        snapshot.captured_at,
                        snapshot.source,
                        snapshot.http_status,
                        values,
                    )
                )
        return found


# What the rows of the limits a report is not about take of its quota error and account-wide
# fields: nothing.
_SILENT: Final = UsageReport(limits=())


def usage_values(snapshot: Snapshot, limit: LimitReport) -> UsageValues:
    """One limit report of a snapshot laid out like VALUE_FIELDS."""
    report = snapshot.report
    # The first window of each label, and of each slot.
    five: Window | None = None
    seven: Window | None = None
    month: Window | None = None
    primary: Window | None = None
    secondary: Window | None = None
    for window in limit.windows:
        label = window.label
        if label == FIVE_HOUR:
            five = five or window
        elif label == SEVEN_DAY:
            seven = seven or window
        elif label == MONTHLY:
            month = month or window
        if window.slot == "primary":
            primary = primary or window
        elif window.slot == "secondary":
            secondary = secondary or window
    credits = report.credits
    # A quota error and the account-wide fields go on one row: the limit the report is about.
    speaks = report if limit.limit_id == report_limit_id(report) else _SILENT
    hit = speaks.limit_hit
    spend = speaks.spend_control
    # Written out field by field: this runs for every new report, and one flat tuple is the
    # cheapest way to lay out 39 columns.
    return (
        limit.limit_name,
        report.plan_type or snapshot.identity.plan_type,
        report.active_limit,
        speaks.rate_limit_reached_type,
        None if five is None else five.used_percent,
        None if five is None else five.window_minutes,
        None if five is None else five.resets_at,
        None if seven is None else seven.used_percent,
        None if seven is None else seven.window_minutes,
        None if seven is None else seven.resets_at,
        None if month is None else month.used_percent,
        None if month is None else month.window_minutes,
        None if month is None else month.resets_at,
        None if primary is None else primary.label,
        None if primary is None else primary.classified_by,
        None if primary is None else primary.used_percent,
        None if primary is None else primary.window_minutes,
        None if primary is None else primary.resets_at,
        None if secondary is None else secondary.label,
        None if secondary is None else secondary.classified_by,
        None if secondary is None else secondary.used_percent,
        None if secondary is None else secondary.window_minutes,
        None if secondary is None else secondary.resets_at,
        limit.over_secondary_limit_percent,
        None if credits is None else _flag(credits.has_credits),
        None if credits is None else _flag(credits.unlimited),
        None if credits is None else credits.balance,
        None if hit is None else hit.error_type,
        None if hit is None else hit.resets_at,
        None if spend is None else _flag(spend.reached),
        None if spend is None else spend.limit,
        None if spend is None else spend.used,
        None if spend is None else spend.used_percent,
        None if spend is None else spend.resets_at,
        None if spend is None else spend.source,
        None if spend is None else spend.reached_limit_type,
        None if spend is None else spend_limits_json(spend.limits),
        speaks.reset_credits,
        speaks.promo_message,
    )


def request_row(row_id: int, request: RequestRecord, account_id: int | None) -> tuple[Any, ...]:
    """A request laid out like RequestRow's fields, with its id."""
    tokens = request.tokens
    return (
        row_id,
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


def request_rows(
    requests: Sequence[RequestRecord], first_id: int, account_ids: Mapping[str, int]
) -> list[tuple[Any, ...]]:
    """A batch's requests as rows, ids from first_id on, each with its account (if known)."""
    return [
        request_row(
            row_id,
            request,
            None if request.identity is None else account_ids.get(request.identity.account_key),
        )
        for row_id, request in enumerate(requests, first_id)
    ]


def same_values(old: UsageValues, new: UsageValues) -> bool:
    """Whether two value tuples are equal, reset times within UNCHANGED_RESET_SECONDS."""
    if old == new:
        return True
    if len(old) != len(new):
        return False
    for start, end in _BETWEEN_RESETS:
        if old[start:end] != new[start:end]:
            return False
    for index in _RESET_INDEXES:
        if _resets_apart(old[index], new[index]):
            return False
    a, b = old[_SPEND_LIMITS], new[_SPEND_LIMITS]
    return a == b or _same_spend_limits(a, b)


def _same_spend_limits(old: object, new: object) -> bool:
    """Whether two different spend_limits texts name the same limits, each reset time within
    UNCHANGED_RESET_SECONDS (a relative reset moves with the moment the body was read)."""
    if not (isinstance(old, str) and isinstance(new, str)):
        return False
    before, after = spend_limits_of(old), spend_limits_of(new)
    if len(before) != len(after):
        return False
    for was, now in zip(before, after, strict=True):
        if _resets_apart(was.resets_at, now.resets_at):
            return False
        if replace(was, resets_at=now.resets_at) != now:
            return False
    return True


def _resets_apart(old: int | None, new: int | None) -> bool:
    """Whether two reset times differ by more than UNCHANGED_RESET_SECONDS (or one is unknown)."""
    return old != new and (old is None or new is None or abs(old - new) > UNCHANGED_RESET_SECONDS)


@dataclass(slots=True)
class _Walk:
    """One key's newest row while plan_usage walks a batch (row_id None: it has none yet)."""

    row_id: int | None
    values: UsageValues
    captured_at: float
    confirmed_at: float
    inserted: NewUsageRow | None = None  # the newest row this batch inserts, once it does
    confirms_table: bool = False  # samples confirmed the table's row (before any insert)
    touched: bool = False  # confirmed or inserted: plan.newest has it


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
    inserts = plan.inserts
    confirms = plan.confirms
    walks: dict[UsageKey, _Walk] = {}
    confirmed = superseded = 0
    for sample in batch:
        key = sample.key
        walk = walks.get(key)
        if walk is None:
            last = newest[key]
            if last is None:
                walk = _Walk(None, (), 0.0, 0.0)
            else:
                walk = _Walk(last.row_id, last.values, last.captured_at, last.confirmed_at)
            walks[key] = walk
        captured_at = sample.captured_at
        values = sample.values
        if walk.row_id is not None:
            if captured_at - walk.captured_at < heartbeat and (
                walk.values is values or same_values(walk.values, values)
            ):
                if captured_at > walk.confirmed_at:
                    walk.confirmed_at = captured_at
                if walk.inserted is None:  # not in the table yet otherwise
                    walk.confirms_table = True
                walk.touched = True
                confirmed += 1
                continue
            if captured_at < walk.captured_at:
                # A report captured before the newest row but written after it: another
                # instance (or a slower request here) committed late. The newer report already
                # says what is true now; written, the older one would show as current (the feed
                # and the page take each new row as the newest). It is counted, not written.
                superseded += 1
                continue
            if walk.inserted is not None:
                walk.inserted.confirmed_at = walk.confirmed_at
            elif walk.confirms_table:
                confirms[key] = (walk.row_id, walk.confirmed_at)
        row = NewUsageRow(next_id, sample, captured_at, captured_at)
        inserts.append(row)
        walk.row_id = next_id
        walk.values = values
        walk.captured_at = walk.confirmed_at = captured_at
        walk.inserted = row
        walk.touched = True
        next_id += 1
    for key, walk in walks.items():
        if not walk.touched or walk.row_id is None:
            continue
        if walk.inserted is not None:
            walk.inserted.confirmed_at = walk.confirmed_at
        elif walk.confirms_table:
            confirms[key] = (walk.row_id, walk.confirmed_at)
        plan.newest[key] = NewestRow(walk.row_id, walk.values, walk.captured_at, walk.confirmed_at)
    plan.inserted = len(inserts)
    plan.confirmed = confirmed
    plan.superseded = superseded
    return plan


def _flag(value: bool | None) -> int | None:
    """A bool as a 0/1 value column holds it."""
    return None if value is None else int(value)
