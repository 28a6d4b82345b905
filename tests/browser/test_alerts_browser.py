"""Alerts people can scan, in headless Chromium against a real `python -m codexgate`: each alert's
severity as a class and a word, a link to its account (gone once the account is deleted), when a
reached limit is back, and test alerts kept out of the list, as served and live."""

from __future__ import annotations

import asyncio
import re
import time

import orjson
from aiohttp import ClientSession
from playwright.async_api import expect

from tests.helpers.browser import NewPage, admin_call, proxied_turn, screenshot, sign_in_page
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess
from tests.helpers.tokens import bearer


async def refused_turn(gateway: GatewayProcess, fake: FakeUpstream, resets_at: int) -> None:
    """A turn the upstream refuses as at the limit: 429 usage_limit_reached, the 5h at 100 %."""
    fake.status = 429
    fake.response_headers.pop("content-type", None)  # the 200 sample's; this answer is JSON
    fake.response_headers["x-codex-primary-used-percent"] = "100"
    fake.response_headers["x-codex-primary-reset-at"] = str(resets_at)
    fake.error_body = orjson.dumps(
        {"error": {"type": "usage_limit_reached", "message": "limit", "resets_at": resets_at}}
    )
    async with (
        ClientSession() as session,
        session.post(
            gateway.base + "/backend-api/codex/responses",
            json={"model": "gpt-5-codex", "input": "hi", "stream": True},
            headers={"Authorization": bearer("seat_a")},
        ) as response,
    ):
        assert response.status == 429
        await response.read()


async def test_alerts_show_severity_link_and_when_and_keep_test_alerts_apart(
    gateway_process: GatewayProcess, fake: FakeUpstream, new_page: NewPage
) -> None:
    fake.response_headers["x-codex-primary-used-percent"] = "91"
    await proxied_turn(gateway_process)  # crosses 75 and 90: one alert, naming 90
    deadline = time.monotonic() + 10
    listed: object = None
    while time.monotonic() < deadline:
        _, listed = await admin_call(gateway_process, "GET", "/alerts")
        assert isinstance(listed, dict)
        if listed["items"]:
            break
        await asyncio.sleep(0.05)
    status, sent = await admin_call(gateway_process, "POST", "/alerts/test")
    assert status == 200
    assert isinstance(sent, dict)
    assert sent["alert"]["severity"] == "test"
    assert isinstance(listed, dict)
    assert [item["kind"] for item in listed["items"]] == ["threshold"]
    account_id = next(item["account_id"] for item in listed["items"] if item["account_id"])

    page = await new_page()
    await sign_in_page(page, gateway_process)
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    items = page.locator("#alert-list > li")
    await expect(items).to_have_count(1)  # the test alert takes no slot
    crossed = items.first
    await expect(crossed).to_have_class("alert severity-warning")
    await expect(crossed.locator('[data-field="alert-severity-word"]')).to_have_text("Warning")
    link = crossed.get_by_role("link", name="alice@example.com")
    await expect(link).to_have_attribute("href", f"/codexgate/accounts/{account_id}")
    await expect(crossed.locator('[data-field="alert-text"]')).to_have_text(
        "5-hour window at 91% (crossed 90%)"
    )
    # The server wrote the reset in UTC; the script, in the reader's clock.
    await expect(crossed.locator('[data-field="alert-when"]')).to_have_text(
        re.compile(r"^, resets at \d\d:\d\d$")
    )

    # Live: the test action says how it went; the list does not change.
    await page.get_by_role("button", name="Send a test alert").click()
    await expect(page.locator("#notices")).to_contain_text("No webhook is set up")
    await expect(items).to_have_count(1)

    # Live: a 429 at 100 % is one critical alert that says when the limit is back.
    back = int(time.time()) + 2 * 3600
    await refused_turn(gateway_process, fake, back)
    await expect(items).to_have_count(2)
    hit = items.first
    await expect(hit).to_have_class("alert severity-critical")
    await expect(hit).to_have_attribute("data-kind", "limit_hit")
    await expect(hit.locator('[data-field="alert-severity-word"]')).to_have_text("Critical")
    await expect(hit.locator('[data-field="alert-text"]')).to_have_text("limit reached")
    expected = await page.evaluate(
        """(at) => new Intl.DateTimeFormat("en-US",
             {hour: "2-digit", minute: "2-digit", hourCycle: "h23"}).format(new Date(at * 1000))""",
        back,
    )
    await expect(hit.locator('[data-field="alert-when"]')).to_have_text(f", back at {expected}")
    await expect(hit.get_by_role("link", name="alice@example.com")).to_have_attribute(
        "href", f"/codexgate/accounts/{account_id}"
    )
    # The icon is decoration: the word says it for screen readers and without colour.
    await expect(hit.locator(".severity-icon")).to_have_attribute("aria-hidden", "true")
    await screenshot(page, "alerts-severity-desktop.png")

    # The link opens the account's page.
    await link.click()
    await expect(page).to_have_url(f"{gateway_process.base}/codexgate/accounts/{account_id}")
    await page.go_back()
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

    # Deleted: its alerts stay, and link nowhere, live and as served.
    status, _ = await admin_call(gateway_process, "DELETE", f"/accounts/{account_id}")
    assert status == 204
    await expect(items.get_by_role("link")).to_have_count(0)
    await expect(items).to_have_count(2)
    await page.reload()
    await expect(items).to_have_count(2)
    await expect(items.get_by_role("link")).to_have_count(0)
    await expect(items.first.locator('[data-field="alert-account"]')).to_have_text(
        "alice@example.com"
    )


async def test_severity_words_in_chinese(
    gateway_process: GatewayProcess, fake: FakeUpstream, new_page: NewPage
) -> None:
    fake.response_headers["x-codex-primary-used-percent"] = "96"
    await proxied_turn(gateway_process)
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await page.get_by_role("link", name="简体中文").click()
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    items = page.locator("#alert-list > li")
    await expect(items).to_have_count(1)  # served, or arriving live: one alert either way
    await expect(items.first.locator('[data-field="alert-severity-word"]')).to_have_text("警告")
    await refused_turn(gateway_process, fake, int(time.time()) + 3600)
    await expect(items).to_have_count(2)
    first = items.first
    await expect(first.locator('[data-field="alert-severity-word"]')).to_have_text("严重")
    await expect(first.locator('[data-field="alert-text"]')).to_have_text("已达上限")
    await expect(first.locator('[data-field="alert-when"]')).to_have_text(
        re.compile(r"^，\d\d:\d\d 恢复$")  # noqa: RUF001 - Chinese punctuation
    )
