"""Capture end to end: relayed responses become usage history, and never cost a request."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.core.models import FIVE_HOUR, Identity, LimitReport, Snapshot, UsageReport, Window
from codexgate.core.rows import LatestUsageRow, spend_limits_of
from codexgate.keys import RECORDER, STORE
from codexgate.services.recorder import RecorderStats
from codexgate.storage import open_storage
from tests.helpers.fake_upstream import FakeUpstream, load_sample, sample_headers
from tests.helpers.gateway import StartGateway, app_of, recorded, turn
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")


async def latest(gateway: TestServer) -> list[LatestUsageRow]:
    return await app_of(gateway)[STORE].latest_usage()


SAMPLE_EXPECTATIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "headers-plus-200.json",
        {
            "five_hour_used_percent": 46.0,
            "five_hour_window_minutes": 300,
            "five_hour_resets_at": 1893456000,
            "seven_day_used_percent": 15.0,
            "seven_day_resets_at": 1893955000,
            "monthly_used_percent": None,
            "plan_type": "plus",
            "http_status": 200,
        },
    ),
    (
        "headers-weekly-only.json",
        {
            "five_hour_used_percent": None,
            "five_hour_window_minutes": None,
            "seven_day_used_percent": 31.5,
            "seven_day_resets_at": 1893800000,
            "primary_window": "7d",
            "secondary_window": None,
            "credits_balance": "120.50",
        },
    ),
    (
        "headers-free-429.json",
        {
            "five_hour_used_percent": None,
            "seven_day_used_percent": 100.0,
            "seven_day_resets_at": 1773860656,
            "plan_type": "free",
            "active_limit": "codex",
            "http_status": 429,
            "secondary_used_percent": None,
        },
    ),
    (
        "headers-plus-429-premium.json",
        {
            "five_hour_used_percent": 100.0,
            "seven_day_used_percent": 80.0,
            "active_limit": "premium",
            "http_status": 429,
        },
    ),
    (
        "headers-malformed.json",
        {
            "five_hour_used_percent": None,
            "five_hour_window_minutes": 300,
            "five_hour_resets_at": None,
            "seven_day_used_percent": None,
            "seven_day_window_minutes": 10080,
            "credits_has_credits": None,
        },
    ),
]


@pytest.mark.parametrize(("sample", "expected"), SAMPLE_EXPECTATIONS)
async def test_each_sample_header_set_gives_the_expected_windows(
    gateway: TestServer,
    fake: FakeUpstream,
    http: ClientSession,
    sample: str,
    expected: dict[str, Any],
) -> None:
    fake.response_headers = sample_headers(sample)
    fake.status = load_sample(sample)["status"]
    assert await turn(http, gateway, bearer("seat_a")) == fake.status
    await recorded(gateway, 1)
    [row] = await latest(gateway)
    assert row.usage.limit_id == "codex"
    assert row.usage.source == "headers"
    assert row.email == "alice@example.com"
    for column, value in expected.items():
        assert getattr(row.usage, column) == value, column


async def test_extra_family_is_recorded_as_its_own_limit(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.response_headers = sample_headers("headers-extra-family.json")
    await turn(http, gateway, bearer("personal"))
    await recorded(gateway, 1)
    rows = {row.usage.limit_id: row for row in await latest(gateway)}
    assert set(rows) == {"codex", "codex_bengalfox"}
    assert rows["codex_bengalfox"].usage.limit_name == "gpt-5.2-codex-sonic"
    assert rows["codex_bengalfox"].usage.five_hour_used_percent == 3.0


async def test_a_quota_error_is_filed_under_the_limit_the_upstream_names(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    # As the Codex CLI files a 429 (codex-api map_api_error): under x-codex-active-limit.
    fake.status = 429
    fake.response_headers = {
        "x-codex-primary-used-percent": "40",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": "1893456000",
        "x-codex-other-primary-used-percent": "100",
        "x-codex-other-primary-window-minutes": "300",
        "x-codex-other-primary-reset-at": "1893450000",
        "x-codex-other-limit-name": "gpt-5.2-codex-sonic",
        "x-codex-active-limit": "codex_other",
        "x-codex-rate-limit-reached-type": "rate_limit_reached",
    }
    fake.error_body = orjson.dumps(
        {"error": {"type": "usage_limit_reached", "resets_at": 1893450000}}
    )
    assert await turn(http, gateway, bearer("seat_a")) == 429
    await recorded(gateway, 1)
    rows = {row.usage.limit_id: row.usage for row in await latest(gateway)}
    assert set(rows) == {"codex", "codex_other"}
    other, codex = rows["codex_other"], rows["codex"]
    assert (other.limit_hit_type, other.limit_hit_resets_at) == ("usage_limit_reached", 1893450000)
    assert other.rate_limit_reached_type == "rate_limit_reached"
    assert other.limit_name == "gpt-5.2-codex-sonic"
    # The seat's own limit is not hit: 40 % used, nothing reached.
    assert (codex.limit_hit_type, codex.rate_limit_reached_type) == (None, None)
    assert codex.five_hour_used_percent == 40.0


async def test_a_quota_error_for_a_limit_without_headers_gets_a_row_of_its_own(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    sample = load_sample("headers-plus-429-premium.json")
    fake.status = sample["status"]
    fake.response_headers = sample_headers("headers-plus-429-premium.json")
    fake.error_body = orjson.dumps(sample["body"])
    assert await turn(http, gateway, bearer("seat_a")) == 429
    await recorded(gateway, 1)
    rows = {row.usage.limit_id: row.usage for row in await latest(gateway)}
    assert set(rows) == {"codex", "premium"}
    premium, codex = rows["premium"], rows["codex"]
    assert (premium.limit_hit_type, premium.limit_hit_resets_at) == (
        "usage_limit_reached",
        1777936568,
    )
    assert premium.windows() == ()
    # "codex" keeps its own report: the 5h window at 100 %, and no quota error of its own.
    assert (codex.five_hour_used_percent, codex.limit_hit_type) == (100.0, None)


async def test_account_wide_fields_of_a_usage_body_go_on_the_main_limit_only(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    body = orjson.loads(fake.usage_body)
    body["rate_limit_reached_type"] = {"type": "workspace_member_credits_depleted"}
    body["rate_limit_reset_credits"] = {"available_count": 2}
    body["additional_rate_limits"] = [
        {
            "limit_name": "codex_other",
            "metered_feature": "codex_other",
            "rate_limit": {"primary_window": {"used_percent": 70, "limit_window_seconds": 900,
                                              "reset_at": 1893456000}},
        }
    ]  # fmt: skip
    body["spend_control"] = {
        "reached": True,
        "reached_limit_type": "group_shared",
        "group_shared_limit": {
            "group_id": "group-1",
            "group_name": "Engineering",
            "details": {"limit": "100", "used": "82", "remaining": "18", "used_percent": 82,
                        "remaining_percent": 18, "reset_at": 1893456000},
        },
    }  # fmt: skip
    fake.usage_body = orjson.dumps(body)
    async with http.get(
        f"http://127.0.0.1:{gateway.port}/backend-api/wham/usage",
        headers={"Authorization": bearer("seat_a")},
    ) as response:
        assert response.status == 200
        await response.read()
    await recorded(gateway, 1)
    rows = {row.usage.limit_id: row.usage for row in await latest(gateway)}
    assert set(rows) == {"codex", "codex_other"}
    codex, other = rows["codex"], rows["codex_other"]
    assert codex.rate_limit_reached_type == "workspace_member_credits_depleted"
    assert codex.reset_credits == 2
    assert codex.spend_reached_limit_type == "group_shared"
    assert [
        (s.kind, s.group_name, s.used, s.limit) for s in spend_limits_of(codex.spend_limits)
    ] == [("group_shared", "Engineering", "82", "100")]
    assert (other.rate_limit_reached_type, other.reset_credits, other.spend_limits) == (
        None,
        None,
        None,
    )
    assert other.spend_control_reached is None


async def test_seats_of_one_workspace_are_two_accounts_and_refresh_keeps_one(
    gateway: TestServer, http: ClientSession
) -> None:
    for seat in ("seat_a", "seat_b", "seat_a_refreshed"):
        assert (
            await turn(http, gateway, bearer(seat), **{"ChatGPT-Account-ID": "acct-team-1"}) == 200
        )
    await recorded(gateway, 3)
    accounts = await app_of(gateway)[STORE].accounts()
    assert sorted(a.account_key for a in accounts) == [
        "seat:acct-team-1:user-AAAA",
        "seat:acct-team-1:user-BBBB",
    ]
    assert {a.email for a in accounts} == {"alice@example.com", "bob@example.com"}


async def test_tokens_sharing_a_prefix_are_different_accounts(
    gateway: TestServer, http: ClientSession
) -> None:
    common = "sk-opaque-prefix-0123"  # 21 characters in common
    for suffix in ("alpha", "bravo"):
        await turn(http, gateway, f"Bearer {common}{suffix}")
    await recorded(gateway, 2)
    accounts = await app_of(gateway)[STORE].accounts()
    assert len(accounts) == 2
    for account in accounts:
        assert account.account_key.startswith("token:")
        assert common not in account.account_key
        assert account.token_fingerprint is not None
        assert common not in account.token_fingerprint


async def test_responses_without_credentials_are_counted_not_recorded(
    gateway: TestServer, http: ClientSession
) -> None:
    async with http.post(f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses") as resp:
        assert resp.status == 200
    assert app_of(gateway)[RECORDER].stats().unattributed == 1
    assert await app_of(gateway)[STORE].accounts() == []


async def test_capture_off_records_nothing(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(capture=False)
    assert await turn(http, gateway, bearer("seat_a")) == 200
    await asyncio.sleep(0.1)
    assert app_of(gateway)[RECORDER].stats().recorded == 0
    assert await app_of(gateway)[STORE].accounts() == []


async def test_a_failing_database_never_fails_a_proxied_request(
    gateway: TestServer, http: ClientSession
) -> None:
    await app_of(gateway)[STORE].close()  # every later write fails
    for _ in range(5):
        assert await turn(http, gateway, bearer("seat_a")) == 200
    recorder = app_of(gateway)[RECORDER]
    # Each turn's snapshot and request record wait for the database to come back.
    await eventually(
        recorder.stats, accept=lambda stats: stats.failed_writes >= 1 and stats.queue_depth == 10
    )
    async with http.get(f"http://127.0.0.1:{gateway.port}/codexgate/healthz") as response:
        health = await response.json()
    assert health["status"] == "degraded"
    assert health["db"]["state"] == "error"
    assert health["db"]["failed_writes"] >= 1
    assert health["db"]["failing_since"] is not None
    assert health["queue"]["depth"] == 10
    assert health["snapshots"]["dropped"] == 0
    assert health["snapshots"]["recorded"] == 0
    assert health["requests"]["dropped"] == 0


async def test_a_full_queue_drops_snapshots_not_requests(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(queue_size=1)
    recorder = app_of(gateway)[RECORDER]
    recorder.offer(_snapshot(0))
    recorder.offer(_snapshot(1))  # the writer has had no turn yet: the queue is full
    assert recorder.stats().dropped == 1
    results = await asyncio.gather(*(turn(http, gateway, bearer("seat_a")) for _ in range(30)))
    assert results == [200] * 30
    # Every one accounted for.
    await eventually(recorder.stats, accept=lambda stats: _accounted(stats) >= 32)
    assert recorder.stats().dropped >= 1


def _accounted(stats: RecorderStats) -> int:
    return stats.recorded + stats.dropped + stats.coalesced


def _snapshot(index: int) -> Snapshot:
    window = Window("primary", FIVE_HOUR, "length", float(index % 100), 300, 1893456000 + index)
    return Snapshot(
        identity=Identity(account_key=f"token:{index % 7}", token_fingerprint=f"{index % 7}"),
        captured_at=1_800_000_000.0 + index,
        source="headers",
        report=UsageReport(limits=(LimitReport("codex", None, (window,)),)),
    )


async def test_queued_snapshots_are_written_on_shutdown(
    start_gateway: StartGateway, config: Any
) -> None:
    gateway = await start_gateway(queue_size=5000)
    recorder = app_of(gateway)[RECORDER]
    for index in range(3000):  # all queued before the writer task gets a turn
        recorder.offer(_snapshot(index))
    assert recorder.stats().queue_depth == 3000
    await gateway.close()
    assert recorder.stats().recorded == 3000
    store = await open_storage(config.db)
    try:
        assert await store.count_history() == 3000
    finally:
        await store.close()
