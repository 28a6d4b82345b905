"""Alerts in the app: each fires exactly once per crossing, against a real local webhook
receiver; the alerts API; alerts in the feed; state kept across restarts (the rules, pure, are
tests/unit/test_alert_rules.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from codexgate.config import AlertConfig, WebhookConfig
from codexgate.core.models import LimitHit, LimitReport, Snapshot, UsageReport, Window
from codexgate.keys import ALERTS, STORE
from codexgate.services.alerts import AlertEngine
from codexgate.services.forecasts import ForecastCache
from codexgate.storage import open_storage
from codexgate.storage.sqlite.store import Store
from tests.helpers import many_accounts
from tests.helpers.admin_client import ADMIN, JWTS, SECRETS, Admin
from tests.helpers.builders import seat_identity
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of, recorded, turn
from tests.helpers.waiting import eventually

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")

# -- against a real gateway and a real webhook receiver ----------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint on loopback: records each body, answers scripted statuses."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(orjson.loads(await request.read()))
            self.arrived.set()
        return web.Response(status=status)

    async def wait_for(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        await eventually(
            lambda: self.bodies, accept=lambda bodies: len(bodies) >= count, timeout=within
        )
        return self.bodies


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> tuple[Receiver, TestServer]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{secret}", found.handle)
    return found, await aiohttp_server(app)


def hook_url(server: TestServer, secret: str = "s3cr3t-path-token") -> URL:
    return URL(f"http://127.0.0.1:{server.port}/hook/{secret}")


async def turn_at(
    http: ClientSession, gateway: TestServer, fake: FakeUpstream, used: int, count: int
) -> None:
    """A proxied turn whose headers report the 5h window at `used` %; wait for its row."""
    fake.response_headers["x-codex-primary-used-percent"] = str(used)
    fake.response_headers["x-codex-primary-reset-at"] = str(int(time.time()) + 7200)
    assert await turn(http, gateway, f"Bearer {JWTS['seat_a']}") == 200
    await recorded(gateway, count)


async def test_thresholds_fire_exactly_once_each_to_a_json_webhook(
    start_gateway: StartGateway,
    http: ClientSession,
    fake: FakeUpstream,
    receiver: tuple[Receiver, TestServer],
) -> None:
    found, hook_server = receiver
    alerts = AlertConfig(webhooks=(WebhookConfig(hook_url(hook_server), "json"),), forecast=False)
    gateway = await start_gateway(admin_token=ADMIN, alerts=alerts)
    for count, used in enumerate((70, 80, 85, 91, 92, 96), start=1):
        await turn_at(http, gateway, fake, used, count)
    bodies = await found.wait_for(3)
    await asyncio.sleep(0.3)  # nothing more arrives
    assert len(found.bodies) == 3
    assert [b["alert"]["threshold"] for b in bodies] == [75.0, 90.0, 95.0]
    first = bodies[0]
    assert first["type"] == "codexgate.alert"
    assert first["alert"]["kind"] == "threshold"
    assert first["alert"]["account"] == "alice@example.com"
    assert first["alert"]["window"] == "5h"
    assert "crossed 75%" in first["alert"]["message"]
    for body in bodies:
        text = orjson.dumps(body).decode()
        assert all(secret not in text for secret in SECRETS)
    admin = Admin(http, gateway)
    listed = await admin.ok("GET", "api/v1/alerts")
    assert [a["threshold"] for a in listed["items"]] == [95.0, 90.0, 75.0]  # newest first


async def test_slack_and_discord_bodies_and_a_retry_after_500(
    start_gateway: StartGateway,
    http: ClientSession,
    fake: FakeUpstream,
    receiver: tuple[Receiver, TestServer],
) -> None:
    found, hook_server = receiver
    found.statuses = [500]  # the first delivery fails once, then is retried
    alerts = AlertConfig(
        webhooks=(
            WebhookConfig(hook_url(hook_server, "slack-token"), "slack"),
            WebhookConfig(hook_url(hook_server, "discord-token"), "discord"),
        ),
        forecast=False,
    )
    gateway = await start_gateway(admin_token=ADMIN, alerts=alerts)
    await turn_at(http, gateway, fake, 91, 1)
    bodies = await found.wait_for(2, within=15)
    slack = next(b for b in bodies if "blocks" in b)
    discord = next(b for b in bodies if "embeds" in b)
    assert "crossed 90%" in slack["text"]
    assert slack["blocks"][0]["type"] == "section"
    assert "crossed 90%" in discord["content"]
    assert discord["embeds"][0]["fields"]
    stats = app_of(gateway)[ALERTS].stats
    assert stats.fired == 1


async def test_the_alerts_api_rules_webhooks_and_test_alert(
    start_gateway: StartGateway,
    http: ClientSession,
    receiver: tuple[Receiver, TestServer],
) -> None:
    found, hook_server = receiver
    from_file = WebhookConfig(hook_url(hook_server, "file-secret"), "json", "ops")
    gateway = await start_gateway(admin_token=ADMIN, alerts=AlertConfig(webhooks=(from_file,)))
    admin = Admin(http, gateway)
    rules = await admin.ok("GET", "api/v1/alerts/rules")
    assert rules == {
        "thresholds": [75.0, 90.0, 95.0],
        "limit_hit": True,
        "limit_reset": True,
        "forecast": True,
        "stale_minutes": 60.0,
        "source": "config",
    }
    changed = await admin.ok("PUT", "api/v1/alerts/rules", json={"thresholds": [50, 99]})
    assert changed["thresholds"] == [50.0, 99.0]
    assert changed["source"] == "api"
    bad = await admin.call("PUT", "api/v1/alerts/rules", json={"thresholds": [0]})
    assert bad.status == 400
    assert bad.json["error"]["field"] == "thresholds"
    back = await admin.ok("DELETE", "api/v1/alerts/rules")
    assert back["thresholds"] == [75.0, 90.0, 95.0]
    assert back["source"] == "config"

    added = await admin.ok(
        "POST",
        "api/v1/alerts/webhooks",
        201,
        json={"url": str(hook_url(hook_server, "api-secret")), "format": "discord"},
    )
    assert added["url"] == f"http://127.0.0.1:{hook_server.port}/…"
    listed = await admin.ok("GET", "api/v1/alerts/webhooks")
    assert [(w["source"], w["format"], w["name"]) for w in listed["items"]] == [
        ("config", "json", "ops"),
        ("api", "discord", None),
    ]
    text = orjson.dumps(listed).decode()
    assert "file-secret" not in text
    assert "api-secret" not in text

    sent = await admin.ok("POST", "api/v1/alerts/test")
    assert [w["ok"] for w in sent["webhooks"]] == [True, True]
    assert sent["alert"]["kind"] == "test"
    bodies = await found.wait_for(2)
    assert {("embeds" in b) for b in bodies} == {True, False}

    assert (await admin.call("DELETE", f"api/v1/alerts/webhooks/{added['id']}")).status == 204
    assert (await admin.call("DELETE", f"api/v1/alerts/webhooks/{added['id']}")).status == 404
    bad_url = await admin.call("POST", "api/v1/alerts/webhooks", json={"url": "ftp://x/"})
    assert bad_url.status == 400
    health = await admin.ok("GET", "healthz", auth=None)
    assert health["notifier"]["sent"] >= 2


async def test_alerts_reach_the_feed_and_state_survives_a_restart(
    start_gateway: StartGateway, http: ClientSession, fake: FakeUpstream
) -> None:
    gateway = await start_gateway(admin_token=ADMIN, alerts=AlertConfig(forecast=False))
    async with http.get(
        f"http://127.0.0.1:{gateway.port}/codexgate/api/v1/events",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as feed:
        await turn_at(http, gateway, fake, 92, 1)
        kinds: list[str] = []
        payload: dict[str, Any] = {}
        async with asyncio.timeout(5):
            async for line in feed.content:
                if line.startswith(b"event: "):
                    kinds.append(line[7:].strip().decode())
                if line.startswith(b"data: ") and kinds and kinds[-1] == "alert":
                    payload = orjson.loads(line[6:])
                    break
    assert payload["threshold"] == 90.0
    assert "usage" in kinds
    # A new engine on the same store (a restart) does not fire the same crossing again.
    store = app_of(gateway)[STORE]
    engine = AlertEngine(store, ForecastCache(store), lambda: AlertConfig(forecast=False))
    await engine.start()
    try:
        rows = await store.usage_after(0)
        seat = seat_identity("seat_a")
        window = Window("primary", "5h", "length", 93.0, 300, rows[-1].five_hour_resets_at)
        report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
        await store.record([Snapshot(seat, time.time(), "headers", report, 200)])
        assert await engine.run_once() == []
        window = Window("primary", "5h", "length", 96.0, 300, rows[-1].five_hour_resets_at)
        report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
        await store.record([Snapshot(seat, time.time(), "headers", report, 200)])
        fired = await engine.run_once()
        assert [a.threshold for a in fired] == [95.0]
    finally:
        await engine.stop()


async def test_a_quota_error_fires_limit_hit_once(tmp_path: Any) -> None:
    store = await Store.open(tmp_path / "alerts.db")
    rules = AlertConfig(forecast=False, stale_minutes=0)
    engine = AlertEngine(store, ForecastCache(store), lambda: rules)
    await engine.start()
    try:
        seat = seat_identity("seat_a")
        now = time.time()
        window = Window("primary", "5h", "length", 100.0, 300, int(now + 3600))
        report = UsageReport(
            limits=(LimitReport("codex", None, (window,)),),
            limit_hit=LimitHit("usage_limit_reached", int(now + 3600)),
        )
        snapshots: Sequence[Snapshot] = [
            Snapshot(seat, now, "error", report, 429),
            Snapshot(seat, now + 1, "error", report, 429),
        ]
        await store.record(list(snapshots))
        fired = await engine.run_once()
        assert [a.kind for a in fired] == ["limit_hit"]  # one event: not also "crossed 95%"
        hit = next(a for a in fired if a.kind == "limit_hit")
        assert hit.message.startswith("alice@example.com: codex limit reached")
        assert await engine.run_once() == []
        late = await engine.run_once(now + 3601)
        assert [a.kind for a in late] == ["limit_reset"]
    finally:
        await engine.stop()
        await store.close()


# -- many accounts: a commit evaluates its own accounts, a sweep every account once a tick --------


async def test_a_commit_evaluates_its_accounts_and_a_sweep_fires_stale_once(tmp_path: Any) -> None:
    db = tmp_path / "many.db"
    store = await Store.open(db, heartbeat_seconds=3 * 3600)  # same values: a confirmation
    now = time.time()
    await asyncio.to_thread(many_accounts.fill, db, 300, now - 7200)  # stale for an hour
    current = {"rules": AlertConfig(forecast=False)}  # stale after 60 minutes
    engine = AlertEngine(store, ForecastCache(store), lambda: current["rules"])
    await engine.start()
    try:
        seat = seat_identity("seat_a")
        window = Window("primary", "5h", "length", 10.0, 300, int(now + 3600))
        report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
        engine.committed(await store.record([Snapshot(seat, now, "headers", report, 200)]))
        assert await engine.run_commits(now) == []  # the 300 stale accounts were not touched
        fired = await engine.sweep(now)
        assert len(fired) == 300
        assert {a.kind for a in fired} == {"stale"}
        assert len({a.account_id for a in fired}) == 300
        by_id = {a.account_id: a.message for a in fired}
        assert by_id[7].startswith("Seat 00007: no new codex usage report for 2h")
        assert by_id[10].startswith("Account 10: ")  # no name and no email: the default name
        assert await engine.sweep(now + 60) == []  # once per crossing

        later = now + 7200  # seat_a goes stale too, once
        assert [(a.kind, a.account) for a in await engine.sweep(later)] == [
            ("stale", "alice@example.com")
        ]
        confirmed = await store.record([Snapshot(seat, later, "headers", report, 200)])
        assert confirmed.rows_confirmed == 1
        engine.committed(confirmed)
        assert await engine.run_commits(later) == []
        stale = {s.account_id for s in await store.alert_states() if s.rule == "stale"}
        assert len(stale) == 300  # the confirmation re-armed seat_a at its commit
        assert await engine.sweep(later + 60) == []
        assert [a.account for a in await engine.sweep(later + 7200)] == ["alice@example.com"]

        current["rules"] = AlertConfig(forecast=False, stale_minutes=0)
        assert await engine.sweep(later + 7200) == []
        assert [s for s in await store.alert_states() if s.rule == "stale"] == []
    finally:
        await engine.stop()
        await store.close()


async def test_the_engine_sweeps_once_a_tick_and_not_on_every_commit(tmp_path: Any) -> None:
    db = tmp_path / "many.db"
    store = await Store.open(db)
    now = time.time()
    await asyncio.to_thread(many_accounts.fill, db, 50, now - 7200)
    engine = AlertEngine(store, ForecastCache(store), lambda: AlertConfig(forecast=False), tick=1.0)
    await engine.start()
    try:
        window = Window("primary", "5h", "length", 80.0, 300, int(now + 3600))
        report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
        snapshot = Snapshot(seat_identity("seat_a"), now, "headers", report, 200)
        engine.committed(await store.record([snapshot]))
        await eventually(lambda: engine.stats.fired >= 1)
        assert engine.stats.fired == 1  # threshold:75; the commit did not walk the accounts
        await eventually(lambda: engine.stats.fired >= 51)  # the tick did
        await asyncio.sleep(1.5)  # the next tick finds nothing new
        assert engine.stats.fired == 51
        assert engine.stats.failures == 0
    finally:
        await engine.stop()
        await store.close()


@pytest.mark.parametrize(
    ("stored", "warning", "thresholds", "source"),
    [
        ('{"thresholds": [50], "quiet_hours": "22-07"}', "'quiet_hours'", [50.0], "api"),
        ('{"thresholds": "all"}', "the settings file's rules apply", [75.0, 90.0, 95.0], "config"),
        ("[1, 2]", "not a JSON object", [75.0, 90.0, 95.0], "config"),
    ],
)
async def test_stored_rules_a_newer_codexgate_wrote_do_not_stop_the_start(
    start_gateway: StartGateway,
    http: ClientSession,
    config: Any,
    caplog: pytest.LogCaptureFixture,
    stored: str,
    warning: str,
    thresholds: list[float],
    source: str,
) -> None:
    store = await open_storage(config.db)
    try:
        await store.set_setting("alert_rules", stored)
    finally:
        await store.close()
    gateway = await start_gateway(admin_token=ADMIN)
    rules = await Admin(http, gateway).ok("GET", "api/v1/alerts/rules")
    assert (rules["thresholds"], rules["source"]) == (thresholds, source)
    assert any(
        record.levelname == "WARNING" and warning in record.getMessage()
        for record in caplog.records
        if record.name == "codexgate.services.alerts"
    )
