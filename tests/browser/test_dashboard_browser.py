"""The dashboard in headless Chromium: sign-in, live updates, countdowns, managing accounts,
escaping, languages and small screens."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Locator, Page, expect

from codexgate.storage import open_storage
from tests.helpers import many_accounts
from tests.helpers.browser import (
    NewPage,
    admin_call,
    gateway_args,
    proxied_turn,
    running_gateway,
    screenshot,
    sign_in_page,
)
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess

XSS_NAME = "<img src=x onerror=alert(1)>"


def card(page: Page, title: str) -> Locator:
    """The card whose title is exactly `title`."""
    return page.locator("article.card").filter(
        has=page.locator('[data-field="title"]', has_text=re.compile(f"^{re.escape(title)}$"))
    )


async def open_menu(account_card: Locator) -> None:
    """Open a card's menu (Rename, Refresh now, Delete)."""
    await account_card.locator('[data-field="menu"] > summary').click()


async def test_sign_in_then_the_dashboard_goes_live(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await page.goto(gateway_process.base + "/codexgate/")
    await expect(page).to_have_url(gateway_process.base + "/codexgate/login?next=/codexgate/")
    await page.get_by_label("Admin token").fill("wrong-token-wrong-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    await sign_in_page(page, gateway_process)
    await expect(page.locator("#kpi-accounts")).to_have_text("0")
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#no-accounts")).to_be_visible()


async def test_a_proxied_request_updates_its_card_within_a_second(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    await proxied_turn(gateway_process)
    done = time.monotonic()
    five_hour = page.locator('article.card [data-window="5h"] [data-field="pct"]')
    await expect(five_hour).to_have_text("46% used", timeout=1000)
    assert time.monotonic() - done < 1.0
    card_element = page.locator("article.card")
    await expect(card_element.locator('[data-window="7d"] [data-field="pct"]')).to_have_text(
        "15% used"
    )
    await expect(card_element.locator('[data-field="source"]')).to_have_text(
        "from response headers"
    )
    await expect(card_element.locator('[data-field="title"]')).to_have_text("alice@example.com")
    await expect(page.locator("#kpi-accounts")).to_have_text("1")
    await expect(page.locator("#kpi-requests")).to_have_text("1")
    await screenshot(page, "dashboard-live-desktop.png")


async def test_countdowns_tick_every_second(
    fake_soon: None, gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    await proxied_turn(gateway_process)
    page = await new_page()
    await sign_in_page(page, gateway_process)
    countdown = page.locator('article.card [data-window="5h"] > .countdown')
    first = await countdown.text_content()
    assert first is not None
    assert re.fullmatch(r"resets \d\d:\d\d, in 1m( \d+s)?", first)  # the reader's clock time
    await expect(countdown).not_to_have_text(first, timeout=2500)
    second = await countdown.text_content()
    assert second is not None
    assert re.fullmatch(r"resets \d\d:\d\d, in 1m( \d+s)?", second)
    # The freshness line ages with the clock too.
    await expect(page.locator('article.card [data-field="age"]')).to_have_text(
        re.compile(r"updated \d+s ago"), timeout=8000
    )


async def test_add_rename_and_delete_an_account(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await sign_in_page(page, gateway_process, "/codexgate/accounts/manage")
    await page.get_by_label("Name (optional)").fill("Team seat")
    await page.get_by_label("Access token").fill("sk-not-a-jwt-but-a-token-0001")
    await page.get_by_role("button", name="Add account").click()
    await expect(page.locator("#notices")).to_have_text("Added Team seat.")
    await expect(page.get_by_label("Access token")).to_have_value("")
    status, listed = await admin_call(gateway_process, "GET", "/accounts")
    assert status == 200
    assert isinstance(listed, dict)
    assert [a["display_name"] for a in listed["accounts"]] == ["Team seat"]
    # The page never holds the token after adding it.
    assert "sk-not-a-jwt-but-a-token-0001" not in await page.content()

    await page.goto(gateway_process.base + "/codexgate/")
    team = card(page, "Team seat")
    await expect(team).to_have_count(1)
    await open_menu(team)
    await team.get_by_role("button", name="Rename").click()
    name_input = team.get_by_label("Display name")
    await expect(name_input).to_be_focused()
    await name_input.fill("Renamed seat")
    await name_input.press("Enter")
    await expect(card(page, "Renamed seat")).to_have_count(1)
    await expect(page.locator("#notices")).to_have_text("Renamed to Renamed seat.")
    status, listed = await admin_call(gateway_process, "GET", "/accounts")
    assert isinstance(listed, dict)
    assert [a["display_name"] for a in listed["accounts"]] == ["Renamed seat"]

    renamed = card(page, "Renamed seat")
    await open_menu(renamed)
    await renamed.get_by_role("button", name="Delete").click()
    dialog = page.locator("#delete-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("heading")).to_have_text("Delete Renamed seat?")
    await expect(dialog).to_contain_text("all of its usage history and request log")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(renamed).to_have_count(1)
    await open_menu(renamed)
    await renamed.get_by_role("button", name="Delete").click()
    await dialog.get_by_role("button", name="Delete account and history").click()
    await expect(page.locator("article.card")).to_have_count(0)
    await expect(page.locator("#notices")).to_have_text("Deleted Renamed seat.")
    await expect(page.locator("#no-accounts")).to_be_visible()
    status, listed = await admin_call(gateway_process, "GET", "/accounts")
    assert listed == {"accounts": [], "next_cursor": None}


async def test_api_errors_show_in_the_page(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in_page(page, gateway_process, "/codexgate/accounts/manage")
    await page.get_by_label("Access token").fill("x" * 20000)  # over the API's limit
    await page.get_by_role("button", name="Add account").click()
    await expect(page.locator("#errors")).to_contain_text("codexgate answered: token must be")
    assert dialogs == []


async def test_a_hostile_name_is_text_and_runs_nothing(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    status, _ = await admin_call(
        gateway_process, "POST", "/accounts", {"name": XSS_NAME, "token": "token-one-0001"}
    )
    assert status == 201
    page = await new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in_page(page, gateway_process)
    await expect(card(page, XSS_NAME)).to_have_count(1)
    assert await page.locator("article.card img").count() == 0
    # Added through the Manage accounts view, the name stays text as well, there and here.
    await page.goto(gateway_process.base + "/codexgate/accounts/manage")
    await page.get_by_label("Name (optional)").fill(XSS_NAME + "2")
    await page.get_by_label("Access token").fill("token-two-0002")
    await page.get_by_role("button", name="Add account").click()
    await expect(page.locator('#manage-list [data-field="title"]')).to_have_text(
        [XSS_NAME, XSS_NAME + "2"]
    )
    assert await page.locator("main img").count() == 0
    await page.goto(gateway_process.base + "/codexgate/")
    await expect(card(page, XSS_NAME + "2")).to_have_count(1)
    await open_menu(card(page, XSS_NAME))
    await card(page, XSS_NAME).get_by_role("button", name="Delete").click()
    await expect(page.locator("#delete-dialog").get_by_role("heading")).to_have_text(
        f"Delete {XSS_NAME}?"
    )
    await page.locator("#delete-dialog").get_by_role("button", name="Cancel").click()
    await page.goto(gateway_process.base + "/codexgate/accounts/1")
    await expect(page.locator('[data-field="title"]')).to_have_text(XSS_NAME)
    assert await page.locator("main img").count() == 0
    await asyncio.sleep(0.3)  # an injected handler would have fired by now
    assert dialogs == []


async def test_the_language_switch_changes_and_remembers_the_strings(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await expect(page.get_by_role("heading", name="Accounts", exact=True)).to_be_visible()
    await page.get_by_role("link", name="简体中文").click()
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.get_by_role("heading", name="账号", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_text("实时")
    await screenshot(page, "dashboard-zh.png")
    await page.reload()
    await expect(page.get_by_role("link", name="管理账号")).to_be_visible()
    await page.get_by_role("link", name="English").click()
    await expect(page.get_by_role("link", name="Manage accounts")).to_be_visible()


async def test_accept_language_chooses_chinese(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page(locale="zh-CN")
    await page.goto(gateway_process.base + "/codexgate/login")
    await expect(page.get_by_label("管理令牌")).to_be_visible()


@pytest.mark.seeded
async def test_phone_width_has_no_horizontal_scroll_and_screenshots(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    await proxied_turn(gateway_process)
    await admin_call(
        gateway_process,
        "POST",
        "/accounts",
        {"name": "A very long display name without any spaces" * 2, "token": "token-0003"},
    )
    for width, height, name in ((390, 844, "phone"), (360, 740, "small-phone")):
        page = await new_page(width=width, height=height)
        await sign_in_page(page, gateway_process)
        await expect(page.locator("article.card")).to_have_count(2)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{width} px wide scrolls sideways by {overflow} px"
        await screenshot(page, f"dashboard-{name}.png")
        await (
            card(page, "alice@example.com").get_by_role("link", name="History and requests").click()
        )
        await expect(page.locator("figure.chart")).to_have_count(2)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the account page at {width} px scrolls sideways by {overflow}"
        await screenshot(page, f"account-{name}.png")
    page = await new_page(scheme="dark")
    await sign_in_page(page, gateway_process)
    await screenshot(page, "dashboard-desktop-dark.png")
    await card(page, "alice@example.com").get_by_role("link", name="History and requests").click()
    await screenshot(page, "account-desktop-dark.png")


async def test_a_reconnect_replays_what_was_missed(
    tmp_path: Path,
    upstream_server: TestServer,
    gateway_process: GatewayProcess,
    new_page: NewPage,
) -> None:
    page = await new_page()
    await sign_in_page(page, gateway_process)
    status_line = page.locator("#live-status")
    await expect(status_line).to_have_attribute("data-state", "live")
    await gateway_process.terminate()
    await expect(status_line).to_have_attribute("data-state", "reconnecting")
    (tmp_path / "restarted").mkdir()
    restarted = GatewayProcess(
        gateway_args(tmp_path, upstream_server),
        tmp_path / "restarted",
        port=gateway_process.port,  # the same address, as after a restart
    )
    try:
        await restarted.wait_ready()
        await proxied_turn(restarted)
        # The page has not reconnected yet (the feed asks for 3 s between attempts), so the
        # turn can only reach it by the replay from its Last-Event-ID.
        assert await status_line.get_attribute("data-state") == "reconnecting"
        await expect(status_line).to_have_attribute("data-state", "live")
        await expect(
            page.locator('article.card [data-window="5h"] [data-field="pct"]')
        ).to_have_text("46% used")
        await expect(page.locator("#kpi-requests")).to_have_text("1")
    finally:
        restarted.kill()


async def test_view_switch_and_sorting_apply_at_once_and_are_remembered(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    await admin_call(
        gateway_process, "POST", "/accounts", {"name": "Aardvark", "token": "token-0004"}
    )
    await proxied_turn(gateway_process)
    page = await new_page()
    await sign_in_page(page, gateway_process)
    titles = page.locator('article.card [data-field="title"]')
    await expect(titles).to_have_text(["Aardvark", "alice@example.com"])
    await page.get_by_label("Sort by").select_option("used")
    await expect(titles).to_have_text(["alice@example.com", "Aardvark"])
    five_hour = page.locator('article.card [data-window="5h"] [data-field="pct"]').first
    await expect(five_hour).to_have_text("46% used")
    await page.get_by_label("Remaining").check()
    await expect(five_hour).to_have_text("54% left")
    fill = page.locator('article.card [data-window="5h"] .fill').first
    await expect(fill).to_have_attribute("width", "54")
    await page.goto(gateway_process.base + "/codexgate/")  # no query: the saved choices apply
    await expect(titles).to_have_text(["alice@example.com", "Aardvark"])
    await expect(five_hour).to_have_text("54% left")
    await expect(page.get_by_label("Remaining")).to_be_checked()


async def test_managing_an_account_works_from_the_keyboard(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    await admin_call(
        gateway_process, "POST", "/accounts", {"name": "Keyboard", "token": "token-0005"}
    )
    page = await new_page()
    await sign_in_page(page, gateway_process)
    seat = card(page, "Keyboard")
    menu = seat.locator('[data-field="menu"] > summary')
    await expect(menu).to_have_attribute("aria-describedby", "card-title-1")
    rename = seat.get_by_role("button", name="Rename")
    await menu.focus()
    await page.keyboard.press("Enter")  # opens the menu
    await page.keyboard.press("Tab")
    await expect(rename).to_be_focused()
    await expect(rename).to_have_attribute("aria-describedby", "card-title-1")
    await page.keyboard.press("Enter")
    name_input = seat.get_by_label("Display name")
    await expect(name_input).to_be_focused()
    await page.keyboard.type(" seat")
    await page.keyboard.press("Escape")  # cancels: the name stays, focus goes back
    await expect(name_input).to_be_hidden()
    await expect(menu).to_be_focused()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await page.keyboard.press("End")
    await page.keyboard.type(" seat")
    await page.keyboard.press("Enter")
    await expect(card(page, "Keyboard seat")).to_have_count(1)
    menu = card(page, "Keyboard seat").locator('[data-field="menu"] > summary')
    await expect(menu).to_be_focused()
    await page.keyboard.press("Enter")
    delete = card(page, "Keyboard seat").get_by_role("button", name="Delete")
    await delete.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("#delete-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(menu).to_be_focused()
    status, listed = await admin_call(gateway_process, "GET", "/accounts")
    assert status == 200
    assert isinstance(listed, dict)
    assert [a["display_name"] for a in listed["accounts"]] == ["Keyboard seat"]


async def test_an_alert_appears_in_the_recent_alerts_live(
    fake: FakeUpstream, gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await expect(page.locator("#no-alerts")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    fake.response_headers["x-codex-primary-used-percent"] = "91"
    await proxied_turn(gateway_process)
    alert = page.locator("#alert-list li").first
    await expect(alert).to_have_text(
        re.compile(r"alice@example\.com: 5-hour window at 91% \(crossed 90%\)")
    )
    await expect(page.locator("#no-alerts")).to_be_hidden()
    await page.get_by_role("link", name="简体中文").click()
    await expect(page.locator("#alert-list li").first).to_contain_text("超过 90%")


async def test_send_a_test_alert_from_the_page(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await page.get_by_role("button", name="Send a test alert").click()
    # No webhook is configured here: the page says so; a test alert takes no recent-alert slot.
    await expect(page.locator("#notices")).to_contain_text("No webhook is set up")
    await page.reload()
    await expect(page.locator("#no-alerts")).to_be_visible()
    await expect(page.locator("#alert-list li")).to_have_count(0)


@pytest.fixture
async def many_gateway(
    tmp_path: Path, upstream_server: TestServer
) -> AsyncIterator[GatewayProcess]:
    """codexgate on a database that already holds 120 accounts with usage."""
    db = tmp_path / "codexgate.db"
    store = await open_storage(db)
    await store.close()
    await asyncio.to_thread(many_accounts.fill, db, 120, time.time())
    async with running_gateway(tmp_path, upstream_server) as process:
        yield process


async def test_a_page_of_many_accounts_keeps_its_cards_and_counts_every_account(
    many_gateway: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await sign_in_page(page, many_gateway)
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    cards = page.locator("#cards article.card")
    await expect(cards).to_have_count(50)
    await expect(page.locator("#kpi-accounts")).to_have_text("120")
    near = await page.locator("#kpi-near").text_content()
    at = await page.locator("#kpi-at").text_content()
    # A turn creates a new account (not on this first page of three): counted, no card added.
    await proxied_turn(many_gateway)
    await expect(page.locator("#kpi-accounts")).to_have_text("121")
    await page.wait_for_timeout(1500)  # the summary is redrawn every second
    await expect(cards).to_have_count(50)
    await expect(page.locator("#kpi-near")).to_have_text(near or "")
    await expect(page.locator("#kpi-at")).to_have_text(at or "")
    # The pager's plain links, then a sort that goes back to the first page of the new order.
    await page.get_by_role("link", name="Next →").click()
    await expect(page).to_have_url(re.compile(r"page=2&sort=name"))
    await expect(page.locator("#accounts-page-status")).to_contain_text("accounts 51 to 100")
    await expect(cards).to_have_count(50)
    await page.get_by_label("Sort by").select_option("used")
    await expect(page).to_have_url(re.compile(r"page=1&sort=used"))
    await expect(page.locator("#kpi-accounts")).to_have_text("121")
    await expect(cards).to_have_count(50)
