"""One alert for one event, and names as they are when an alert fires: through the real gateway,
the fake upstream answering as the backend does, and every way an account is renamed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.cli.backend import open_backend
from codexgate.config import AlertConfig, Config
from codexgate.core.models import LimitHit, LimitReport, Snapshot, UsageReport, Window
from codexgate.core.rows import AccountRow, AlertRow
from codexgate.keys import ALERTS, STORE
from codexgate.services.accounts import Accounts
from codexgate.services.alerts import AlertEngine
from codexgate.services.forecasts import ForecastCache
from codexgate.storage.sqlite.store import Store
from tests.helpers.admin_client import ADMIN, JWTS, Admin
from tests.helpers.builders import seat_identity
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of, recorded, turn
from tests.helpers.waiting import eventually

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")

SEAT = f"Bearer {JWTS['seat_a']}"


def report_usage(fake: FakeUpstream, five_hour: float, weekly: float) -> None:
    """The fake upstream's rate-limit headers: the 5h and weekly windows at these percents."""
    now = int(time.time())
    fake.response_headers.update(
        {
            "x-codex-primary-used-percent": f"{five_hour:g}",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(now + 3600),
            "x-codex-secondary-used-percent": f"{weekly:g}",
            "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-at": str(now + 5 * 86400),
        }
    )


def answer_limit_reached(fake: FakeUpstream, resets_at: int) -> None:
    """The fake upstream answers the next turns as the backend does at the limit: a 429."""
    fake.status = 429
    fake.response_headers.pop("content-type", None)  # the 200 sample's; this answer is JSON
    fake.error_body = orjson.dumps(
        {
            "error": {
                "type": "usage_limit_reached",
                "message": "You've hit your usage limit.",
                "plan_type": "plus",
                "resets_at": resets_at,
                "resets_in_seconds": resets_at - int(time.time()),
            }
        }
    )


async def alerts_of(admin: Admin) -> list[dict[str, Any]]:
    """Every alert, oldest first."""
    page = await admin.ok("GET", "api/v1/alerts?limit=200")
    items: list[dict[str, Any]] = page["items"]
    return items[::-1]


async def fired(admin: Admin, count: int) -> list[dict[str, Any]]:
    """Wait for at least `count` alerts; all of them, oldest first."""
    return await eventually(lambda: alerts_of(admin), accept=lambda items: len(items) >= count)


async def test_a_429_at_100_percent_fires_limit_reached_only(
    start_gateway: StartGateway, http: ClientSession, fake: FakeUpstream
) -> None:
    gateway = await start_gateway(admin_token=ADMIN, alerts=AlertConfig(stale_minutes=0))
    admin = Admin(http, gateway)
    report_usage(fake, 80, 40)
    assert await turn(http, gateway, SEAT) == 200
    await recorded(gateway, 1)
    assert [a["threshold"] for a in await fired(admin, 1)] == [75.0]

    # The upstream refuses the next turn: usage_limit_reached, its headers at 100 %; the weekly
    # window jumped too (a forecast would say it runs out before its reset).
    resets_at = int(time.time()) + 3600
    answer_limit_reached(fake, resets_at)
    report_usage(fake, 100, 70)
    assert await turn(http, gateway, SEAT) == 429
    await recorded(gateway, 2)
    await fired(admin, 2)
    await turn_settles(gateway)
    items = await alerts_of(admin)
    assert [(a["kind"], a["threshold"]) for a in items] == [
        ("threshold", 75.0),
        ("limit_hit", None),
    ]
    hit = items[-1]
    assert hit["resets_at"] == resets_at
    assert hit["severity"] == "critical"

    # A second refusal is the same event: still one alert.
    assert await turn(http, gateway, SEAT) == 429
    await recorded(gateway, 3)
    await turn_settles(gateway)
    assert len(await alerts_of(admin)) == 2


async def test_with_the_limit_rule_off_the_crossing_is_the_alert(
    start_gateway: StartGateway, http: ClientSession, fake: FakeUpstream
) -> None:
    rules = AlertConfig(stale_minutes=0, limit_hit=False, forecast=False)
    gateway = await start_gateway(admin_token=ADMIN, alerts=rules)
    admin = Admin(http, gateway)
    answer_limit_reached(fake, int(time.time()) + 3600)
    report_usage(fake, 100, 10)
    assert await turn(http, gateway, SEAT) == 429
    await recorded(gateway, 1)
    items = await fired(admin, 1)
    assert [(a["kind"], a["threshold"]) for a in items] == [("threshold", 95.0)]


async def turn_settles(gateway: TestServer) -> None:
    """Wait until the alert engine has evaluated every row the recorder wrote."""
    app = app_of(gateway)
    newest = (await app[STORE].feed_cursor()).usage
    engine = app[ALERTS]
    await eventually(lambda: engine.cursor >= newest)


# -- renames reach the next alert at once ------------------------------------------------------


async def rename_through_api(admin: Admin, config: Config, account_id: int, name: str) -> None:
    await admin.ok("PATCH", f"api/v1/accounts/{account_id}", json={"display_name": name})


async def rename_through_compat(admin: Admin, config: Config, account_id: int, name: str) -> None:
    await admin.ok("PUT", f"codex/tokens/{account_id}", json={"name": name})


async def rename_through_local_cli(
    admin: Admin, config: Config, account_id: int, name: str
) -> None:
    # `codexgate accounts rename` without --url: the database file, while the server runs.
    async with open_backend(config, None, None) as backend:
        await backend.rename_account(account_id, name)


@pytest.mark.parametrize(
    "rename", [rename_through_api, rename_through_compat, rename_through_local_cli]
)
async def test_an_alert_right_after_a_rename_uses_the_new_name(
    start_gateway: StartGateway,
    http: ClientSession,
    fake: FakeUpstream,
    config: Config,
    rename: Any,
) -> None:
    gateway = await start_gateway(
        admin_token=ADMIN, alerts=AlertConfig(stale_minutes=0, forecast=False)
    )
    admin = Admin(http, gateway)
    report_usage(fake, 80, 10)
    assert await turn(http, gateway, SEAT) == 200
    await recorded(gateway, 1)
    first = await fired(admin, 1)
    assert first[0]["account"] == "alice@example.com"
    account_id = first[0]["account_id"]

    await rename(admin, config, account_id, "Team A")
    report_usage(fake, 91, 10)
    assert await turn(http, gateway, SEAT) == 200
    await recorded(gateway, 2)
    second = (await fired(admin, 2))[-1]
    assert second["threshold"] == 90.0
    assert second["account"] == "Team A"
    assert second["message"].startswith("Team A: ")

    # Renamed again at once: no waiting for the engine in between.
    await rename(admin, config, account_id, "Team B")
    report_usage(fake, 96, 10)
    assert await turn(http, gateway, SEAT) == 200
    await recorded(gateway, 3)
    third = (await fired(admin, 3))[-1]
    assert (third["threshold"], third["account"]) == (95.0, "Team B")


class RenamedWhileRead(Store):
    """The real store, with a rename landing while the alert engine reads account names."""

    rename_to: str | None = None

    async def accounts_of(self, account_ids: Sequence[int]) -> list[AccountRow]:
        found = await super().accounts_of(account_ids)
        name, self.rename_to = self.rename_to, None
        if name is not None:  # committed after the read, before the reader goes on
            for account_id in account_ids:
                await Accounts(self).rename(account_id, name)
        return found


async def test_a_rename_during_an_evaluation_reaches_the_next_alert(tmp_path: Path) -> None:
    store = await RenamedWhileRead.open(tmp_path / "names.db")
    engine = AlertEngine(store, ForecastCache(store), lambda: AlertConfig(forecast=False))
    await engine.start()
    try:
        seat = seat_identity("seat_a")

        async def report(used: float) -> list[AlertRow]:
            window = Window("primary", "5h", "length", used, 300, int(time.time()) + 3600)
            snapshot = Snapshot(
                seat,
                time.time(),
                "headers",
                UsageReport(limits=(LimitReport("codex", None, (window,)),)),
                200,
            )
            engine.committed(await store.record([snapshot]))
            return await engine.run_commits()

        store.rename_to = "Team A"
        first = await report(80.0)  # its report came before the rename: the name it had
        assert [(a.threshold, a.account) for a in first] == [(75.0, "alice@example.com")]
        second = await report(91.0)
        assert [(a.threshold, a.account) for a in second] == [(90.0, "Team A")]
    finally:
        await engine.stop()
        await store.close()


async def test_an_account_deleted_behind_the_engine_fires_nothing_when_its_limit_is_back(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "gone.db")
    engine = AlertEngine(store, ForecastCache(store), lambda: AlertConfig(forecast=False))
    await engine.start()
    try:
        now = time.time()
        window = Window("primary", "5h", "length", 100.0, 300, int(now + 60))
        report = UsageReport(
            limits=(LimitReport("codex", None, (window,)),),
            limit_hit=LimitHit("usage_limit_reached", int(now + 60)),
        )
        seat = seat_identity("seat_a")
        engine.committed(await store.record([Snapshot(seat, now, "error", report, 429)]))
        assert [a.kind for a in await engine.run_commits(now)] == ["limit_hit"]
        (account,) = await store.accounts()
        # `codexgate accounts rm` on the database file: the server's engine is not told.
        assert await Accounts(store).delete(account.id)
        assert await engine.sweep(now + 120) == []
        assert engine.stats.failures == 0
        assert await engine.sweep(now + 180) == []
    finally:
        await engine.stop()
        await store.close()
