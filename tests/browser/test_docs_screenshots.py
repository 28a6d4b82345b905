"""The screenshots in docs/dashboard.md: a new user's three accounts, first screen, two sizes.

The scene is the issue's: three accounts after 20 minutes of rising use, one of them at its
limit. Each page is captured as its first screen (no scrolling) at 1280x900 and 390x844 into
test-artifacts/docs-*.png; `make screenshots` copies them to docs/images/.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from aiohttp.test_utils import TestServer

from codexgate.core.models import LimitHit, LimitReport, Snapshot, UsageReport, Window
from codexgate.storage import open_storage
from tests.helpers.browser import ARTIFACTS, TIMEOUT_MS, NewPage, running_gateway, sign_in_page
from tests.helpers.builders import seat_identity
from tests.helpers.processes import GatewayProcess

SIZES: Final = {"desktop": (1280, 900), "phone": (390, 844)}
# (seat, display name, 5h used at the start and after 20 minutes, weekly used)
SEATS: Final = (
    ("seat_a", "Work (Plus)", 40.0, 100.0, 62.0),
    ("seat_b", "Team seat", 12.0, 38.0, 21.0),
    ("personal", "Personal", 3.0, 9.0, 71.0),
)

SEATS_NAMES: Final = {seat: name for seat, name, *_ in SEATS}


async def seed_three_accounts(db: Path) -> None:
    """Twenty minutes of rising use on three seats, the first one ending at its limit."""
    now = time.time()
    five_hour_reset = int(now + 1 * 3600 + 43 * 60)
    weekly_reset = int(now + 4 * 86400 + 5 * 3600)
    store = await open_storage(db)
    try:
        for seat, _, start, end, weekly in SEATS:
            identity = seat_identity(seat)
            items: list[Snapshot] = []
            for step in range(11):
                at = now - 1200 + step * 120
                used = round(start + (end - start) * step / 10, 1)
                windows = (
                    Window("primary", "5h", "length", used, 300, five_hour_reset),
                    Window("secondary", "7d", "length", weekly, 10080, weekly_reset),
                )
                hit = LimitHit("usage_limit_reached", five_hour_reset) if used >= 100 else None
                report = UsageReport(
                    limits=(LimitReport("codex", None, windows),),
                    plan_type="plus",
                    limit_hit=hit,
                )
                if hit is None:
                    items.append(Snapshot(identity, at, "headers", report, 200))
                else:
                    items.append(Snapshot(identity, at, "error", report, 429))
            await store.record(items)
            account, _ = await store.create_account(identity, SEATS_NAMES[seat], now)
            assert account.display_name == SEATS_NAMES[seat]
    finally:
        await store.close()


@pytest.fixture
async def three_accounts(
    tmp_path: Path, upstream_server: TestServer
) -> AsyncIterator[GatewayProcess]:
    """codexgate on a database holding the three accounts."""
    await seed_three_accounts(tmp_path / "codexgate.db")
    async with running_gateway(tmp_path, upstream_server) as process:
        yield process


@pytest.mark.parametrize("size", sorted(SIZES))
async def test_the_docs_screenshots_show_the_accounts_on_the_first_screen(
    three_accounts: GatewayProcess, new_page: NewPage, size: str
) -> None:
    width, height = SIZES[size]
    page = await new_page(width=width, height=height)
    await sign_in_page(page, three_accounts)
    cards = page.locator("article.card")
    await cards.first.wait_for(timeout=TIMEOUT_MS)
    assert await cards.count() == len(SEATS)
    first_bar = await cards.first.locator(".bar").first.bounding_box()
    assert first_bar is not None
    assert first_bar["y"] + first_bar["height"] <= height, "the first card's bar is below the fold"
    await page.screenshot(path=str(_artifact(f"docs-overview-{size}.png")))
    await cards.first.locator("a").first.click()
    await page.wait_for_load_state("load")
    await page.screenshot(path=str(_artifact(f"docs-account-{size}.png")))


def _artifact(name: str) -> Path:
    """Where a docs screenshot goes (the first screen only: no full-page capture)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
