"""The overview's Instances panel in headless Chromium, with two real `python -m codexgate`
processes on one SQLite file (as during a rolling restart): both listed, the leader named, and
the one that stops shown as stopped when the page asks again."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from tests.helpers.browser import NewPage, gateway_args, sign_in_page
from tests.helpers.processes import GatewayProcess, health


async def test_the_overview_lists_both_instances_and_the_one_that_stopped(
    tmp_path: Path, upstream_server: TestServer, new_page: NewPage
) -> None:
    args = gateway_args(tmp_path, upstream_server)  # one --db file for both
    (tmp_path / "second").mkdir()
    first = GatewayProcess(args, tmp_path)
    second: GatewayProcess | None = None
    try:
        await first.wait_ready()
        second = GatewayProcess(args, tmp_path / "second")
        await second.wait_ready()
        leader = (await health(first))["instance"]
        other = (await health(second))["instance"]
        # The first to start claims the lease before it serves.
        assert (leader["role"], other["role"]) == ("leader", "standby")
        assert other["leader"] == leader["id"]

        page = await new_page()
        await sign_in_page(page, first)
        panel = page.locator("#instances-panel")
        await expect(panel).to_be_visible()
        await expect(page.locator("#instances-line")).to_be_hidden()
        await expect(page.locator("#instances-count")).to_have_text("2")
        leading = panel.locator(f'[data-instance-id="{leader["id"]}"]')
        standing = panel.locator(f'[data-instance-id="{other["id"]}"]')
        await expect(leading.locator('[data-field="instance-state"]')).to_have_text("Leader")
        await expect(leading.locator('[data-field="instance-this"]')).to_be_visible()
        await expect(standing.locator('[data-field="instance-state"]')).to_have_text("Standby")
        await expect(standing.locator('[data-field="instance-this"]')).to_be_hidden()
        await expect(standing.locator('[data-field="instance-age"]')).to_have_text(
            re.compile(r"^last heartbeat \d+s ago$")
        )

        # The second stops (its row says so); a tab shown again asks at once, not in 10 s.
        assert await second.terminate() == 0
        await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        stopped = panel.locator(f'[data-instance-id="{other["id"]}"]')
        await expect(stopped.locator('[data-field="instance-state"]')).to_have_text(
            "Stopped", timeout=3000
        )
        await expect(page.locator("#instances-count")).to_have_text("1")
        await expect(stopped).to_have_class("instance state-stopped")
    finally:
        first.kill()
        if second is not None:
            second.kill()
