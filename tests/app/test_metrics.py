"""GET /codexgate/metrics: who may scrape it, and that it tells what the store and traffic say."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import prometheus_client
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.core.models import (
    DAILY,
    FIVE_HOUR,
    Identity,
    LimitReport,
    RequestRecord,
    Snapshot,
    TokenUsage,
    UsageReport,
    Window,
)
from codexgate.core.rows import LatestUsageRow
from codexgate.keys import METRICS, RECORDER, STORE
from codexgate.security import SESSION_COOKIE
from codexgate.services.metrics import Metrics, WindowKey, WindowState, status_label, window_states
from codexgate.services.recorder import RecorderStats
from codexgate.storage.sqlite.store import Store
from tests.helpers.admin_client import ADMIN, SECRETS, Admin, assert_no_secret
from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.gateway import StartGateway, app_of, settled
from tests.helpers.prometheus import Scrape, parse, value
from tests.helpers.tokens import bearer

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")

METRICS_TOKEN = "metrics-token-for-tests-456789"


async def scrape(admin: Admin, auth: str = ADMIN) -> tuple[Scrape, bytes]:
    answer = await admin.get("metrics", auth=auth)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    return parse(answer.body), answer.body


async def stream(http: ClientSession, gateway: TestServer, who: str) -> int:
    async with http.post(
        f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses",
        data=b'{"stream": true}',
        headers={"Authorization": bearer(who)},
    ) as response:
        await response.read()
        return response.status


async def models(http: ClientSession, gateway: TestServer, who: str) -> int:
    async with http.get(
        f"http://127.0.0.1:{gateway.port}/backend-api/codex/models",
        headers={"Authorization": bearer(who)},
    ) as response:
        await response.read()
        return response.status


@pytest.fixture
async def scraped(start_gateway: StartGateway) -> TestServer:
    """codexgate with an admin token and a metrics token."""
    return await start_gateway(admin_token=ADMIN, metrics_token=METRICS_TOKEN)


async def test_a_scrape_gives_the_store_windows_and_the_traffic(
    scraped: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    admin = Admin(http, scraped)
    fake.events = sse_events("stream-with-rate-limits.sse")  # completes with token usage
    assert await stream(http, scraped, "seat_a") == 200
    assert await stream(http, scraped, "seat_a") == 200
    fake.status = 429
    # The sample's own content-type would make the models answer look like a stream.
    fake.response_headers = {
        k: v for k, v in fake.response_headers.items() if k.lower() != "content-type"
    }
    assert await models(http, scraped, "seat_b") == 429
    await settled(scraped, 3)
    store = app_of(scraped)[STORE]
    accounts = await store.accounts()
    alice = next(a for a in accounts if a.email == "alice@example.com")
    # Quotes, a newline and a backslash survive the escaping. The API now refuses a newline in a
    # name, but a database written before that may hold one: it is set in the store directly.
    renamed = 'Team "A"\nseat \\ 1'
    assert await store.update_account(alice.id, display_name=renamed)

    metrics, body = await scrape(admin)
    now = time.time()
    latest = await store.latest_usage()

    windows = 0
    for row in latest:
        usage = row.usage
        for window, used, resets_at in (
            ("5h", usage.five_hour_used_percent, usage.five_hour_resets_at),
            ("7d", usage.seven_day_used_percent, usage.seven_day_resets_at),
        ):
            labels = {
                "account_id": str(usage.account_id),
                "account": row.display_name or row.email or "",
                "limit": usage.limit_id,
                "window": window,
            }
            assert value(metrics, "codexgate_window_used_percent", **labels) == used
            reset = value(metrics, "codexgate_window_reset_seconds", **labels)
            assert resets_at is not None
            assert reset is not None
            assert abs(reset - (resets_at - now)) < 1.0
            age = value(metrics, "codexgate_window_data_age_seconds", **labels)
            assert age is not None
            assert abs(age - row.age_seconds) < 1.0
            windows += 1
    assert windows == len(metrics["codexgate_window_used_percent"]) == 4  # 2 seats x 5h, 7d
    accounts_labelled = {
        dict(labels)["account"] for labels in metrics["codexgate_window_used_percent"]
    }
    assert accounts_labelled == {renamed, "bob@example.com"}
    # One report per window is too little for a forecast: the gauge is absent, never a guess.
    assert "codexgate_window_forecast_exhaustion_seconds" not in metrics

    assert value(metrics, "codexgate_requests_total", status="200", transport="sse") == 2
    assert value(metrics, "codexgate_requests_total", status="429", transport="http") == 1
    assert len(metrics["codexgate_requests_total"]) == 2
    requests = await store.requests()
    for kind in ("input", "cached_input", "output", "reasoning"):
        expected = sum(getattr(r, f"{kind}_tokens") or 0 for r in requests)
        assert value(metrics, "codexgate_tokens_total", kind=kind) == expected
    assert value(metrics, "codexgate_tokens_total", kind="input") == 20  # 10 per turn
    for transport, count in (("sse", 2), ("http", 1)):
        name = "codexgate_time_to_first_byte_seconds"
        assert value(metrics, f"{name}_count", transport=transport) == count
        ttfb = [r.ttfb_ms / 1000 for r in requests if r.transport == transport and r.ttfb_ms]
        assert len(ttfb) == count
        total = value(metrics, f"{name}_sum", transport=transport)
        assert total is not None
        assert math.isclose(total, sum(ttfb), abs_tol=1e-6)
        assert value(metrics, f"{name}_bucket", transport=transport, le="+Inf") == count
    assert value(metrics, "codexgate_time_to_first_byte_seconds_count", transport="websocket") == 0

    stats = app_of(scraped)[RECORDER].stats()
    assert value(metrics, "codexgate_snapshots_recorded_total") == stats.recorded > 0
    assert value(metrics, "codexgate_snapshots_dropped_total") == 0
    assert value(metrics, "codexgate_requests_logged_total") == 3
    assert value(metrics, "codexgate_requests_dropped_total") == 0
    assert value(metrics, "codexgate_database_ok") == 1

    # Neither a token nor its fingerprint nor an account key is ever a label value (or anywhere).
    assert_no_secret(body)
    for account in accounts:
        assert account.token_fingerprint is not None
        assert account.token_fingerprint[:8].encode() not in body
        assert account.account_key.encode() not in body
    label_values = {v for series in metrics.values() for labels in series for _, v in labels}
    assert not any(secret in v for secret in SECRETS for v in label_values)

    by_token, _ = await scrape(admin, auth=METRICS_TOKEN)
    assert by_token["codexgate_requests_total"] == metrics["codexgate_requests_total"]


async def test_only_the_admin_or_metrics_token_opens_metrics_and_nothing_else(
    scraped: TestServer, http: ClientSession
) -> None:
    admin = Admin(http, scraped)
    assert (await admin.get("metrics", auth=ADMIN)).status == 200
    assert (await admin.get("metrics", auth=METRICS_TOKEN)).status == 200
    assert (await admin.call("HEAD", "metrics", auth=METRICS_TOKEN)).status == 200
    for auth in (None, "wrong-token-0123456789", METRICS_TOKEN + "x", METRICS_TOKEN[:-1]):
        answer = await admin.get("metrics", auth=auth)
        assert answer.status == 401, auth
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    # The metrics token opens no other path, and no other method on this one.
    for method, path in (
        ("GET", "api/v1/accounts"),
        ("GET", "metrics/"),
        ("GET", "codex/usage"),
        ("GET", ""),
        ("POST", "metrics"),
        ("DELETE", "metrics"),
    ):
        answer = await admin.call(method, path, auth=METRICS_TOKEN)
        assert answer.status == 401, (method, path, answer.status)
    # A signed-in browser may look at it too.
    async with http.get(
        f"{admin.base}/login", params={"token": ADMIN}, allow_redirects=False
    ) as login:
        assert login.status == 303
        cookie = f"{SESSION_COOKIE}={login.cookies[SESSION_COOKIE].value}"
    async with http.get(f"{admin.base}/metrics", headers={"Cookie": cookie}) as response:
        assert response.status == 200
        assert b"codexgate_tokens_total" in await response.read()


async def test_without_a_metrics_token_only_the_admin_token_scrapes(
    server: TestServer, admin: Admin
) -> None:
    assert (await admin.get("metrics")).status == 200
    assert (await admin.get("metrics", auth="")).status == 401
    assert (await admin.get("metrics", auth=METRICS_TOKEN)).status == 401


async def test_two_apps_in_one_process_keep_their_own_metrics(
    start_gateway: StartGateway, http: ClientSession, tmp_path: Path
) -> None:
    first = await start_gateway(admin_token=ADMIN)
    second = await start_gateway(admin_token=ADMIN, db=tmp_path / "second.db")
    assert await stream(http, first, "seat_a") == 200
    await settled(first, 1)
    one, _ = await scrape(Admin(http, first))
    other, _ = await scrape(Admin(http, second))
    assert value(one, "codexgate_requests_total", status="200", transport="sse") == 1
    assert "codexgate_requests_total" not in other  # no series yet
    assert app_of(first)[METRICS].registry is not app_of(second)[METRICS].registry
    names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("codexgate") for name in names)


async def test_with_capture_off_requests_are_relayed_but_not_counted(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(admin_token=ADMIN, capture=False)
    assert await stream(http, gateway, "seat_a") == 200
    metrics, _ = await scrape(Admin(http, gateway))
    assert "codexgate_requests_total" not in metrics
    assert value(metrics, "codexgate_time_to_first_byte_seconds_count", transport="sse") == 0


async def test_a_failing_metrics_hook_never_costs_a_request(
    scraped: TestServer, http: ClientSession
) -> None:
    def broken(record: RequestRecord) -> None:
        raise RuntimeError("a bug in a counter")

    recorder = app_of(scraped)[RECORDER]
    recorder.on_request.insert(0, broken)
    assert await stream(http, scraped, "seat_a") == 200
    await settled(scraped, 1)  # the request is still logged, and still counted
    metrics, _ = await scrape(Admin(http, scraped))
    assert value(metrics, "codexgate_requests_total", status="200", transport="sse") == 1


async def test_the_forecast_hook_gives_seconds_until_exhaustion(
    scraped: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    seen: list[Sequence[LatestUsageRow]] = []

    async def forecasts(rows: Sequence[LatestUsageRow], now: float) -> Mapping[WindowKey, float]:
        seen.append(rows)
        return {(r.usage.account_id, r.usage.limit_id, FIVE_HOUR): now + 3600.0 for r in rows}

    assert await stream(http, scraped, "seat_a") == 200
    await settled(scraped, 1)
    app_of(scraped)[METRICS].forecasts = forecasts
    metrics, _ = await scrape(Admin(http, scraped))
    [rows] = seen
    assert [r.usage.limit_id for r in rows] == ["codex"]
    [(labels, seconds)] = metrics["codexgate_window_forecast_exhaustion_seconds"].items()
    assert dict(labels)["window"] == "5h"
    assert 3598.0 < seconds <= 3600.0


# -- the pure parts ---------------------------------------------------------------------------


def _stats() -> RecorderStats:
    return RecorderStats(
        queue_depth=2,
        queue_capacity=10,
        recorded=5,
        dropped=1,
        unattributed=0,
        requests_logged=4,
        requests_dropped=0,
        db_state="error",
        last_error="disk I/O error",
        coalesced=3,
        failed_writes=7,
    )


def test_status_labels_are_exact_codes_and_bounded() -> None:
    assert status_label(200) == "200"
    assert status_label(429) == "429"
    assert status_label(None) == "none"
    assert status_label(0) == status_label(1000) == status_label(-1) == "other"


async def test_observe_request_counts_tokens_and_time_to_first_byte() -> None:
    metrics = Metrics()
    tokens = TokenUsage(input_tokens=100, cached_input_tokens=40, output_tokens=7, total_tokens=107)
    for ttfb_ms, status in ((5.0, 200), (15.0, 200), (70_000.0, None)):
        metrics.observe_request(
            RequestRecord(
                started_at=0.0,
                identity=None,
                method="GET",
                path="/backend-api/codex/responses",
                transport="websocket",
                status=status,
                ttfb_ms=ttfb_ms,
                tokens=tokens,
            )
        )
    scrape = parse(await metrics.exposition((), _stats(), now=0.0))
    assert value(scrape, "codexgate_requests_total", status="200", transport="websocket") == 2
    assert value(scrape, "codexgate_requests_total", status="none", transport="websocket") == 1
    assert value(scrape, "codexgate_tokens_total", kind="input") == 300
    assert value(scrape, "codexgate_tokens_total", kind="cached_input") == 120
    assert value(scrape, "codexgate_tokens_total", kind="output") == 21
    assert value(scrape, "codexgate_tokens_total", kind="reasoning") == 0  # not reported
    name = "codexgate_time_to_first_byte_seconds_bucket"
    assert value(scrape, name, transport="websocket", le="0.01") == 1
    assert value(scrape, name, transport="websocket", le="0.025") == 2
    assert value(scrape, name, transport="websocket", le="60.0") == 2
    assert value(scrape, name, transport="websocket", le="+Inf") == 3
    assert value(scrape, "codexgate_database_ok") == 0
    assert value(scrape, "codexgate_queue_depth") == 2
    assert value(scrape, "codexgate_snapshots_dropped_total") == 1
    assert value(scrape, "codexgate_snapshots_coalesced_total") == 3
    assert value(scrape, "codexgate_queue_capacity") == 10
    assert value(scrape, "codexgate_database_write_failures_total") == 7


async def test_unknown_values_are_absent_never_zero() -> None:
    window = WindowState(
        account_id=3,
        account="",
        limit_id="codex",
        window="7d",
        used_percent=None,
        window_minutes=10080,
        resets_at=None,
        confirmed_at=90.0,
    )
    scrape = parse(await Metrics().exposition([window], _stats(), now=100.0))
    labels = {"account_id": "3", "account": "", "limit": "codex", "window": "7d"}
    assert "codexgate_window_used_percent" not in scrape
    assert "codexgate_window_reset_seconds" not in scrape
    assert value(scrape, "codexgate_window_data_age_seconds", **labels) == 10.0


async def test_window_states_take_classified_windows_once_and_other_slots_by_label(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "db.sqlite", heartbeat_seconds=60.0)
    try:
        identity = Identity(account_key="seat:x:y", token_fingerprint="f" * 64, email="e@x")
        windows = (
            Window("primary", FIVE_HOUR, "length", 12.5, 300, 2_000_000_000),
            Window("secondary", DAILY, "length", 40.0, 1440, None),
        )
        report = UsageReport(limits=(LimitReport("codex", None, windows),))
        await store.record([Snapshot(identity, 1_900_000_000.0, "headers", report)])
        states = window_states(await store.latest_usage())
    finally:
        await store.close()
    assert [(s.window, s.used_percent, s.resets_at) for s in states] == [
        (FIVE_HOUR, 12.5, 2_000_000_000),
        (DAILY, 40.0, None),
    ]
    assert {s.account for s in states} == {"e@x"}
    assert {s.confirmed_at for s in states} == {1_900_000_000.0}
