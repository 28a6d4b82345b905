"""Storage contract: the request log, and the quota-hit and spend-control columns."""

from __future__ import annotations

import time

import pytest

from codexgate.core.models import (
    LimitHit,
    LimitReport,
    RequestRecord,
    Snapshot,
    SpendControl,
    TokenUsage,
    UsageReport,
)
from codexgate.core.rows import RecordResult, RequestRow
from codexgate.storage.interface import Storage
from tests.helpers.builders import (
    FIVE_H_RESET,
    OTHER,
    PATH,
    T0,
    identity,
    request_record,
    snap,
    windows,
)


async def test_every_field_of_a_request_is_stored(storage: Storage) -> None:
    record = RequestRecord(
        started_at=T0 + 0.25,
        identity=identity(),
        method="POST",
        path=PATH,
        transport="websocket",
        status=200,
        model="gpt-5.2-codex",
        upstream_request_id="req-123",
        response_id="resp_abc",
        ttfb_ms=123.5,
        duration_ms=4567.25,
        bytes_in=2048,
        bytes_out=65536,
        tokens=TokenUsage(
            input_tokens=1200,
            cached_input_tokens=1000,
            output_tokens=300,
            reasoning_tokens=120,
            total_tokens=1500,
        ),
        error_code=None,
    )
    result = await storage.record([record])
    assert result == RecordResult(
        accounts_created=1, rows_inserted=0, rows_confirmed=0, requests_inserted=1
    )
    [account] = await storage.accounts()
    [row] = await storage.requests()
    assert row == RequestRow(
        id=row.id,
        started_at=T0 + 0.25,
        account_id=account.id,
        method="POST",
        path=PATH,
        transport="websocket",
        status=200,
        model="gpt-5.2-codex",
        upstream_request_id="req-123",
        response_id="resp_abc",
        ttfb_ms=123.5,
        duration_ms=4567.25,
        bytes_in=2048,
        bytes_out=65536,
        input_tokens=1200,
        cached_input_tokens=1000,
        output_tokens=300,
        reasoning_tokens=120,
        total_tokens=1500,
        error_code=None,
    )
    assert await storage.count_requests() == 1


async def test_a_failed_request_keeps_unknowns_as_null(storage: Storage) -> None:
    failed = RequestRecord(
        started_at=T0,
        identity=None,
        method="GET",
        path="/backend-api/wham/usage",
        transport="http",
        status=None,
        error_code="upstream_unreachable",
    )
    await storage.record([failed])
    [row] = await storage.requests()
    assert (row.status, row.model, row.ttfb_ms, row.duration_ms) == (None, None, None, None)
    assert (row.bytes_in, row.bytes_out) == (0, 0)
    assert {row.input_tokens, row.output_tokens, row.total_tokens} == {None}
    assert row.error_code == "upstream_unreachable"


async def test_request_without_credential_has_no_account(storage: Storage) -> None:
    result = await storage.record([request_record(anonymous=True)])
    assert result == RecordResult(0, 0, 0, requests_inserted=1)
    assert await storage.accounts() == []
    [row] = await storage.requests()
    assert row.account_id is None


async def test_a_request_alone_creates_its_account(storage: Storage) -> None:
    result = await storage.record([request_record(T0 + 5), request_record(T0 + 1)])
    assert (result.accounts_created, result.requests_inserted) == (1, 2)
    [account] = await storage.accounts()
    assert account.account_key == "seat:acct-1:user-1"
    assert (account.email, account.plan_type) == ("one@example.com", "plus")
    assert account.token_fingerprint == "f" * 64
    assert (account.first_seen_at, account.last_seen_at) == (T0 + 1, T0 + 5)
    assert {row.account_id for row in await storage.requests()} == {account.id}
    assert await storage.count_history() == 0
    # Its usage, reported later, belongs to the same account.
    result = await storage.record([snap(at=T0 + 10)])
    assert (result.accounts_created, result.rows_inserted) == (0, 1)
    assert [row.account_id for row in await storage.history(account.id)] == [account.id]


async def test_snapshots_and_requests_of_one_batch_share_accounts(storage: Storage) -> None:
    newer_token = identity(fingerprint="b" * 64, email=None)
    result = await storage.record(
        [
            request_record(T0 + 3, who=OTHER),
            snap(at=T0 + 2),
            request_record(T0 + 1, anonymous=True),
            request_record(T0 + 4, who=newer_token),
            snap(at=T0 + 3, who=OTHER),
        ]
    )
    assert result == RecordResult(
        accounts_created=2, rows_inserted=2, rows_confirmed=0, requests_inserted=3
    )
    first, second = await storage.accounts()
    assert (first.first_seen_at, first.last_seen_at) == (T0 + 2, T0 + 4)
    assert first.token_fingerprint == "b" * 64  # the newest sighting, a request, wins
    assert first.email == "one@example.com"  # and a missing claim erases nothing
    assert second.account_key == OTHER.account_key
    # Requests keep the order they were given in: ids follow it, not started_at.
    rows = sorted(await storage.requests(), key=lambda row: row.id)
    assert [(row.started_at, row.account_id) for row in rows] == [
        (T0 + 3, second.id),
        (T0 + 1, None),
        (T0 + 4, first.id),
    ]


async def test_at_equal_times_the_report_plan_beats_the_request_claim(storage: Storage) -> None:
    await storage.record([snap(at=T0, plan="pro"), request_record(T0)])
    [account] = await storage.accounts()
    assert account.plan_type == "pro"


async def test_paging_with_before_id_returns_every_row_once(storage: Storage) -> None:
    # Many equal start times (the turns of one batch often share a millisecond), and ids that
    # do not follow the time order: the cursor must order by (started_at, id) exactly.
    records = [
        request_record(T0 + (i * 7) % 10, who=OTHER if i % 3 else None, anonymous=i % 5 == 0)
        for i in range(47)
    ]
    await storage.record(records)
    everything = await storage.requests(limit=1000)
    assert len(everything) == 47
    assert everything == sorted(everything, key=lambda row: (row.started_at, row.id), reverse=True)
    for size in (1, 7, 10, 47, 100):
        pages: list[list[RequestRow]] = []
        before: int | None = None
        while True:
            page = await storage.requests(before_id=before, limit=size)
            if not page:
                break
            assert len(page) <= size
            pages.append(page)
            before = page[-1].id
        assert [row for page in pages for row in page] == everything, size


async def test_paging_follows_the_filters(storage: Storage) -> None:
    await storage.record(
        [request_record(T0 + i % 4, who=OTHER if i % 3 else None) for i in range(30)]
        + [request_record(T0 + 100 + i, anonymous=True) for i in range(5)]
    )
    _, second = await storage.accounts()
    wanted = await storage.requests(account_id=second.id, since=T0 + 1, until=T0 + 3, limit=1000)
    assert len(wanted) == 11
    assert {(row.account_id, row.started_at) for row in wanted} == {
        (second.id, T0 + 1),
        (second.id, T0 + 2),
    }
    seen: list[RequestRow] = []
    before: int | None = None
    while page := await storage.requests(
        account_id=second.id, since=T0 + 1, until=T0 + 3, before_id=before, limit=4
    ):
        seen += page
        before = page[-1].id
    assert seen == wanted


async def test_request_filters(storage: Storage) -> None:
    await storage.record(
        [request_record(T0 + i) for i in range(5)]
        + [request_record(T0 + i + 0.5, who=OTHER) for i in range(5)]
        + [request_record(T0 + 2.25, anonymous=True)]
    )
    first, second = await storage.accounts()
    assert await storage.count_requests() == 11
    times = [row.started_at for row in await storage.requests(account_id=first.id)]
    assert times == [T0 + 4, T0 + 3, T0 + 2, T0 + 1, T0]
    times = [row.started_at for row in await storage.requests(since=T0 + 2, until=T0 + 3)]
    assert times == [T0 + 2.5, T0 + 2.25, T0 + 2]
    times = [row.started_at for row in await storage.requests(account_id=second.id, until=T0 + 2)]
    assert times == [T0 + 1.5, T0 + 0.5]
    assert [row.started_at for row in await storage.requests(limit=2)] == [T0 + 4.5, T0 + 4]
    assert await storage.requests(account_id=second.id + 1) == []
    assert await storage.requests(since=T0 + 5) == []


async def test_before_id_of_a_missing_row_returns_nothing(storage: Storage) -> None:
    await storage.record([request_record(T0 + i) for i in range(3)])
    newest = max(row.id for row in await storage.requests())
    assert await storage.requests(before_id=newest + 1) == []


HIT_RESET = FIVE_H_RESET + 600


def hit_snap(
    at: float,
    *,
    hit: LimitHit | None,
    limits: tuple[LimitReport, ...] | None = None,
) -> Snapshot:
    """A report of the codex windows, with the quota error's limit_hit when given."""
    if limits is None:
        limits = (LimitReport("codex", None, windows(100.0)),)
    report = UsageReport(limits=limits, limit_hit=hit)
    return Snapshot(identity(), at, "error" if hit else "headers", report, 429 if hit else 200)


async def test_limit_hit_lands_on_the_codex_row_only(storage: Storage) -> None:
    limits = (
        LimitReport("codex", None, windows(100.0)),
        LimitReport("codex_bengalfox", "sonic", windows(3.0, None)),
    )
    await storage.record(
        [hit_snap(T0, hit=LimitHit("usage_limit_reached", HIT_RESET), limits=limits)]
    )
    [account] = await storage.accounts()
    codex, extra = await storage.history(account.id)
    assert (codex.limit_id, codex.source, codex.http_status) == ("codex", "error", 429)
    assert (codex.limit_hit_type, codex.limit_hit_resets_at) == ("usage_limit_reached", HIT_RESET)
    assert codex.five_hour_used_percent == 100.0
    assert extra.limit_id == "codex_bengalfox"
    assert {extra.limit_hit_type, extra.limit_hit_resets_at} == {None}


async def test_limit_hit_appearing_and_disappearing_is_a_change(storage: Storage) -> None:
    hit = LimitHit("usage_limit_reached", HIT_RESET)
    steps = [
        (hit_snap(T0, hit=None), (1, 0)),
        (hit_snap(T0 + 1, hit=hit), (1, 0)),  # appears
        (hit_snap(T0 + 2, hit=LimitHit("usage_limit_reached", HIT_RESET + 2)), (0, 1)),
        (hit_snap(T0 + 3, hit=LimitHit("usage_limit_reached", HIT_RESET + 60)), (1, 0)),
        (hit_snap(T0 + 4, hit=LimitHit("usage_not_included", HIT_RESET + 60)), (1, 0)),
        (hit_snap(T0 + 5, hit=None), (1, 0)),  # disappears
    ]
    for snapshot, expected in steps:
        result = await storage.record([snapshot])
        assert (result.rows_inserted, result.rows_confirmed) == expected, snapshot
    [account] = await storage.accounts()
    rows = await storage.history(account.id)
    assert [(row.limit_hit_type, row.limit_hit_resets_at) for row in rows] == [
        (None, None),
        ("usage_limit_reached", HIT_RESET),
        ("usage_limit_reached", HIT_RESET + 60),
        ("usage_not_included", HIT_RESET + 60),
        (None, None),
    ]


async def test_limit_hit_without_windows_writes_a_codex_row(storage: Storage) -> None:
    now = time.time()
    comes_back = int(now) + 3600
    await storage.record(
        [hit_snap(now, hit=LimitHit("usage_limit_reached", comes_back), limits=())]
    )
    [latest] = await storage.latest_usage()
    row = latest.usage
    assert (row.limit_id, row.limit_name) == ("codex", None)
    assert {row.five_hour_used_percent, row.seven_day_used_percent} == {None}
    assert {row.primary_window, row.secondary_window} == {None}
    assert (row.limit_hit_type, row.limit_hit_resets_at) == ("usage_limit_reached", comes_back)
    assert latest.limit_hit_reset_in_seconds == pytest.approx(3600, abs=2)
    assert latest.spend_reset_in_seconds is None


async def test_spend_control_next_to_codex_windows_shares_their_row(storage: Storage) -> None:
    spend = SpendControl(reached=False, limit="100", used="5", used_percent=5.0)
    report = UsageReport(limits=(LimitReport("codex", None, windows()),), spend_control=spend)
    await storage.record([Snapshot(identity(), T0, "usage_body", report, 200)])
    [account] = await storage.accounts()
    [row] = await storage.history(account.id)
    assert (row.five_hour_used_percent, row.seven_day_used_percent) == (10.0, 40.0)
    assert (row.spend_limit, row.spend_used, row.spend_used_percent) == ("100", "5", 5.0)
    assert {row.spend_resets_at, row.spend_source} == {None}
