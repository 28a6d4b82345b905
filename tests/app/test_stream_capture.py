"""Usage from bodies: stream events, wham/usage answers and quota errors, and the request log."""

from __future__ import annotations

import gzip

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.core.rows import LatestUsageRow, RequestRow
from codexgate.keys import STORE
from tests.helpers.fake_upstream import FakeUpstream, load_sample, sample_headers, sse_events
from tests.helpers.gateway import app_of, settled
from tests.helpers.paths import DATA
from tests.helpers.tokens import bearer


async def latest_codex(gateway: TestServer) -> LatestUsageRow:
    rows = [r for r in await app_of(gateway)[STORE].latest_usage() if r.usage.limit_id == "codex"]
    assert len(rows) == 1
    return rows[0]


async def only_request(gateway: TestServer) -> RequestRow:
    [row] = await app_of(gateway)[STORE].requests()
    return row


async def test_rate_limit_event_is_newer_than_the_headers_and_tokens_are_logged(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    url = f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses?client_version=1"
    async with http.post(url, data=b"{}", headers={"Authorization": bearer("seat_a")}) as resp:
        assert await resp.read() == b"".join(fake.events)
    await settled(gateway, 1)
    latest = await latest_codex(gateway)
    assert latest.usage.source == "event"  # the body's 47% beats the headers' 46%
    assert latest.usage.five_hour_used_percent == 47.0
    sources = [r.source for r in await app_of(gateway)[STORE].history(latest.usage.account_id)]
    assert sources == ["headers", "event"]
    request = await only_request(gateway)
    assert request.transport == "sse"
    assert request.path == "/backend-api/codex/responses"
    assert request.status == 200
    assert request.response_id == "resp_2"
    assert request.model == "gpt-5-codex"  # from the openai-model header
    assert request.upstream_request_id == "req_0001"
    assert (request.input_tokens, request.cached_input_tokens) == (10, 0)
    assert (request.output_tokens, request.reasoning_tokens, request.total_tokens) == (2, 0, 12)
    assert request.bytes_in == 2
    assert request.bytes_out == len(b"".join(fake.events))
    assert request.account_id == latest.usage.account_id
    assert request.error_code is None


async def test_a_failed_turn_logs_its_error_code(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-failed.sse")
    url = f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses"
    async with http.post(url, data=b"{}", headers={"Authorization": bearer("seat_a")}) as resp:
        await resp.read()
    await settled(gateway, 1)
    request = await only_request(gateway)
    assert request.error_code == "server_is_overloaded"
    assert request.total_tokens is None


async def test_usage_body_is_passed_untouched_and_recorded(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    url = f"http://127.0.0.1:{gateway.port}/backend-api/wham/usage"
    headers = {"Authorization": bearer("seat_a"), "Accept-Encoding": "gzip"}
    async with http.get(url, headers=headers) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.read()) == fake.usage_body
    await settled(gateway, 1)
    latest = await latest_codex(gateway)
    assert latest.usage.source == "usage_body"
    assert latest.usage.five_hour_used_percent == 46.0
    assert latest.usage.seven_day_used_percent == 15.0
    assert latest.usage.plan_type == "plus"


async def test_business_usage_body_records_spend_control_and_extra_limits(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.usage_body = (DATA / "wham-usage-business.json").read_bytes()
    url = f"http://127.0.0.1:{gateway.port}/backend-api/wham/usage"
    async with http.get(url, headers={"Authorization": bearer("seat_b")}) as response:
        await response.read()
    await settled(gateway, 1)
    rows = {r.usage.limit_id: r for r in await app_of(gateway)[STORE].latest_usage()}
    codex = rows["codex"].usage
    assert codex.five_hour_used_percent is None  # rate_limit null: nothing reported
    assert codex.seven_day_used_percent is None
    assert codex.spend_limit == "15000"
    assert codex.spend_used_percent == 26.0
    assert codex.spend_control_reached is False
    assert rows["codex_bengalfox"].usage.five_hour_used_percent == 3.0


async def test_free_plan_usage_body_gives_a_monthly_window(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.usage_body = (DATA / "wham-usage-free-monthly.json").read_bytes()
    url = f"http://127.0.0.1:{gateway.port}/api/codex/usage"
    async with http.get(url, headers={"Authorization": bearer("personal")}) as response:
        await response.read()
    await settled(gateway, 1)
    usage = (await latest_codex(gateway)).usage
    assert usage.monthly_used_percent == 62.0
    assert usage.monthly_window_minutes == 43200
    assert usage.five_hour_used_percent is None
    assert usage.seven_day_used_percent is None


async def test_quota_error_body_records_the_limit_hit_with_the_headers_windows(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    sample = load_sample("headers-free-429.json")
    fake.status = 429
    fake.response_headers = sample_headers("headers-free-429.json")
    fake.error_body = orjson.dumps(sample["body"])
    url = f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses"
    async with http.post(url, data=b"{}", headers={"Authorization": bearer("personal")}) as resp:
        assert resp.status == 429
        assert await resp.read() == fake.error_body
    await settled(gateway, 1)
    latest = await latest_codex(gateway)
    assert latest.usage.source == "error"
    assert latest.usage.seven_day_used_percent == 100.0
    assert latest.usage.five_hour_used_percent is None
    assert latest.usage.limit_hit_type == "usage_limit_reached"
    assert latest.usage.limit_hit_resets_at == 1773860656
    history = await app_of(gateway)[STORE].history(latest.usage.account_id)
    assert [row.source for row in history] == ["error"]  # one row: headers and body merged
    request = await only_request(gateway)
    assert request.status == 429
    assert request.error_code == "usage_limit_reached"
