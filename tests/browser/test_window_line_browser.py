"""What one window line says, in headless Chromium against a real `python -m codexgate`: reset
clock times in the browser's time zone and language, a passed reset shown as reset without a
reload, and the card's one forecast line in plain words."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.storage import open_storage
from tests.helpers.browser import (
    TIMEOUT_MS,
    collect_console_error,
    proxied_turn,
    running_gateway,
    sign_in_page,
)
from tests.helpers.builders import seat_identity
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess
from tests.helpers.sessions import ADMIN_TOKEN

WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
# The fullwidth brackets of the Chinese strings.
OPEN, CLOSE = "\uff08", "\uff09"


async def open_page(
    browser: Browser, errors: list[str], *, timezone: str, locale: str = "en-US"
) -> Page:
    """A page in a fresh context with the given time zone and language; its script errors go
    to `errors`."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale=locale, timezone_id=timezone
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: collect_console_error(message, errors))
    return page


def local(at: float, zone: str) -> datetime:
    return datetime.fromtimestamp(at, ZoneInfo(zone))


def reset_times(fake: FakeUpstream) -> tuple[int, int]:
    """The 5h and weekly reset times the fake upstream reports."""
    headers = fake.response_headers
    return int(headers["x-codex-primary-reset-at"]), int(headers["x-codex-secondary-reset-at"])


@pytest.mark.parametrize(
    ("zone", "locale"), [("Europe/Berlin", "en-US"), ("Asia/Shanghai", "zh-CN")]
)
async def test_resets_show_the_local_clock_time_and_the_countdown(
    zone: str,
    locale: str,
    fake: FakeUpstream,
    gateway_process: GatewayProcess,
    browser: Browser,
) -> None:
    await proxied_turn(gateway_process)
    five_hour_at, weekly_at = reset_times(fake)
    errors: list[str] = []
    page = await open_page(browser, errors, timezone=zone, locale=locale)
    if locale == "en-US":
        await sign_in_page(page, gateway_process)
    else:
        await _sign_in_zh(page, gateway_process)
    card = page.locator("article.card").first
    five_hour = card.locator('[data-window="5h"] > .countdown')
    weekly = card.locator('[data-window="7d"] > .countdown')
    soon, later = local(five_hour_at, zone), local(weekly_at, zone)
    if locale == "en-US":
        await expect(five_hour).to_have_text(re.compile(rf"resets {soon:%H:%M}, in 2h (29|30)m"))
        await expect(weekly).to_have_text(re.compile(rf"resets {later:%a %H:%M}, in 3d 12h"))
    else:
        await expect(five_hour).to_have_text(
            re.compile(rf"{soon:%H:%M} 重置{OPEN}2小时(29|30)分后{CLOSE}")
        )
        weekday = WEEKDAYS_ZH[later.weekday()]
        await expect(weekly).to_have_text(
            re.compile(rf"{weekday} {later:%H:%M} 重置{OPEN}3天12小时后{CLOSE}")
        )
    # The UTC times the server wrote are replaced with local ones.
    await expect(card.locator(".countdown", has_text="UTC")).to_have_count(0)
    await page.context.close()
    assert errors == []


async def _sign_in_zh(page: Page, gateway: GatewayProcess) -> None:
    """Sign in on the Chinese sign-in form."""
    await page.goto(gateway.base + "/codexgate/")
    await page.get_by_label("管理令牌").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url(gateway.base + "/codexgate/")


async def test_a_window_whose_reset_passes_shows_as_reset_without_a_reload(
    fake: FakeUpstream, gateway_process: GatewayProcess, browser: Browser
) -> None:
    resets_at = int(time.time()) + 8
    fake.response_headers["x-codex-primary-reset-at"] = str(resets_at)
    await proxied_turn(gateway_process)
    errors: list[str] = []
    page = await open_page(browser, errors, timezone="Europe/Berlin")
    await sign_in_page(page, gateway_process)
    window = page.locator('article.card [data-window="5h"]')
    await expect(window.locator('[data-field="pct"]')).to_have_text("46% used")
    await expect(window.locator(".countdown")).to_have_text(
        re.compile(r"resets \d\d:\d\d, in \d+s")
    )
    # The reset time passes with no request since: the window is reset, and says it was inferred.
    when = local(resets_at, "Europe/Berlin")
    await expect(window.locator(".countdown")).to_have_text(
        f"reset at {when:%H:%M} · no request since", timeout=15_000
    )
    await expect(window.locator('[data-field="pct"]')).to_have_text("0% used")
    await expect(window).to_have_attribute("data-reset-inferred", "true")
    await expect(window.locator(".fill")).to_have_attribute("width", "0")
    # The weekly window, still ahead, is as reported.
    await expect(page.locator('article.card [data-window="7d"] [data-field="pct"]')).to_have_text(
        "15% used"
    )
    await page.context.close()
    assert errors == []


async def seed_climb(db: Path, now: float) -> None:
    """seat_a's 5h window over the last hour: 10 % to 40 %, a report every 5 minutes (30 %/h);
    it resets in 4 hours, so at this pace it runs out in about 2 hours, 2 hours before."""
    resets_at = int(now + 4 * 3600)
    items = []
    for step in range(13):
        used = 10.0 + step * 2.5
        windows = (Window("primary", "5h", "length", used, 300, resets_at),)
        report = UsageReport(limits=(LimitReport("codex", None, windows),), plan_type="plus")
        items.append(Snapshot(seat_identity("seat_a"), now - 3600 + step * 300, "headers", report))
    store = await open_storage(db)
    try:
        await store.record(items)
    finally:
        await store.close()


@pytest.fixture
async def climbing_gateway(
    tmp_path: Path, upstream_server: TestServer
) -> AsyncIterator[GatewayProcess]:
    """codexgate on a database whose one account's 5h window climbs at 30 %/h."""
    await seed_climb(tmp_path / "codexgate.db", time.time())
    async with running_gateway(tmp_path, upstream_server) as process:
        yield process


async def test_the_card_tells_one_forecast_in_plain_words_and_limit_reached_at_100(
    fake: FakeUpstream, climbing_gateway: GatewayProcess, browser: Browser
) -> None:
    errors: list[str] = []
    page = await open_page(browser, errors, timezone="Asia/Shanghai")
    await sign_in_page(page, climbing_gateway)
    card = page.locator("article.card").first
    line = card.locator('[data-field="forecast-line"]:not([hidden])')
    await expect(line).to_have_count(1)
    await expect(line).to_have_text(
        re.compile(
            r"At this pace the 5-hour window runs out at \d\d:\d\d, \dh( \d+m)? before it resets"
        )
    )
    text = await card.text_content()
    assert text is not None
    for jargon in ("%/h", "pace ", "sustainable", "not enough data", " , "):
        assert jargon not in text.replace("At this pace", "")
    await expect(card.locator('[data-field="limit-hit"]')).to_be_hidden()
    # The window reaches 100 %: no forecast any more, the card says when the limit is back.
    fake.response_headers["x-codex-primary-used-percent"] = "100"
    five_hour_at, _ = reset_times(fake)
    await proxied_turn(climbing_gateway)
    back = local(five_hour_at, "Asia/Shanghai")
    await expect(card.locator('[data-field="limit-hit"]')).to_have_text(
        re.compile(rf"Limit reached, back at {back:%H:%M} \(in 2h (29|30)m( \d+s)?\)")
    )
    await expect(card.locator('[data-field="forecast-line"]:not([hidden])')).to_have_count(0)
    await page.context.close()
    assert errors == []
