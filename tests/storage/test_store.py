"""Storage contract: recording with insert-or-confirm, identity merge, max_accounts, the reads."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from codexgate.core.models import (
    Credits,
    LimitHit,
    LimitReport,
    Snapshot,
    SpendControl,
    SpendLimit,
    TokenUsage,
    UsageReport,
    Window,
)
from codexgate.core.rows import RecordResult, spend_limits_of
from codexgate.storage.interface import Storage, StorageUnavailable
from tests.helpers.builders import (
    FIVE_H_RESET,
    SEVEN_D_RESET,
    T0,
    identity,
    request_record,
    snap,
    windows,
)


async def test_first_sight_creates_an_account_from_the_identity(storage: Storage) -> None:
    result = await storage.record([snap(at=T0), snap(at=T0 + 1)])
    assert result.accounts_created == 1
    [account] = await storage.accounts()
    assert account.account_key == "seat:acct-1:user-1"
    assert account.chatgpt_account_id == "acct-1"
    assert account.chatgpt_user_id == "user-1"
    assert account.email == "one@example.com"
    assert account.plan_type == "plus"
    assert account.display_name is None
    assert account.token_fingerprint == "f" * 64
    assert account.first_seen_at == T0
    assert account.last_seen_at == T0 + 1
    assert await storage.account(account.id) == account
    assert await storage.account(account.id + 1) is None


async def test_two_keys_are_two_accounts(storage: Storage) -> None:
    other = identity("seat:acct-1:user-2", email="two@example.com")
    result = await storage.record([snap(who=identity()), snap(who=other)])
    assert result.accounts_created == 2
    accounts = await storage.accounts()
    assert [a.account_key for a in accounts] == ["seat:acct-1:user-1", "seat:acct-1:user-2"]
    assert [a.email for a in accounts] == ["one@example.com", "two@example.com"]


async def test_new_fingerprint_updates_the_same_account(storage: Storage) -> None:
    await storage.record([snap(at=T0, who=identity(fingerprint="a" * 64))])
    result = await storage.record(
        [snap(at=T0 + 60, who=identity(fingerprint="b" * 64, email=None))]
    )
    assert result.accounts_created == 0
    [account] = await storage.accounts()
    assert account.token_fingerprint == "b" * 64
    assert account.email == "one@example.com"  # a missing claim does not erase a known one
    assert account.last_seen_at == T0 + 60
    assert account.first_seen_at == T0


async def test_an_older_batch_does_not_overwrite_newer_account_fields(storage: Storage) -> None:
    await storage.record([snap(at=T0 + 60, who=identity(fingerprint="b" * 64))])
    await storage.record([snap(at=T0, who=identity(fingerprint="a" * 64))])
    [account] = await storage.accounts()
    assert account.token_fingerprint == "b" * 64
    assert account.first_seen_at == T0
    assert account.last_seen_at == T0 + 60


async def test_report_plan_wins_over_the_token_claim(storage: Storage) -> None:
    await storage.record([snap(who=identity(plan="plus"), plan="pro")])
    [account] = await storage.accounts()
    assert account.plan_type == "pro"
    [row] = await storage.history(account.id)
    assert row.plan_type == "pro"


async def test_rename_and_delete_account(storage: Storage) -> None:
    await storage.record([snap(at=T0)])
    [account] = await storage.accounts()
    assert await storage.update_account(account.id, display_name="Work seat") is not None
    assert (await storage.accounts())[0].display_name == "Work seat"
    assert await storage.update_account(account.id + 1, display_name="nobody") is None
    assert await storage.delete_account(account.id)
    assert await storage.accounts() == []
    assert await storage.count_history() == 0
    assert not await storage.delete_account(account.id)
    # Seen again after deletion: a new account with fresh history, not a confirmation.
    result = await storage.record([snap(at=T0 + 1)])
    assert result == RecordResult(accounts_created=1, rows_inserted=1, rows_confirmed=0)


async def test_same_values_confirm_one_row(storage: Storage) -> None:
    first = await storage.record([snap(at=T0)])
    assert first == RecordResult(accounts_created=1, rows_inserted=1, rows_confirmed=0)
    second = await storage.record([snap(at=T0 + 5), snap(at=T0 + 10)])
    assert second == RecordResult(accounts_created=0, rows_inserted=0, rows_confirmed=2)
    [account] = await storage.accounts()
    [row] = await storage.history(account.id)
    assert row.captured_at == T0
    assert row.confirmed_at == T0 + 10


async def test_changed_value_writes_a_new_row(storage: Storage) -> None:
    await storage.record([snap(at=T0, wins=windows(10.0))])
    result = await storage.record([snap(at=T0 + 5, wins=windows(11.0)), snap(at=T0 + 6)])
    assert result.rows_inserted == 2  # 10 -> 11 -> 10: every change is history
    [account] = await storage.accounts()
    rows = await storage.history(account.id)
    assert [r.five_hour_used_percent for r in rows] == [10.0, 11.0, 10.0]
    assert [r.captured_at for r in rows] == [T0, T0 + 5, T0 + 6]


async def test_confirmation_within_a_batch_lands_on_the_row_it_inserted(storage: Storage) -> None:
    result = await storage.record([snap(at=T0), snap(at=T0 + 1), snap(at=T0 + 2)])
    assert result == RecordResult(accounts_created=1, rows_inserted=1, rows_confirmed=2)
    [account] = await storage.accounts()
    [row] = await storage.history(account.id)
    assert (row.captured_at, row.confirmed_at) == (T0, T0 + 2)


async def test_a_large_batch_writes_every_row_and_request_in_order(storage: Storage) -> None:
    # 100 rows and 77 requests: more than one INSERT's worth on SQLite, split unevenly.
    changes = [snap(at=T0 + n, wins=windows(float(n))) for n in range(100)]
    turns = [request_record(T0 + n, tokens=TokenUsage(total_tokens=n)) for n in range(77)]
    result = await storage.record([*changes, *turns])
    assert result == RecordResult(
        accounts_created=1, rows_inserted=100, rows_confirmed=0, requests_inserted=77
    )
    [account] = await storage.accounts()
    rows = await storage.history(account.id, limit=200)
    assert [(r.captured_at, r.five_hour_used_percent) for r in rows] == [
        (T0 + n, float(n)) for n in range(100)
    ]
    assert [r.id for r in rows] == sorted({r.id for r in rows})
    logged = await storage.requests(limit=100)
    assert [(r.started_at, r.total_tokens, r.account_id) for r in reversed(logged)] == [
        (T0 + n, n, account.id) for n in range(77)
    ]


async def test_reset_jitter_within_tolerance_is_the_same(storage: Storage) -> None:
    await storage.record([snap(at=T0, wins=windows(five_hour_reset=FIVE_H_RESET))])
    same = await storage.record([snap(at=T0 + 1, wins=windows(five_hour_reset=FIVE_H_RESET + 2))])
    assert (same.rows_inserted, same.rows_confirmed) == (0, 1)
    changed = await storage.record(
        [snap(at=T0 + 2, wins=windows(five_hour_reset=FIVE_H_RESET + 60))]
    )
    assert (changed.rows_inserted, changed.rows_confirmed) == (1, 0)
    [account] = await storage.accounts()
    rows = await storage.history(account.id)
    assert [r.five_hour_resets_at for r in rows] == [FIVE_H_RESET, FIVE_H_RESET + 60]


async def test_batch_is_recorded_in_time_order_and_an_older_report_never_wins(
    storage: Storage,
) -> None:
    await storage.record([snap(at=T0 + 2, wins=windows(12.0)), snap(at=T0 + 1, wins=windows(11.0))])
    [account] = await storage.accounts()
    rows = await storage.history(account.id)
    assert [r.five_hour_used_percent for r in rows] == [11.0, 12.0]
    # A report captured before the newest row but written after it (another instance
    # committed late) is superseded: not written, the newest report stays the one shown.
    result = await storage.record([snap(at=T0, wins=windows(13.0))])
    assert (result.rows_inserted, result.rows_confirmed) == (0, 0)
    rows = await storage.history(account.id)
    assert [(r.five_hour_used_percent, r.captured_at) for r in rows][-1] == (12.0, T0 + 2)
    [latest] = await storage.latest_usage()
    assert latest.usage.five_hour_used_percent == 12.0


async def test_weekly_only_report_leaves_five_hour_unknown(storage: Storage) -> None:
    weekly = (Window("primary", "7d", "length", 31.5, 10080, SEVEN_D_RESET),)
    await storage.record([snap(wins=weekly, credits=Credits(True, False, "120.50"))])
    [account] = await storage.accounts()
    [row] = await storage.history(account.id)
    assert row.five_hour_used_percent is None
    assert row.five_hour_window_minutes is None
    assert row.five_hour_resets_at is None
    assert (row.seven_day_used_percent, row.seven_day_window_minutes) == (31.5, 10080)
    assert row.seven_day_resets_at == SEVEN_D_RESET
    assert (row.primary_window, row.primary_classified_by) == ("7d", "length")
    assert row.primary_used_percent == 31.5
    assert row.secondary_window is None
    assert row.secondary_used_percent is None
    assert (row.credits_has_credits, row.credits_unlimited) == (True, False)
    assert row.credits_balance == "120.50"
    [latest] = await storage.latest_usage()
    assert latest.five_hour_reset_in_seconds is None


async def test_slot_order_fallback_and_raw_slots_are_kept(storage: Storage) -> None:
    unknown_length = (
        Window("primary", "5h", "slot", 5.0, None, FIVE_H_RESET),
        Window("secondary", "7d", "slot", 50.0, None, SEVEN_D_RESET),
    )
    await storage.record([snap(wins=unknown_length)])
    [account] = await storage.accounts()
    [row] = await storage.history(account.id)
    assert (row.five_hour_used_percent, row.five_hour_window_minutes) == (5.0, None)
    assert (row.primary_classified_by, row.secondary_classified_by) == ("slot", "slot")
    assert (row.secondary_window, row.secondary_used_percent) == ("7d", 50.0)


async def test_extra_limit_family_gets_its_own_rows(storage: Storage) -> None:
    limits = (
        LimitReport("codex", None, windows(12.5, 40.0)),
        LimitReport(
            "codex_bengalfox",
            "gpt-5.2-codex-sonic",
            (Window("primary", "5h", "length", 3.0, 300, FIVE_H_RESET + 100),),
        ),
    )
    result = await storage.record([snap(limits=limits)])
    assert result.rows_inserted == 2
    [account] = await storage.accounts()
    assert [r.limit_id for r in await storage.history(account.id)] == ["codex", "codex_bengalfox"]
    [extra] = await storage.history(account.id, limit_id="codex_bengalfox")
    assert extra.limit_name == "gpt-5.2-codex-sonic"
    assert extra.five_hour_used_percent == 3.0
    assert extra.seven_day_used_percent is None
    # The families are throttled separately: only the changed one gets a new row.
    changed = (limits[0], LimitReport("codex_bengalfox", "gpt-5.2-codex-sonic", ()))
    result = await storage.record([snap(at=T0 + 1, limits=changed)])
    assert (result.rows_inserted, result.rows_confirmed) == (1, 1)
    assert len(await storage.history(account.id, limit_id="codex_bengalfox")) == 2


async def test_limit_fields_round_trip_on_the_row_of_their_limit(storage: Storage) -> None:
    now = time.time()
    resets = int(now) + 86_400
    group = SpendLimit("group_shared", "100", "82.5", "17.5", 82.5, 17.5, resets, "g-1", "Eng")
    individual = SpendLimit("individual", "50", "10", "40", 20.0, 80.0, resets)
    spend = SpendControl(
        reached=True,
        limit="50",
        used="10",
        used_percent=20.0,
        resets_at=resets,
        reached_limit_type="group_shared",
        limits=(individual, group),
    )
    body = UsageReport(
        limits=(LimitReport("codex", None, windows(20.0)),),
        rate_limit_reached_type="workspace_member_credits_depleted",
        spend_control=spend,
        reset_credits=3,
        promo_message="Double limits this week",
    )
    # A quota error of one model's limit, with the seat's own windows beside it.
    error = UsageReport(
        limits=(
            LimitReport("codex", None, windows(20.0)),
            LimitReport("codex_other", "gpt-5.2-codex-sonic", windows(100.0)),
        ),
        active_limit="codex_other",
        limit_hit=LimitHit("usage_limit_reached", resets),
    )
    await storage.record(
        [
            Snapshot(identity(), now - 60, "usage_body", body, 200),
            Snapshot(identity(), now - 30, "error", error, 429),
        ]
    )
    [account] = await storage.accounts()
    history = await storage.history(account.id, limit_id="codex")
    assert [row.source for row in history] == ["usage_body", "error"]
    first = history[0]
    assert first.rate_limit_reached_type == "workspace_member_credits_depleted"
    assert (first.spend_control_reached, first.spend_reached_limit_type) == (True, "group_shared")
    assert spend_limits_of(first.spend_limits) == (individual, group)
    assert (first.reset_credits, first.promo_message) == (3, "Double limits this week")
    latest = {row.usage.limit_id: row.usage for row in await storage.latest_usage()}
    # The error's report says nothing of the account-wide fields: its "codex" row has them NULL.
    codex, other = latest["codex"], latest["codex_other"]
    assert {codex.spend_limits, codex.reset_credits, codex.limit_hit_type} == {None}
    assert (other.limit_hit_type, other.limit_hit_resets_at) == ("usage_limit_reached", resets)
    assert {other.spend_limits, other.reset_credits, other.promo_message} == {None}
    # The body again (a new row after the error's); then with its spend limits' reset a second
    # later (a relative reset read a moment later): that only confirms it.
    result = await storage.record([Snapshot(identity(), now, "usage_body", body, 200)])
    assert (result.rows_inserted, result.rows_confirmed) == (1, 0)
    moved = tuple(replace(limit, resets_at=resets + 1) for limit in (individual, group))
    jitter = replace(body, spend_control=replace(spend, limits=moved))
    result = await storage.record([Snapshot(identity(), now + 1, "usage_body", jitter, 200)])
    assert (result.rows_inserted, result.rows_confirmed) == (0, 1)
    latest = {row.usage.limit_id: row.usage for row in await storage.latest_usage(account.id)}
    assert spend_limits_of(latest["codex"].spend_limits) == (individual, group)


async def test_latest_usage_is_the_newest_row_per_account_and_limit(storage: Storage) -> None:
    now = time.time()
    other = identity("seat:acct-2:user-9", email="nine@example.com")
    five_h_reset = int(now) + 3600
    seven_d_reset = int(now) + 86400
    await storage.record(
        [
            snap(at=now - 120, wins=windows(10.0, 40.0)),
            snap(at=now - 60, wins=windows(20.0, 41.0, five_hour_reset=five_h_reset)),
            snap(
                at=now - 30,
                wins=windows(
                    21.0, 41.0, five_hour_reset=five_h_reset, seven_day_reset=seven_d_reset
                ),
            ),
            snap(at=now - 10, who=other, wins=windows(None, 70.0)),
            snap(
                at=now - 50,
                limits=(LimitReport("codex_bengalfox", "sonic", windows(1.0, None)),),
            ),
        ]
    )
    await storage.update_account(1, display_name="First")
    latest = await storage.latest_usage()
    assert [(r.account_key, r.usage.limit_id) for r in latest] == [
        ("seat:acct-1:user-1", "codex"),
        ("seat:acct-1:user-1", "codex_bengalfox"),
        ("seat:acct-2:user-9", "codex"),
    ]
    first, extra, second = latest
    assert first.usage.five_hour_used_percent == 21.0
    assert first.usage.captured_at == pytest.approx(now - 30)
    assert first.display_name == "First"
    assert first.email == "one@example.com"
    assert first.account_plan_type == "plus"
    assert first.age_seconds == pytest.approx(30, abs=2)
    assert first.five_hour_reset_in_seconds == pytest.approx(five_h_reset - now, abs=2)
    assert first.seven_day_reset_in_seconds == pytest.approx(seven_d_reset - now, abs=2)
    assert first.monthly_reset_in_seconds is None
    assert extra.usage.limit_name == "sonic"
    assert second.usage.five_hour_used_percent is None
    assert second.usage.seven_day_used_percent == 70.0
    assert second.age_seconds == pytest.approx(10, abs=2)
    only = await storage.latest_usage(second.usage.account_id)
    assert only == [second] or [r.usage for r in only] == [second.usage]


async def test_latest_usage_age_follows_confirmation(storage: Storage) -> None:
    now = time.time()
    await storage.record([snap(at=now - 100)])
    await storage.record([snap(at=now - 5)])
    [latest] = await storage.latest_usage()
    assert latest.usage.captured_at == pytest.approx(now - 100)
    assert latest.age_seconds == pytest.approx(5, abs=2)


async def test_history_filters_by_time_and_limit(storage: Storage) -> None:
    snapshots = []
    for minute in range(6):
        limits = (
            LimitReport("codex", None, windows(float(minute))),
            LimitReport("codex_bengalfox", None, windows(float(100 - minute))),
        )
        snapshots.append(snap(at=T0 + 60 * minute, limits=limits))
    await storage.record(snapshots)
    assert await storage.count_history() == 12
    [account] = await storage.accounts()
    rows = await storage.history(account.id, limit_id="codex", since=T0 + 60, until=T0 + 240)
    assert [r.captured_at for r in rows] == [T0 + 60, T0 + 120, T0 + 180]
    assert {r.limit_id for r in rows} == {"codex"}
    both = await storage.history(account.id, since=T0 + 240)
    assert [(r.captured_at, r.limit_id) for r in both] == [
        (T0 + 240, "codex"),
        (T0 + 240, "codex_bengalfox"),
        (T0 + 300, "codex"),
        (T0 + 300, "codex_bengalfox"),
    ]
    assert len(await storage.history(account.id, limit=5)) == 5
    assert await storage.history(account.id, until=T0) == []
    assert await storage.history(account.id + 1) == []


async def test_new_accounts_stop_at_max_accounts_and_known_ones_keep_recording(
    storage: Storage,
) -> None:
    first, second, third = (identity(f"seat:acct-1:user-{n}") for n in (1, 2, 3))
    await storage.record([snap(at=T0, who=first)], max_accounts=2)
    result = await storage.record(
        [
            snap(at=T0 + 1, who=second),
            snap(at=T0 + 1, who=third),
            request_record(T0 + 2, who=third, proven=True),  # new seats are taken in time order
            snap(at=T0 + 2, who=first, wins=windows(20.0)),
        ],
        max_accounts=2,
    )
    assert result == RecordResult(
        1, 2, 0, 1, seats_refused=1, snapshots_refused=1, requests_refused=1
    )
    assert [a.account_key for a in await storage.accounts()] == [
        first.account_key,
        second.account_key,
    ]
    [request] = await storage.requests()
    assert request.account_id is None
    assert (await storage.record([snap(at=T0 + 3, who=third)])).accounts_created == 1  # no limit


async def test_a_closed_storage_is_unavailable_not_a_bug(storage: Storage) -> None:
    await storage.close()
    with pytest.raises(StorageUnavailable):
        await storage.record([snap()])
    with pytest.raises(StorageUnavailable):
        await storage.accounts()


async def test_a_bad_argument_is_a_bug_not_an_outage(storage: Storage) -> None:
    with pytest.raises(ValueError, match="limit"):
        await storage.usage_after(0, limit=-1)
    with pytest.raises(ValueError, match="window"):
        await storage.history_page(1, window="fortnight")
    assert await storage.accounts() == []  # still usable
