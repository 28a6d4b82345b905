"""The store's sessions, webhooks, alert state and retention batches, on every backend."""

from __future__ import annotations

from codexgate.core.rows import AlertState, NewAlert, SessionRow
from codexgate.storage.interface import Storage
from tests.helpers.builders import FIVE_H_RESET, T0, request_record, snap, windows


async def record_history(storage: Storage, *times: float) -> int:
    """One 'codex' row of the default seat at each time (values differ, so none is merged)."""
    await storage.record([snap(at, wins=windows(five_hour=float(i))) for i, at in enumerate(times)])
    [account] = await storage.accounts()
    return account.id


async def captured(storage: Storage, account_id: int) -> list[float]:
    return [row.captured_at for row in await storage.history(account_id)]


async def test_sessions_keep_the_newest_and_drop_expired_ones(storage: Storage) -> None:
    for n, name in enumerate("abcd"):
        await storage.create_session(name * 64, T0 + n, T0 + 100 + n, keep=3)
    assert await storage.session("a" * 64) is None  # beyond the newest three
    assert await storage.session("b" * 64) == SessionRow("b" * 64, T0 + 1, T0 + 101, T0 + 1)
    await storage.create_session("e" * 64, T0 + 102, T0 + 200, keep=3)  # b and c have expired
    assert [await storage.session(n * 64) is not None for n in "bcde"] == [False, False, True, True]

    await storage.touch_session("d" * 64, T0 + 150)
    await storage.touch_session("d" * 64, T0 + 120)  # never moves back
    touched = await storage.session("d" * 64)
    assert touched is not None
    assert touched.last_used_at == T0 + 150
    assert await storage.delete_session("d" * 64)
    assert not await storage.delete_session("d" * 64)
    assert await storage.delete_sessions() == 1
    assert await storage.delete_sessions() == 0


async def test_settings_replace_and_delete(storage: Storage) -> None:
    assert await storage.get_setting("name") is None
    await storage.set_setting("name", "one")
    await storage.set_setting("name", "two")
    assert await storage.get_setting("name") == "two"
    await storage.delete_setting("name")
    await storage.delete_setting("name")
    assert await storage.get_setting("name") is None


async def test_webhooks_are_unique_by_url(storage: Storage) -> None:
    first, added = await storage.add_webhook("https://a.example/hook", "json", None, T0)
    assert added
    again, added = await storage.add_webhook("https://a.example/hook", "slack", "other", T0 + 1)
    assert (again, added) == (first, False)
    second, _ = await storage.add_webhook("https://b.example/hook", "ntfy", "Phone", T0 + 2)
    assert (second.format, second.name, second.created_at) == ("ntfy", "Phone", T0 + 2)
    assert await storage.webhooks() == [first, second]
    assert await storage.delete_webhook(first.id)
    assert not await storage.delete_webhook(first.id)
    assert await storage.webhooks() == [second]


async def test_alert_states_are_set_cleared_and_go_with_their_account(storage: Storage) -> None:
    account = await record_history(storage, T0)
    threshold = AlertState(account, "codex", "5h", "threshold:90", FIVE_H_RESET, T0)
    hit = AlertState(account, "codex", "*", "limit_hit", None, T0)
    fired = NewAlert(
        at=T0,
        kind="threshold",
        message="5h at 91%",
        account_id=account,
        account="one@example.com",
        limit_id="codex",
        window="5h",
        used_percent=91.0,
        threshold=90.0,
        resets_at=FIVE_H_RESET,
    )
    [row] = await storage.record_alerts([fired], [threshold, hit], [])
    assert (row.account_id, row.window, row.used_percent, row.resets_at) == (
        account,
        "5h",
        91.0,
        FIVE_H_RESET,
    )
    assert sorted(await storage.alert_states(), key=str) == sorted([threshold, hit], key=str)

    moved = AlertState(account, "codex", "5h", "threshold:90", FIVE_H_RESET + 1, T0 + 1)
    assert await storage.record_alerts([], [moved], [hit.key]) == []
    assert await storage.alert_states() == [moved]

    assert await storage.delete_account(account)
    assert await storage.alert_states() == []
    # Written after the account went: the alert stays without its id, the state is not kept.
    [late] = await storage.record_alerts([fired], [threshold], [])
    assert late.account_id is None
    assert await storage.alert_states() == []
    assert [alert.account_id for alert in await storage.alerts()] == [None, None]


async def test_alerts_filter_and_replay_by_id(storage: Storage) -> None:
    account = await record_history(storage, T0)
    written = await storage.record_alerts(
        [
            NewAlert(at=T0, kind="threshold", message="one", account_id=account),
            NewAlert(at=T0 + 1, kind="test", message="two"),
            NewAlert(at=T0 + 2, kind="stale", message="three", account_id=account),
        ],
        [],
        [],
    )
    first, test, stale = written
    assert [a.id for a in written] == sorted(a.id for a in written)
    assert await storage.alerts() == [stale, test, first]
    assert await storage.alerts(exclude_kinds=["test", "stale"]) == [first]
    assert await storage.alerts(account_id=account, before_id=stale.id) == [first]
    assert await storage.alerts(limit=1) == [stale]
    assert await storage.alerts_after(first.id) == [test, stale]
    assert (await storage.feed_cursor()).alert == stale.id


async def test_downsampling_keeps_the_newest_row_of_each_bucket(storage: Storage) -> None:
    # Buckets of 60 s from the epoch; T0 starts one.
    account = await record_history(storage, *(T0 + s for s in (0, 10, 20, 50, 60, 70, 130)))
    assert await storage.oldest_history_at() == T0
    assert await storage.oldest_history_at(since=T0 + 15) == T0 + 20
    # Only whole buckets that end by `before`: [T0 + 120, T0 + 180) is not thinned.
    assert await storage.downsample_history_batch(T0 + 170, 60, 2) == 2
    assert await storage.downsample_history_batch(T0 + 170, 60, 100, since=T0 + 55) == 1
    assert await captured(storage, account) == [T0 + 20, T0 + 50, T0 + 70, T0 + 130]
    assert await storage.downsample_history_batch(T0 + 170, 60, 100) == 1
    assert await captured(storage, account) == [T0 + 50, T0 + 70, T0 + 130]
    assert await storage.prune_history_batch(T0 + 1000, 100) == 2  # never the newest row
    assert await captured(storage, account) == [T0 + 130]


async def test_pruned_ids_never_come_back(storage: Storage) -> None:
    await storage.record([request_record(T0 + n) for n in range(3)])
    assert await storage.prune_requests_batch(T0 + 1, 100) == 1
    assert await storage.prune_requests_batch(T0 + 100, 100) == 2
    assert await storage.requests_after(0) == []
    await storage.record([request_record(T0 + 200)])
    [newest] = await storage.requests_after(0)
    assert newest.id == 4
    assert (await storage.feed_cursor()).request == 4
