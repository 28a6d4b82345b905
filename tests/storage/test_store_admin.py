"""The store's admin additions of schema version 3: settings, account events, paging, feed."""

from __future__ import annotations

import pytest

from codexgate.core.models import LimitReport, RequestRecord
from codexgate.core.rows import AccountEvent, FeedCursor, UsageRow
from codexgate.storage.interface import Storage
from tests.helpers.builders import OTHER, T0, TOKEN, identity, request_record, snap, windows
from tests.helpers.rows import kinds


async def test_set_setting_if_absent_keeps_the_first_value(storage: Storage) -> None:
    assert await storage.set_setting_if_absent("cookie_key", "first") == "first"
    assert await storage.set_setting_if_absent("cookie_key", "second") == "first"
    assert await storage.get_setting("cookie_key") == "first"
    await storage.set_setting("cookie_key", "rotated")
    assert await storage.set_setting_if_absent("cookie_key", "third") == "rotated"


async def test_create_account_then_again_updates(storage: Storage) -> None:
    row, created = await storage.create_account(TOKEN, "Scripted", T0)
    assert created
    assert (row.account_key, row.display_name) == (TOKEN.account_key, "Scripted")
    assert (row.token_fingerprint, row.first_seen_at, row.last_seen_at) == ("a" * 64, T0, T0)
    assert await storage.account(row.id) == row
    again, created = await storage.create_account(TOKEN, None, T0 + 10)
    assert not created
    assert again == row  # None keeps the name; the seen times follow traffic only
    renamed, created = await storage.create_account(TOKEN, "Renamed", T0 + 20)
    assert not created
    assert (renamed.id, renamed.display_name) == (row.id, "Renamed")
    assert await storage.account_events_after(0) == [
        AccountEvent(1, row.id, "created", T0),
        AccountEvent(2, row.id, "updated", T0 + 10),
        AccountEvent(3, row.id, "updated", T0 + 20),
    ]
    assert len(await storage.accounts()) == 1


async def test_create_account_and_traffic_share_the_account(storage: Storage) -> None:
    # Traffic first: create_account finds the seat and takes the identity's fields.
    await storage.record([snap()])
    [seen] = await storage.accounts()
    newer = identity(fingerprint="e" * 64, email="new@example.com")
    row, created = await storage.create_account(newer, "Mine", T0 + 5)
    assert not created
    assert row.id == seen.id
    assert (row.display_name, row.email, row.token_fingerprint) == (
        "Mine",
        "new@example.com",
        "e" * 64,
    )
    assert (row.first_seen_at, row.last_seen_at) == (seen.first_seen_at, seen.last_seen_at)
    # create_account first: traffic then records into that account, creating nothing.
    made, created = await storage.create_account(OTHER, None, T0)
    assert created
    result = await storage.record([snap(T0 + 30, who=OTHER)])
    assert result.accounts_created == 0
    assert [r.account_id for r in await storage.history(made.id)] == [made.id]
    assert kinds(await storage.account_events_after(0)) == [
        (seen.id, "created"),
        (seen.id, "updated"),
        (made.id, "created"),
    ]


async def test_update_account_writes_updated_events(storage: Storage) -> None:
    await storage.record([snap()])
    [account] = await storage.accounts()
    row = await storage.update_account(account.id, display_name="Work seat", now=T0 + 1)
    assert row is not None
    assert row.display_name == "Work seat"
    assert await storage.account(account.id) == row
    cleared = await storage.update_account(account.id, display_name=None, now=T0 + 2)
    assert cleared is not None
    assert cleared.display_name is None
    assert await storage.update_account(account.id + 1, display_name="nobody") is None
    assert await storage.update_account(account.id, display_name="Again") is not None
    assert await storage.update_account(account.id + 1, display_name="nobody") is None
    events = await storage.account_events_after(0)
    assert kinds(events) == [(account.id, kind) for kind in ("created", *["updated"] * 3)]
    assert [event.at for event in events[1:3]] == [T0 + 1, T0 + 2]


async def test_delete_account_writes_a_deleted_event_and_cascades(storage: Storage) -> None:
    await storage.record([snap(), request_record(), snap(who=OTHER)])
    first, second = await storage.accounts()
    assert await storage.delete_account(first.id, now=T0 + 9)
    assert not await storage.delete_account(first.id)  # no second event
    assert await storage.history(first.id) == []
    assert await storage.requests() == []
    assert [a.id for a in await storage.accounts()] == [second.id]
    events = await storage.account_events_after(0)
    assert kinds(events) == [(first.id, "created"), (second.id, "created"), (first.id, "deleted")]
    assert events[-1].at == T0 + 9
    # The caches forgot the account: its next report makes a new account with a fresh row.
    result = await storage.record([snap(T0 + 10)])
    assert (result.accounts_created, result.rows_inserted, result.rows_confirmed) == (1, 1, 0)
    back = next(a for a in await storage.accounts() if a.account_key == first.account_key)
    assert kinds(await storage.account_events_after(events[-1].id)) == [(back.id, "created")]


async def fill_history(storage: Storage) -> int:
    """Two limit families, rows at equal times, some without a 7d window; the account id."""
    two = (
        LimitReport("codex", None, windows(10.0, 40.0)),
        LimitReport("codex_bengalfox", "Other", windows(1.0, None)),
    )
    items = [snap(T0, limits=two)]  # two rows with the same captured_at
    for n in range(1, 8):
        seven = None if n % 3 == 0 else 40.0 + n
        items.append(snap(T0 + 10 * n, wins=windows(10.0 + n, seven)))
    items.append(
        snap(
            T0 + 80,
            limits=(
                LimitReport("codex", None, windows(50.0, 60.0)),
                LimitReport("codex_bengalfox", "Other", windows(2.0, None)),
            ),
        )
    )
    await storage.record(items)
    [account] = await storage.accounts()
    return account.id


async def all_pages(
    storage: Storage, account_id: int, size: int, **filters: object
) -> list[UsageRow]:
    """Walk history_page with the keyset cursor until a short page."""
    rows: list[UsageRow] = []
    after: tuple[float, int] | None = None
    while True:
        page = await storage.history_page(account_id, after=after, limit=size, **filters)  # type: ignore[arg-type]
        rows += page
        if len(page) < size:
            return rows
        after = (page[-1].captured_at, page[-1].id)


async def test_history_page_cursor_returns_each_row_once(storage: Storage) -> None:
    account_id = await fill_history(storage)
    everything = await storage.history(account_id)
    assert len(everything) == 11
    assert everything[0].captured_at == everything[1].captured_at  # a tie broken by id
    for size in (1, 2, 3, 11, 50):
        assert await all_pages(storage, account_id, size) == everything
    codex = await storage.history(account_id, limit_id="codex")
    assert await all_pages(storage, account_id, 2, limit_id="codex") == codex
    # since/until bound the pages as they bound history().
    ranged = await storage.history(account_id, since=T0 + 10, until=T0 + 80)
    assert await all_pages(storage, account_id, 2, since=T0 + 10, until=T0 + 80) == ranged
    # A cursor in the middle of a tie: the other row of the same time still comes.
    first = everything[0]
    page = await storage.history_page(account_id, after=(first.captured_at, first.id), limit=1)
    assert page == [everything[1]]
    assert await storage.history_page(account_id, limit=0) == []
    assert await storage.history_page(account_id + 1) == []


async def test_history_page_window_filter(storage: Storage) -> None:
    account_id = await fill_history(storage)
    everything = await storage.history(account_id)
    seven_day = [r for r in everything if r.seven_day_used_percent is not None]
    assert 0 < len(seven_day) < len(everything)
    assert await all_pages(storage, account_id, 2, window="7d") == seven_day
    assert await storage.history_page(account_id, window="5h") == everything
    assert await storage.history_page(account_id, window="monthly") == []
    bengalfox = await storage.history_page(account_id, limit_id="codex_bengalfox", window="7d")
    assert bengalfox == []


@pytest.mark.parametrize("window", ["1h", "", "five_hour_used_percent", "7D"])
async def test_history_page_rejects_an_unknown_window(storage: Storage, window: str) -> None:
    with pytest.raises(ValueError, match="window"):
        await storage.history_page(1, window=window)


async def test_negative_limits_are_rejected(storage: Storage) -> None:
    with pytest.raises(ValueError, match="limit"):
        await storage.history_page(1, limit=-1)
    with pytest.raises(ValueError, match="limit"):
        await storage.usage_after(0, limit=-1)
    with pytest.raises(ValueError, match="limit"):
        await storage.requests_after(0, limit=-1)
    with pytest.raises(ValueError, match="limit"):
        await storage.account_events_after(0, limit=-1)


async def test_feed_cursor_and_replay(storage: Storage) -> None:
    assert await storage.feed_cursor() == FeedCursor(usage=0, request=0, account=0)
    assert await storage.usage_after(0) == []
    assert await storage.requests_after(0) == []
    assert await storage.account_events_after(0) == []
    await storage.record([snap(), request_record(), request_record(T0 + 1, anonymous=True)])
    cursor = await storage.feed_cursor()
    assert cursor == FeedCursor(usage=1, request=2, account=1)
    await storage.record(
        [snap(T0 + 10, wins=windows(20.0)), snap(who=OTHER), request_record(T0 + 2)]
    )
    usage = await storage.usage_after(cursor.usage)
    # A batch is written in time order: OTHER's report (at T0) before the change (at T0 + 10).
    assert [(r.id, r.account_id, r.five_hour_used_percent) for r in usage] == [
        (2, 2, 10.0),
        (3, 1, 20.0),
    ]
    assert await storage.usage_after(0, limit=2) == (await storage.history(1))[:1] + usage[:1]
    requests = await storage.requests_after(cursor.request)
    assert [(r.id, r.started_at) for r in requests] == [(3, T0 + 2)]
    assert [r.id for r in await storage.requests_after(0, limit=2)] == [1, 2]
    [event] = await storage.account_events_after(cursor.account)
    assert (event.id, event.kind) == (2, "created")
    assert await storage.feed_cursor() == FeedCursor(usage=3, request=3, account=2)
    assert await storage.usage_after(3) == []


async def test_confirmed_row_ids(storage: Storage) -> None:
    first = await storage.record([snap()])
    assert first.confirmed_row_ids == ()
    # A row inserted and confirmed within one batch counts as inserted, not confirmed.
    both = await storage.record([snap(T0 + 1, who=OTHER), snap(T0 + 2, who=OTHER)])
    assert (both.rows_inserted, both.rows_confirmed, both.confirmed_row_ids) == (1, 1, ())
    again = await storage.record([snap(T0 + 5), snap(T0 + 6, who=OTHER), snap(T0 + 7)])
    assert (again.rows_inserted, again.rows_confirmed) == (0, 3)
    assert again.confirmed_row_ids == (1, 2)
    rows = await storage.usage_rows([2, 1, 2, 99])
    assert [(r.id, r.confirmed_at) for r in rows] == [(1, T0 + 7), (2, T0 + 6)]
    changed = await storage.record([snap(T0 + 8, wins=windows(11.0))])
    assert changed.confirmed_row_ids == ()
    assert await storage.usage_rows([]) == []


async def test_latest_usage_of_several_accounts(storage: Storage) -> None:
    two = (
        LimitReport("codex", None, windows()),
        LimitReport("codex_bengalfox", None, windows(1.0, None)),
    )
    third = identity("seat:acct-3:user-3")
    await storage.record([snap(limits=two), snap(who=OTHER), snap(who=third)])
    first, second, _ = await storage.accounts()
    everything = await storage.latest_usage()
    wanted = [r for r in everything if r.usage.account_id in (first.id, second.id)]
    assert len(wanted) == 3
    got = await storage.latest_usage_of([second.id, first.id, first.id, 999])
    assert [(r.usage.account_id, r.usage.limit_id) for r in got] == [
        (r.usage.account_id, r.usage.limit_id) for r in wanted
    ]
    assert [r.usage for r in got] == [r.usage for r in wanted]
    assert got[0].account_key == first.account_key
    assert await storage.latest_usage_of([]) == []
    assert await storage.latest_usage_of([999]) == []


async def test_ids_never_come_back_after_deleting_the_account_with_the_newest_rows(
    storage: Storage,
) -> None:
    await storage.record([snap(T0), request_record(T0, anonymous=True)])
    newest = RequestRecord(T0 + 11, OTHER, "POST", "/backend-api/codex/responses", "sse", 200)
    await storage.record([snap(T0 + 10, who=OTHER), newest])
    before = await storage.feed_cursor()
    [doomed] = [a for a in await storage.accounts() if a.account_key == OTHER.account_key]
    assert await storage.delete_account(doomed.id)
    await storage.record([snap(T0 + 20, plan="pro"), request_record(T0 + 21, anonymous=True)])
    after = await storage.feed_cursor()
    # The feed's positions only move forward, so a reconnecting client misses nothing.
    assert after.usage > before.usage
    assert after.request > before.request
