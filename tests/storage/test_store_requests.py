"""The store's request log, and the quota-hit and spend-control columns of schema version 2."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codexgate.core.models import (
    Identity,
    LimitHit,
    LimitReport,
    RequestRecord,
    Snapshot,
    SpendControl,
    TokenUsage,
    Transport,
    UsageReport,
    Window,
)
from codexgate.core.rows import RecordResult, RequestRow
from codexgate.storage.sqlite.store import Store
from tests.helpers.paths import REPO
from tests.storage.test_store import FIVE_H_RESET, T0, identity, query, snap, windows

OTHER = identity("seat:acct-2:user-2", email="two@example.com", plan="team")
PATH = "/backend-api/codex/responses"


def request(
    at: float = T0,
    *,
    who: Identity | None = None,
    anonymous: bool = False,
    status: int | None = 200,
    transport: Transport = "sse",
    tokens: TokenUsage | None = None,
) -> RequestRecord:
    """A proxied /responses turn, by default of the default seat."""
    return RequestRecord(
        started_at=at,
        identity=None if anonymous else (who or identity()),
        method="POST",
        path=PATH,
        transport=transport,
        status=status,
        tokens=tokens,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store with a 300 s heartbeat."""
    opened = await Store.open(tmp_path / "db" / "codexgate.db")
    yield opened
    await opened.close()


# -- writing requests -----------------------------------------------------------------------


async def test_every_field_of_a_request_is_stored(store: Store) -> None:
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
    result = await store.record([record])
    assert result == RecordResult(
        accounts_created=1, rows_inserted=0, rows_confirmed=0, requests_inserted=1
    )
    [account] = await store.accounts()
    [row] = await store.requests()
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
    assert await store.count_requests() == 1


async def test_a_failed_request_keeps_unknowns_as_null(store: Store) -> None:
    failed = RequestRecord(
        started_at=T0,
        identity=None,
        method="GET",
        path="/backend-api/wham/usage",
        transport="http",
        status=None,
        error_code="upstream_unreachable",
    )
    await store.record([failed])
    [row] = await store.requests()
    assert (row.status, row.model, row.ttfb_ms, row.duration_ms) == (None, None, None, None)
    assert (row.bytes_in, row.bytes_out) == (0, 0)
    assert {row.input_tokens, row.output_tokens, row.total_tokens} == {None}
    assert row.error_code == "upstream_unreachable"


async def test_request_without_credential_has_no_account(store: Store) -> None:
    result = await store.record([request(anonymous=True)])
    assert result == RecordResult(0, 0, 0, requests_inserted=1)
    assert await store.accounts() == []
    [row] = await store.requests()
    assert row.account_id is None


async def test_a_request_alone_creates_its_account(store: Store) -> None:
    result = await store.record([request(T0 + 5), request(T0 + 1)])
    assert (result.accounts_created, result.requests_inserted) == (1, 2)
    [account] = await store.accounts()
    assert account.account_key == "seat:acct-1:user-1"
    assert (account.email, account.plan_type) == ("one@example.com", "plus")
    assert account.token_fingerprint == "f" * 64
    assert (account.first_seen_at, account.last_seen_at) == (T0 + 1, T0 + 5)
    assert {row.account_id for row in await store.requests()} == {account.id}
    assert await store.count_history() == 0
    # Its usage, reported later, belongs to the same account.
    result = await store.record([snap(at=T0 + 10)])
    assert (result.accounts_created, result.rows_inserted) == (0, 1)
    assert [row.account_id for row in await store.history(account.id)] == [account.id]


async def test_snapshots_and_requests_of_one_batch_share_accounts(store: Store) -> None:
    newer_token = identity(fingerprint="b" * 64, email=None)
    result = await store.record(
        [
            request(T0 + 3, who=OTHER),
            snap(at=T0 + 2),
            request(T0 + 1, anonymous=True),
            request(T0 + 4, who=newer_token),
            snap(at=T0 + 3, who=OTHER),
        ]
    )
    assert result == RecordResult(
        accounts_created=2, rows_inserted=2, rows_confirmed=0, requests_inserted=3
    )
    first, second = await store.accounts()
    assert (first.first_seen_at, first.last_seen_at) == (T0 + 2, T0 + 4)
    assert first.token_fingerprint == "b" * 64  # the newest sighting, a request, wins
    assert first.email == "one@example.com"  # and a missing claim erases nothing
    assert second.account_key == OTHER.account_key
    # Requests keep the order they were given in: ids follow it, not started_at.
    rows = sorted(await store.requests(), key=lambda row: row.id)
    assert [(row.started_at, row.account_id) for row in rows] == [
        (T0 + 3, second.id),
        (T0 + 1, None),
        (T0 + 4, first.id),
    ]


async def test_at_equal_times_the_report_plan_beats_the_request_claim(store: Store) -> None:
    await store.record([snap(at=T0, plan="pro"), request(T0)])
    [account] = await store.accounts()
    assert account.plan_type == "pro"


async def test_a_bad_request_rolls_back_the_whole_batch(store: Store) -> None:
    await store.record([snap(at=T0)])
    bad = request(T0 + 2, who=OTHER, transport="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        await store.record([snap(at=T0 + 1, wins=windows(20.0)), bad])
    assert len(await store.accounts()) == 1
    assert await store.count_history() == 1
    assert await store.count_requests() == 0
    assert OTHER.account_key not in store._account_ids
    result = await store.record([snap(at=T0 + 3, wins=windows(20.0)), request(T0 + 3, who=OTHER)])
    assert result == RecordResult(
        accounts_created=1, rows_inserted=1, rows_confirmed=0, requests_inserted=1
    )


async def test_deleting_an_account_deletes_its_requests(store: Store) -> None:
    await store.record(
        [request(T0), request(T0 + 1, who=OTHER), request(T0 + 2, anonymous=True), snap()]
    )
    first, second = await store.accounts()
    assert await store.delete_account(first.id)
    rows = await store.requests()
    assert [row.account_id for row in rows] == [None, second.id]
    assert query(store.path, "SELECT count(*) FROM requests") == [(2,)]
    # The account comes back with the next request, with none of the old ones.
    result = await store.record([request(T0 + 3)])
    assert result.accounts_created == 1
    [again] = [a for a in await store.accounts() if a.account_key == first.account_key]
    assert [row.started_at for row in await store.requests(account_id=again.id)] == [T0 + 3]


# -- reading requests -----------------------------------------------------------------------


async def test_paging_with_before_id_returns_every_row_once(store: Store) -> None:
    # Many equal start times (the turns of one batch often share a millisecond), and ids that
    # do not follow the time order: the cursor must order by (started_at, id) exactly.
    records = [
        request(T0 + (i * 7) % 10, who=OTHER if i % 3 else None, anonymous=i % 5 == 0)
        for i in range(47)
    ]
    await store.record(records)
    everything = await store.requests(limit=1000)
    assert len(everything) == 47
    assert everything == sorted(everything, key=lambda row: (row.started_at, row.id), reverse=True)
    for size in (1, 7, 10, 47, 100):
        pages: list[list[RequestRow]] = []
        before: int | None = None
        while True:
            page = await store.requests(before_id=before, limit=size)
            if not page:
                break
            assert len(page) <= size
            pages.append(page)
            before = page[-1].id
        assert [row for page in pages for row in page] == everything, size


async def test_paging_follows_the_filters(store: Store) -> None:
    await store.record(
        [request(T0 + i % 4, who=OTHER if i % 3 else None) for i in range(30)]
        + [request(T0 + 100 + i, anonymous=True) for i in range(5)]
    )
    _, second = await store.accounts()
    wanted = await store.requests(account_id=second.id, since=T0 + 1, until=T0 + 3, limit=1000)
    assert len(wanted) == 11
    assert {(row.account_id, row.started_at) for row in wanted} == {
        (second.id, T0 + 1),
        (second.id, T0 + 2),
    }
    seen: list[RequestRow] = []
    before: int | None = None
    while page := await store.requests(
        account_id=second.id, since=T0 + 1, until=T0 + 3, before_id=before, limit=4
    ):
        seen += page
        before = page[-1].id
    assert seen == wanted


async def test_request_filters(store: Store) -> None:
    await store.record(
        [request(T0 + i) for i in range(5)]
        + [request(T0 + i + 0.5, who=OTHER) for i in range(5)]
        + [request(T0 + 2.25, anonymous=True)]
    )
    first, second = await store.accounts()
    assert await store.count_requests() == 11
    times = [row.started_at for row in await store.requests(account_id=first.id)]
    assert times == [T0 + 4, T0 + 3, T0 + 2, T0 + 1, T0]
    times = [row.started_at for row in await store.requests(since=T0 + 2, until=T0 + 3)]
    assert times == [T0 + 2.5, T0 + 2.25, T0 + 2]
    times = [row.started_at for row in await store.requests(account_id=second.id, until=T0 + 2)]
    assert times == [T0 + 1.5, T0 + 0.5]
    assert [row.started_at for row in await store.requests(limit=2)] == [T0 + 4.5, T0 + 4]
    assert await store.requests(account_id=second.id + 1) == []
    assert await store.requests(since=T0 + 5) == []


async def test_before_id_of_a_missing_row_returns_nothing(store: Store) -> None:
    await store.record([request(T0 + i) for i in range(3)])
    newest = max(row.id for row in await store.requests())
    assert await store.requests(before_id=newest + 1) == []


async def test_the_documented_request_query_sums_each_account(store: Store) -> None:
    # docs/database.md's example over the request log, run against known rows (test_readme.py
    # runs it against a gateway's database too).
    doc = (REPO / "docs" / "database.md").read_text()
    [sql] = [q for q in re.findall(r"```sql\n(.*?)```", doc, flags=re.DOTALL) if "requests" in q]
    now = time.time()
    turn = TokenUsage(
        input_tokens=1000,
        cached_input_tokens=800,
        output_tokens=200,
        reasoning_tokens=50,
        total_tokens=1200,
    )
    await store.record(
        [
            request(now - 60, tokens=turn),
            request(now - 30, tokens=turn),
            request(now - 20, status=429),
            request(now - 10, who=OTHER, tokens=TokenUsage(10, 0, 5, 0, 15)),
            request(now - 5, anonymous=True, status=None),
            request(now - 2 * 86400, tokens=turn),  # too old
        ]
    )
    await store.rename_account(1, "Work seat")
    rows = query(store.path, sql)
    assert rows == [
        ("Work seat", 3, 1, 2000, 1600, 400, None),
        ("two@example.com", 1, 0, 10, 0, 5, None),
        ("(no credential)", 1, 1, None, None, None, None),
    ]


# -- quota hits and spend controls (schema version 2) ---------------------------------------

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


async def test_limit_hit_lands_on_the_codex_row_only(store: Store) -> None:
    limits = (
        LimitReport("codex", None, windows(100.0)),
        LimitReport("codex_bengalfox", "sonic", windows(3.0, None)),
    )
    await store.record(
        [hit_snap(T0, hit=LimitHit("usage_limit_reached", HIT_RESET), limits=limits)]
    )
    [account] = await store.accounts()
    codex, extra = await store.history(account.id)
    assert (codex.limit_id, codex.source, codex.http_status) == ("codex", "error", 429)
    assert (codex.limit_hit_type, codex.limit_hit_resets_at) == ("usage_limit_reached", HIT_RESET)
    assert codex.five_hour_used_percent == 100.0
    assert extra.limit_id == "codex_bengalfox"
    assert {extra.limit_hit_type, extra.limit_hit_resets_at} == {None}


async def test_limit_hit_appearing_and_disappearing_is_a_change(store: Store) -> None:
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
        result = await store.record([snapshot])
        assert (result.rows_inserted, result.rows_confirmed) == expected, snapshot
    [account] = await store.accounts()
    rows = await store.history(account.id)
    assert [(row.limit_hit_type, row.limit_hit_resets_at) for row in rows] == [
        (None, None),
        ("usage_limit_reached", HIT_RESET),
        ("usage_limit_reached", HIT_RESET + 60),
        ("usage_not_included", HIT_RESET + 60),
        (None, None),
    ]


async def test_limit_hit_without_windows_writes_a_codex_row(store: Store) -> None:
    now = time.time()
    comes_back = int(now) + 3600
    await store.record([hit_snap(now, hit=LimitHit("usage_limit_reached", comes_back), limits=())])
    [latest] = await store.latest_usage()
    row = latest.usage
    assert (row.limit_id, row.limit_name) == ("codex", None)
    assert {row.five_hour_used_percent, row.seven_day_used_percent} == {None}
    assert {row.primary_window, row.secondary_window} == {None}
    assert (row.limit_hit_type, row.limit_hit_resets_at) == ("usage_limit_reached", comes_back)
    assert latest.limit_hit_reset_in_seconds == pytest.approx(3600, abs=2)
    assert latest.spend_reset_in_seconds is None


async def test_spend_control_only_writes_a_codex_row_without_windows(store: Store) -> None:
    # A business seat: wham/usage reports no codex windows, a spend limit and another family.
    now = time.time()
    resets = int(now) + 920_777
    spend = SpendControl(
        reached=False,
        limit="15000",
        used="3831.74",
        used_percent=26.0,
        resets_at=resets,
        source="workspace_spend_controls",
    )
    extra = LimitReport(
        "codex_bengalfox",
        "gpt-5.2-codex-sonic",
        (Window("primary", "5h", "length", 3.0, 300, FIVE_H_RESET),),
    )

    def body(at: float, control: SpendControl) -> Snapshot:
        report = UsageReport(limits=(extra,), plan_type="business", spend_control=control)
        return Snapshot(identity(plan="business"), at, "usage_body", report, 200)

    result = await store.record([body(now, spend)])
    assert result.rows_inserted == 2
    codex, sonic = await store.latest_usage()
    assert codex.usage.limit_id == "codex"
    assert codex.usage.source == "usage_body"
    assert {codex.usage.five_hour_used_percent, codex.usage.seven_day_used_percent} == {None}
    assert {codex.usage.monthly_used_percent, codex.usage.primary_used_percent} == {None}
    assert codex.usage.spend_control_reached is False
    assert (codex.usage.spend_limit, codex.usage.spend_used) == ("15000", "3831.74")
    assert codex.usage.spend_used_percent == 26.0
    assert codex.usage.spend_resets_at == resets
    assert codex.usage.spend_source == "workspace_spend_controls"
    assert codex.spend_reset_in_seconds == pytest.approx(920_777, abs=2)
    assert codex.usage.plan_type == "business"
    assert sonic.usage.limit_id == "codex_bengalfox"
    assert sonic.usage.five_hour_used_percent == 3.0
    assert {sonic.usage.spend_limit, sonic.usage.spend_control_reached} == {None}
    # Reset jitter within the tolerance confirms; spending more or reaching the limit changes.
    jitter = SpendControl(False, "15000", "3831.74", 26.0, resets + 1, "workspace_spend_controls")
    result = await store.record([body(now + 1, jitter)])
    assert (result.rows_inserted, result.rows_confirmed) == (0, 2)
    more = SpendControl(False, "15000", "4000.00", 26.7, resets, "workspace_spend_controls")
    reached = SpendControl(True, "15000", "15000.00", 100.0, resets, "workspace_spend_controls")
    result = await store.record([body(now + 2, more), body(now + 3, reached)])
    assert (result.rows_inserted, result.rows_confirmed) == (2, 2)
    [account] = await store.accounts()
    rows = await store.history(account.id, limit_id="codex")
    assert [(row.spend_used, row.spend_control_reached) for row in rows] == [
        ("3831.74", False),
        ("4000.00", False),
        ("15000.00", True),
    ]
    # Stored as 0/1 (NULL on the other family's row).
    stored = query(store.path, "SELECT DISTINCT spend_control_reached FROM usage_snapshots")
    assert set(stored) == {(None,), (0,), (1,)}


async def test_spend_control_next_to_codex_windows_shares_their_row(store: Store) -> None:
    spend = SpendControl(reached=False, limit="100", used="5", used_percent=5.0)
    report = UsageReport(limits=(LimitReport("codex", None, windows()),), spend_control=spend)
    await store.record([Snapshot(identity(), T0, "usage_body", report, 200)])
    [account] = await store.accounts()
    [row] = await store.history(account.id)
    assert (row.five_hour_used_percent, row.seven_day_used_percent) == (10.0, 40.0)
    assert (row.spend_limit, row.spend_used, row.spend_used_percent) == ("100", "5", 5.0)
    assert {row.spend_resets_at, row.spend_source} == {None}
