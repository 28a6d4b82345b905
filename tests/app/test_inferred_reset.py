"""True when idle: a window whose reset time has passed with no newer report is shown as reset,
with a flag saying it is inferred, in the API, the metrics, the command line and the page."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from codexgate.cli import main as cli
from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.core.text import clock
from codexgate.keys import STORE
from codexgate.storage import open_storage
from codexgate.storage.interface import Storage
from tests.helpers.admin_client import Admin
from tests.helpers.builders import seat_identity
from tests.helpers.gateway import app_of

# The 5h window reset ten minutes ago at 46 %; the weekly one resets in three days.
PASSED: int = 600
AHEAD: int = 3 * 86400


async def record_idle(store: Storage, now: float) -> None:
    """seat_a's last report, two hours ago: 5h at 46 % (reset since), 7d at 15 % (ahead)."""
    windows = (
        Window("primary", "5h", "length", 46.0, 300, int(now) - PASSED),
        Window("secondary", "7d", "length", 15.0, 10080, int(now) + AHEAD),
    )
    report = UsageReport(limits=(LimitReport("codex", None, windows),), plan_type="plus")
    await store.record([Snapshot(seat_identity("seat_a"), now - 7200, "headers", report, 200)])


async def test_the_api_shows_a_passed_reset_as_reset_and_says_it_is_inferred(
    server: TestServer, admin: Admin
) -> None:
    now = time.time()
    await record_idle(app_of(server)[STORE], now)
    [account] = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    [limit] = account["limits"]
    five_hour, seven_day = limit["windows"]["5h"], limit["windows"]["7d"]
    assert five_hour["used_percent"] == 0.0
    assert five_hour["reported_used_percent"] == 46.0
    assert five_hour["reset_inferred"] is True
    assert five_hour["resets_at"] == int(now) - PASSED  # the time that passed, kept
    assert five_hour["reset_in_seconds"] < 0
    assert five_hour["forecast"]["status"] == "insufficient_data"  # nothing known of the new one
    # Not inferred: the figure as reported, in both fields.
    assert seven_day["used_percent"] == seven_day["reported_used_percent"] == 15.0
    assert seven_day["reset_inferred"] is False
    # The stale flag stays in the API: idle for two hours.
    assert limit["stale"] is True
    single = await admin.ok("GET", f"api/v1/accounts/{account['id']}")
    assert single["limits"][0]["windows"]["5h"]["reset_inferred"] is True


async def test_the_metrics_show_0_used_and_the_inferred_reset(
    server: TestServer, admin: Admin
) -> None:
    await record_idle(app_of(server)[STORE], time.time())
    answer = await admin.get("metrics")
    assert answer.status == 200
    values = {
        (family.name, sample.labels["window"]): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
        if "window" in sample.labels
    }
    assert values[("codexgate_window_used_percent", "5h")] == 0.0
    assert values[("codexgate_window_reset_inferred", "5h")] == 1.0
    assert values[("codexgate_window_used_percent", "7d")] == 15.0
    assert values[("codexgate_window_reset_inferred", "7d")] == 0.0
    assert values[("codexgate_window_reset_seconds", "5h")] < 0


async def test_the_page_says_reset_at_and_no_request_since_and_is_calm_about_idle(
    server: TestServer, admin: Admin
) -> None:
    now = time.time()
    await record_idle(app_of(server)[STORE], now)
    text = (await admin.get("")).body.decode()
    five_hour = re.search(
        r'<li class="window level-ok reset-inferred" data-window="5h".*?</li>', text, re.S
    )
    assert five_hour is not None
    assert 'data-used="0.0" data-reported-used="46.0" data-reset-inferred="true"' in five_hour[0]
    assert "0% used" in five_hour[0]
    assert "46%" not in five_hour[0].replace('data-reported-used="46.0"', "")
    when = clock(int(now) - PASSED, now)
    assert f"reset at {when} UTC · no request since<" in five_hour[0]
    # Idle is not an error: "last report 2h ago", no stale badge, no forecast line.
    assert re.search(r'data-field="age" title="[^"]+">last report 2h', text)
    assert ">stale<" not in text
    assert re.search(r'<p class="forecast-line" data-field="forecast-line" hidden></p>', text)
    assert "not enough data" not in text


def test_the_command_line_says_0_percent_reset_inferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    path = tmp_path / "usage.db"
    now = time.time()

    async def populate() -> None:
        store = await open_storage(path)
        try:
            await record_idle(store, now)
        finally:
            await store.close()

    asyncio.run(populate())
    assert cli.main(["status", "--db", str(path)]) == 0
    out = capsys.readouterr().out
    when = clock(int(now) - PASSED, time.time(), None)  # this machine's local time
    [five_hour] = [line for line in out.splitlines() if " 5h " in line]
    assert f"0% (reset {when}, inferred)" in five_hour
    [seven_day] = [line for line in out.splitlines() if " 7d " in line]
    assert "15%" in seven_day
    assert "inferred" not in seven_day
    assert cli.main(["status", "--db", str(path), "--json"]) == 0
    [account] = orjson.loads(capsys.readouterr().out)["accounts"]
    window = account["limits"][0]["windows"]["5h"]
    assert (window["used_percent"], window["reported_used_percent"]) == (0.0, 46.0)
    assert window["reset_inferred"] is True
