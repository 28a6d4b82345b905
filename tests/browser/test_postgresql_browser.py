"""The dashboard in headless Chromium on a gateway whose data is in PostgreSQL: live updates, and
a restart whose missed events the page gets back by replay from PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from tests.helpers.browser import NewPage, gateway_args, proxied_turn, sign_in_page
from tests.helpers.processes import GatewayProcess


def _on_postgresql(tmp_path: Path, upstream_server: TestServer, url: str) -> list[str]:
    args = gateway_args(tmp_path, upstream_server)
    args[args.index("--db") + 1] = url
    return args


async def test_the_dashboard_goes_live_and_replays_a_restart_on_postgresql(
    tmp_path: Path, upstream_server: TestServer, postgres_database: str, new_page: NewPage
) -> None:
    first = GatewayProcess(_on_postgresql(tmp_path, upstream_server, postgres_database), tmp_path)
    try:
        await first.wait_ready()
        page = await new_page()
        await sign_in_page(page, first)
        status_line = page.locator("#live-status")
        await expect(status_line).to_have_attribute("data-state", "live")
        await proxied_turn(first, "seat_b")
        await expect(page.locator("#kpi-accounts")).to_have_text("1")
        await first.terminate()
    finally:
        first.kill()
    await expect(status_line).to_have_attribute("data-state", "reconnecting")
    (tmp_path / "restarted").mkdir()
    restarted = GatewayProcess(
        _on_postgresql(tmp_path, upstream_server, postgres_database),
        tmp_path / "restarted",
        port=first.port,
    )
    try:
        await restarted.wait_ready()
        await proxied_turn(restarted)
        # Before the page reconnects (3 s between attempts): only the replay from its
        # Last-Event-ID, read from PostgreSQL, can bring it this turn.
        assert await status_line.get_attribute("data-state") == "reconnecting"
        await expect(status_line).to_have_attribute("data-state", "live")
        await expect(page.locator("#kpi-accounts")).to_have_text("2")
        await expect(page.locator("#kpi-requests")).to_have_text("2")
    finally:
        restarted.kill()
