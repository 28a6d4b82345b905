"""Alerts people can scan, as the server renders and the API answers them: a severity for each
(a word and a class, in both languages), a link to the account while it exists, when the limit is
back, and test alerts kept out of the recent alerts."""

from __future__ import annotations

import html
import re
import time
from typing import Any

from aiohttp.test_utils import TestServer

from codexgate.core.rows import AlertKind, NewAlert
from codexgate.dashboard import handlers
from codexgate.keys import STORE
from tests.helpers.admin_client import JWTS, Admin
from tests.helpers.gateway import app_of


async def overview(admin: Admin, **headers: str) -> str:
    answer = await admin.get("", headers=headers)
    assert answer.status == 200, answer.body
    return answer.body.decode()


def alert_items(page: str) -> list[str]:
    """The recent alerts' items (not the template's)."""
    listed = re.search(r'<ol class="alert-list" id="alert-list">(.*?)</ol>', page, re.S)
    assert listed is not None
    return re.findall(r'<li class="alert .*?</li>', listed.group(1), re.S)


def text_of(item: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", item)).split())


async def test_recent_alerts_have_severity_link_and_when_without_test_alerts(
    server: TestServer, admin: Admin
) -> None:
    account = await admin.ok("POST", "api/v1/accounts", 201, json={"token": JWTS["seat_b"]})
    account_id = account["id"]
    now = time.time()
    back = int(now + 3600)
    real = [
        NewAlert(
            at=now - 30,
            kind="threshold",
            message="m",
            account_id=account_id,
            account="Ops seat",
            window="5h",
            used_percent=91.0,
            threshold=90.0,
            resets_at=back,
        ),
        NewAlert(at=now - 20, kind="stale", message="m", account_id=account_id, account="Ops seat"),
        NewAlert(
            at=now - 10,
            kind="limit_hit",
            message="m",
            account_id=account_id,
            account="Ops seat",
            limit_id="codex",
            resets_at=back,
        ),
    ]
    store = app_of(server)[STORE]
    await store.record_alerts(real, [], [])
    for _ in range(handlers.RECENT_ALERTS + 1):  # more test alerts than the list has slots
        await admin.ok("POST", "api/v1/alerts/test")

    items = alert_items(await overview(admin))
    assert [re.search(r'data-kind="(\w+)"', i).group(1) for i in items] == [  # type: ignore[union-attr]
        "limit_hit",
        "stale",
        "threshold",
    ]
    hit, stale, crossed = items
    assert 'class="alert severity-critical"' in hit
    assert 'class="alert severity-info"' in stale
    assert 'class="alert severity-warning"' in crossed
    assert re.fullmatch(
        r"Critical \S+ \S+ \S+ Ops seat: limit reached, back at \d\d:\d\d UTC", text_of(hit)
    ), text_of(hit)
    assert re.fullmatch(
        r"Warning \S+ \S+ \S+ Ops seat: 5-hour window at 91% \(crossed 90%\), "
        r"resets at \d\d:\d\d UTC",
        text_of(crossed),
    ), text_of(crossed)
    assert text_of(stale).startswith("Info ")
    assert text_of(stale).endswith("Ops seat: no new usage data")  # no time: it does not say one
    for item in items:
        assert f'href="/codexgate/accounts/{account_id}"' in item

    chinese = [text_of(i) for i in alert_items(await overview(admin, **{"Accept-Language": "zh"}))]
    assert chinese[0].startswith("严重 ")
    assert "Ops seat：已达上限，" in chinese[0]  # noqa: RUF001 - Chinese punctuation
    assert chinese[1].startswith("提示 ")
    assert chinese[2].startswith("警告 ")

    listed = await admin.ok("GET", "api/v1/alerts?limit=100")
    severities = {(a["kind"], a["severity"]) for a in listed["items"]}
    assert severities == {
        ("limit_hit", "critical"),
        ("stale", "info"),
        ("threshold", "warning"),
        ("test", "test"),
    }

    # Once the account is deleted its alerts stay, and link nowhere.
    await admin.call("DELETE", f"api/v1/accounts/{account_id}")
    items = alert_items(await overview(admin))
    assert len(items) == 3
    assert all("href=" not in item for item in items)
    assert text_of(items[0]) == text_of(hit)  # the name it had, unlinked


async def test_an_alert_of_one_models_limit_names_that_limit(
    server: TestServer, admin: Admin
) -> None:
    account = await admin.ok("POST", "api/v1/accounts", 201, json={"token": JWTS["seat_b"]})
    now = time.time()

    def alert(ago: float, kind: AlertKind, **more: Any) -> NewAlert:
        return NewAlert(
            at=now - ago,
            kind=kind,
            message="m",
            account_id=account["id"],
            account="Ops seat",
            **more,
        )

    alerts = [
        alert(30, "limit_hit", limit_id="codex_other"),
        alert(
            20, "threshold", limit_id="codex_other", window="5h", used_percent=91.0, threshold=90
        ),
        alert(10, "limit_hit", limit_id="codex"),
    ]
    await app_of(server)[STORE].record_alerts(alerts, [], [])
    main, crossed, other = [text_of(i) for i in alert_items(await overview(admin))]
    assert main.endswith("Ops seat: limit reached")  # the seat's own limit needs no name
    assert crossed.endswith("Ops seat: codex_other 5-hour window at 91% (crossed 90%)")
    assert other.endswith("Ops seat: codex_other limit reached")
    chinese = [text_of(i) for i in alert_items(await overview(admin, **{"Accept-Language": "zh"}))]
    assert chinese[0].endswith("Ops seat：已达上限")  # noqa: RUF001 - Chinese punctuation
    assert chinese[2].endswith("Ops seat：codex_other 已达上限")  # noqa: RUF001
