"""The account page in headless Chromium: its heading, and history charts that fit the windows
(the current window by default, dates on the axis, reset and "now" markers, labelled thresholds
and a table of the values)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.storage import open_storage
from tests.helpers.browser import NewPage, running_gateway, screenshot, sign_in_page
from tests.helpers.builders import seat_identity
from tests.helpers.processes import GatewayProcess

HOUR = 3600
# seat_a's 5-hour window opened three hours ago and resets in two.
OPENED_AGO = 3 * HOUR
RESETS_IN = 2 * HOUR
# Every 20 minutes since the window opened: 0, 4, 8, ... used; 36 % at the newest.
STEP = 1200
STEPS = OPENED_AGO // STEP


async def seed_current_window(db: Path) -> float:
    """seat_a's reports: the previous window up to 97 %, then this window's climb; its reset."""
    identity = seat_identity("seat_a")
    now = time.time()
    resets_at = int(now + RESETS_IN)
    opened = resets_at - 5 * HOUR
    snapshots = []
    for index in range(10):  # the previous window, high: it must not show in this one
        at = opened - 5 * HOUR + index * 1800
        report = _report(60.0 + index * 4, opened, 10.0)
        snapshots.append(Snapshot(identity, at, "headers", report, 200))
    for index in range(STEPS):
        at = opened + 60 + index * STEP
        report = _report(index * 4.0, resets_at, 12.0 + index * 0.1)
        snapshots.append(Snapshot(identity, at, "headers", report, 200))
    store = await open_storage(db)
    try:
        await store.record(snapshots)
    finally:
        await store.close()
    return resets_at


def _report(five_hour: float, five_hour_reset: int, seven_day: float) -> UsageReport:
    windows = (
        Window("primary", "5h", "length", five_hour, 300, five_hour_reset),
        Window("secondary", "7d", "length", seven_day, 10080, five_hour_reset + 4 * 86400),
    )
    return UsageReport(limits=(LimitReport("codex", None, windows),), plan_type="plus")


@pytest.fixture
async def seeded_gateway(
    tmp_path: Path, upstream_server: TestServer
) -> AsyncIterator[tuple[GatewayProcess, float]]:
    """codexgate on a database holding seat_a's current 5-hour window; and that window's reset."""
    resets_at = await seed_current_window(tmp_path / "codexgate.db")
    async with running_gateway(tmp_path, upstream_server) as process:
        yield process, resets_at


async def test_the_five_hour_chart_shows_the_current_window_with_markers_and_a_table(
    seeded_gateway: tuple[GatewayProcess, float], new_page: NewPage
) -> None:
    gateway, resets_at = seeded_gateway
    page = await new_page()
    await sign_in_page(page, gateway, "/codexgate/accounts/1")

    await expect(page.get_by_role("heading", level=1)).to_have_text("alice@example.com")
    await expect(page.get_by_role("link", name="current window")).to_have_attribute(
        "aria-current", "true"
    )
    chart = page.locator('figure.chart[data-window="5h"]')
    svg = chart.get_by_role("img", name="5-hour window, used percent over the current window")
    await expect(svg).to_be_visible()
    # The chart spans the window: from its start to its reset.
    assert float(await svg.get_attribute("data-end") or 0) == resets_at
    assert float(await svg.get_attribute("data-start") or 0) == resets_at - 5 * HOUR

    # The reset marker at the right edge; "now" three fifths across, moving with the clock.
    reset = chart.locator('[data-marker="reset"] line')
    await expect(reset).to_have_attribute("x1", "600")
    await expect(chart.locator('[data-marker="reset"] text')).to_have_text("reset")
    now_line = chart.locator('[data-marker="now"] line')
    await expect(chart.locator('[data-marker="now"] text')).to_have_text("now")
    assert abs(float(await now_line.get_attribute("x1") or 0) - 360) < 3

    # The threshold lines are labelled; the axis has hourly times, the day on the first one.
    await expect(chart.locator(".threshold-label")).to_have_text(["50%", "80%"])
    ticks = chart.locator(".ticks text")
    await expect(ticks).to_have_count(5)
    kinds = [await tick.get_attribute("data-kind") for tick in await ticks.all()]
    assert kinds[0] == "datetime"
    await expect(ticks.first.locator("tspan")).to_have_count(2)  # the time over its day
    assert set(kinds[1:]) <= {"time", "datetime"}
    await expect(page.locator("#chart-zone")).to_contain_text("Times in your time zone")

    # The line starts in this window: the previous window's 96 % is not carried in.
    path = await chart.locator("path.series").get_attribute("d") or ""
    assert not path.startswith("M 0 ")

    # The table alternative lists every value of the window, reachable by keyboard.
    summary = chart.get_by_text("Show as table")
    await summary.focus()
    await page.keyboard.press("Enter")
    table = chart.get_by_role("table", name="5-hour window: used percent at each change")
    await expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    await expect(rows).to_have_count(STEPS)
    await expect(rows.first.locator("td").nth(1)).to_have_text("0%")
    await expect(rows.last.locator("td").nth(1)).to_have_text(f"{(STEPS - 1) * 4}%")
    await screenshot(page, "account-current-window.png")


async def test_the_other_ranges_stay_and_mark_the_reset_that_opened_the_window(
    seeded_gateway: tuple[GatewayProcess, float], new_page: NewPage
) -> None:
    gateway, _ = seeded_gateway
    page = await new_page(width=390, height=844)
    await sign_in_page(page, gateway, "/codexgate/accounts/1")
    for name in ("last 24 hours", "last 7 days", "last 30 days"):
        await expect(page.get_by_role("link", name=name)).to_be_visible()
    await page.get_by_role("link", name="last 24 hours").click()
    chart = page.locator('figure.chart[data-window="5h"]')
    await expect(chart.get_by_role("img")).to_have_accessible_name(
        "5-hour window, used percent over the last 24 hours"
    )
    # The window opened 3 h before now on a 24 h axis: 21/24 of the way across.
    opened = chart.locator('[data-marker="reset"] line')
    await expect(opened).to_have_count(1)
    assert abs(float(await opened.get_attribute("x1") or 0) - 525) < 2
    # Now is the right edge of a range back from now: the marker stays there.
    await expect(chart.locator('[data-marker="now"] line')).to_have_attribute("x1", "600")
    await page.wait_for_timeout(1500)
    await expect(chart.locator('[data-marker="now"]')).to_be_visible()
    # On a phone, the charts and their open tables fit the width.
    await chart.get_by_text("Show as table").click()
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the account page at 390 px scrolls sideways by {overflow} px"
    await screenshot(page, "account-24h-phone.png")


async def test_without_javascript_the_axis_says_utc(
    seeded_gateway: tuple[GatewayProcess, float], browser: Browser
) -> None:
    gateway, _ = seeded_gateway
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in_page(page, gateway, "/codexgate/accounts/1")
        await expect(page.locator("#chart-zone")).to_have_text("Times in UTC.")
        first = page.locator('figure.chart[data-window="5h"] .ticks text').first
        hour = time.gmtime(_first_hour())
        # The time over its day, in UTC.
        await expect(first.locator("tspan")).to_have_text(
            [time.strftime("%H:00", hour), time.strftime("%m-%d", hour)]
        )
    finally:
        await context.close()


def _first_hour() -> float:
    """The first whole UTC hour after the seeded window opened (the first tick)."""
    opened = time.time() + RESETS_IN - 5 * HOUR
    return (opened // HOUR + 1) * HOUR
