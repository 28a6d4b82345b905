"""Forecasts wired in: the cache over the real store, and the forecast in the API's accounts, the
feed's usage events, the dashboard's cards and the metrics."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from codexgate.core.forecast import Sample, forecast
from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.keys import EVENT_BUS, STORE
from codexgate.services.forecasts import SAMPLES_PER_WINDOW, ForecastCache
from codexgate.storage.sqlite.store import Store
from tests.helpers.admin_client import ADMIN, Admin
from tests.helpers.builders import seat_identity
from tests.helpers.gateway import app_of
from tests.helpers.traces import load_trace

WINDOW: Final = 300 * 60


def cut(trace: dict[str, Any], fraction: float) -> dict[str, Any]:
    """The trace up to `fraction` of its window."""
    limit = trace["window_minutes"] * 60 * fraction
    return {**trace, "samples": [s for s in trace["samples"] if s["at"] <= limit]}


async def test_the_cache_agrees_with_the_maths_and_thins_busy_windows(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "f.db", heartbeat_seconds=1e9)
    try:
        now = time.time()
        trace = cut(load_trace("steady"), 0.5)
        start = now - trace["samples"][-1]["at"]
        seat = seat_identity("seat_a")
        resets_at = int(start + WINDOW)
        snapshots = []
        for sample in trace["samples"]:
            window = Window(
                "primary", "5h", "length", float(sample["used_percent"]), 300, resets_at
            )
            report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
            snapshots.append(Snapshot(seat, start + sample["at"], "headers", report, 200))
        await store.record(snapshots)
        cache = ForecastCache(store)
        table = await cache.of_rows(await store.latest_usage(), now)
        cached = table[(1, "codex")]["5h"]
        direct = forecast(
            [
                Sample(start + item["at"], float(item["used_percent"]), resets_at)
                for item in trace["samples"]
            ],
            now=now,
            window_minutes=300,
        )
        assert cached.status == direct.status == "runs_out"
        assert cached.exhausts_at is not None
        assert direct.exhausts_at is not None
        assert abs(cached.exhausts_at - direct.exhausts_at) < 0.02 * WINDOW
        # The truth: the trace's own exhaustion time, within the bound.
        truth = start + load_trace("steady")["exhausts_at"]
        assert abs(cached.exhausts_at - truth) <= 0.1 * WINDOW

        # A busy window (a report every 5 s for 3 hours) keeps a few hundred samples.
        busy = ForecastCache(store)
        rows = []
        seat_b = seat_identity("seat_b")
        for i in range(2160):
            used = i * 0.04
            window = Window("primary", "5h", "length", round(used, 1), 300, int(now + 7200))
            report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
            rows.append(Snapshot(seat_b, now - 10800 + i * 5, "headers", report, 200))
        await store.record(rows)
        table = await busy.of_rows(await store.latest_usage(), now)
        account_b = next(k for k in table if k[0] != 1)
        result = table[account_b]["5h"]
        assert result.samples <= SAMPLES_PER_WINDOW + 10
        assert result.status == "runs_out"
        assert result.rate_per_hour is not None
        assert abs(result.rate_per_hour - 28.8) < 3
    finally:
        await store.close()


async def test_accounts_feed_dashboard_and_metrics_carry_the_forecast(
    server: TestServer, admin: Admin, http: ClientSession
) -> None:
    store = app_of(server)[STORE]
    now = time.time()
    trace = cut(load_trace("steady"), 0.5)
    start = now - trace["samples"][-1]["at"]
    resets_at = int(start + WINDOW)
    seat = seat_identity("seat_a")
    snapshots = []
    for sample in trace["samples"][:-1]:
        window = Window("primary", "5h", "length", float(sample["used_percent"]), 300, resets_at)
        report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
        snapshots.append(Snapshot(seat, start + sample["at"], "headers", report, 200))
    await store.record(snapshots)

    accounts = await admin.ok("GET", "api/v1/accounts")
    five_hour = accounts["accounts"][0]["limits"][0]["windows"]["5h"]
    found = five_hour["forecast"]
    assert found["status"] == "runs_out"
    assert found["runs_out_before_reset_seconds"] > 0
    assert 15 < found["rate_per_hour"] < 35
    assert found["exhausts_at_iso"].endswith("Z")
    assert found["sustainable_rate_per_hour"] > 0
    truth = start + load_trace("steady")["exhausts_at"]
    assert abs(found["exhausts_at"] - truth) <= 0.1 * WINDOW

    # The live feed's usage event carries the forecasts of its limit family.
    async with http.get(
        f"http://127.0.0.1:{server.port}/codexgate/api/v1/events",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as feed:
        last = trace["samples"][-1]
        window = Window("primary", "5h", "length", float(last["used_percent"]), 300, resets_at)
        report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
        await store.record([Snapshot(seat, start + last["at"], "headers", report, 200)])
        app_of(server)[EVENT_BUS].notify()  # written past the recorder: wake the feed
        payload: dict[str, Any] = {}
        async with asyncio.timeout(5):
            async for line in feed.content:
                if line.startswith(b"data: ") and b'"forecasts"' in line:
                    payload = orjson.loads(line[6:])
                    break
    assert payload["forecasts"]["5h"]["status"] == "runs_out"

    page = (await admin.get("")).body.decode()
    # The card's one forecast line, in plain words (no pace or sustainable-rate jargon).
    assert re.search(r"At this pace the 5-hour window runs out at \d\d:\d\d UTC, ", page)
    assert "before it resets" in page
    assert "%/h" not in page
    assert "sustainable" not in page

    answer = await admin.get("metrics")
    families = {f.name: f for f in text_string_to_metric_families(answer.body.decode())}
    [sample] = families["codexgate_window_forecast_exhaustion_seconds"].samples
    assert sample.labels["window"] == "5h"
    refreshed = await admin.ok("GET", "api/v1/accounts")
    exhausts_at = refreshed["accounts"][0]["limits"][0]["windows"]["5h"]["forecast"]["exhausts_at"]
    assert abs(sample.value - (exhausts_at - time.time())) < 30
