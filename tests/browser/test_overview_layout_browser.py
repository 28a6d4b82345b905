"""The overview in headless Chromium, accounts first: the cards' bars on the first screen at
desktop and phone sizes, the account to use next (and how it moves live), the "most left" order
kept live, the card menu by keyboard, and the Manage accounts view."""

from __future__ import annotations

import re
import time

from playwright.async_api import Locator, Page, expect

from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.core.rows import NewAlert
from codexgate.storage import open_storage
from tests.helpers.browser import NewPage, admin_call, proxied_turn, screenshot, sign_in_page
from tests.helpers.builders import seat_identity
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess

# (seat, display name, 5h used, weekly used): one at its limit, one nearly used, one with room.
SEATS = (
    ("seat_b", "Exhausted", 100.0, 40.0),
    ("personal", "Nearly used", 90.0, 30.0),
    ("seat_a", "Roomy", 20.0, 30.0),
)


def card(page: Page, title: str) -> Locator:
    """The card whose title is exactly `title`."""
    return page.locator("article.card").filter(
        has=page.locator('[data-field="title"]', has_text=re.compile(f"^{re.escape(title)}$"))
    )


async def seed_three(gateway: GatewayProcess, *, alerts: int = 0) -> None:
    """The three seats of SEATS with their windows (and `alerts` recent alerts), named."""
    now = time.time()
    items = []
    for seat, _, five_hour, weekly in SEATS:
        windows = (
            Window("primary", "5h", "length", five_hour, 300, int(now + 3 * 3600)),
            Window("secondary", "7d", "length", weekly, 10080, int(now + 4 * 86400)),
        )
        report = UsageReport(limits=(LimitReport("codex", None, windows),), plan_type="plus")
        items.append(Snapshot(seat_identity(seat), now - 60, "headers", report, 200))
    store = await open_storage(gateway.log_path.parent / "codexgate.db")
    try:
        await store.record(items)
        fired = [
            NewAlert(at=now - 600 + i, kind="stale", message="quiet", account="Exhausted")
            for i in range(alerts)
        ]
        if fired:
            await store.record_alerts(fired, [], [])
    finally:
        await store.close()
    status, listed = await admin_call(gateway, "GET", "/accounts")
    assert status == 200
    assert isinstance(listed, dict)
    emails = {seat_identity(seat).email: name for seat, name, _, _ in SEATS}
    for account in listed["accounts"]:
        body = {"display_name": emails[account["email"]]}
        status, _ = await admin_call(gateway, "PATCH", f"/accounts/{account['id']}", body)
        assert status == 200


async def assert_first_card_on_the_first_screen(page: Page, height: int) -> None:
    first = page.locator("#cards article.card").first
    bars = first.locator(".window:not([hidden]) .bar")
    assert await bars.count() >= 2
    for index in range(await bars.count()):
        box = await bars.nth(index).bounding_box()
        assert box is not None
        assert box["y"] >= 0
        assert box["y"] + box["height"] <= height, (index, box)


async def test_the_cards_bars_are_on_the_first_screen_on_desktop_and_phone(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    await seed_three(gateway_process, alerts=8)
    for width, height, name in ((1280, 900, "desktop"), (390, 844, "phone")):
        page = await new_page(width=width, height=height)
        await sign_in_page(page, gateway_process)
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        await expect(page.locator("#alert-list > li")).to_have_count(8)
        await assert_first_card_on_the_first_screen(page, height)
        alerts = page.locator("#alerts-panel")
        if width >= 1200:
            # A side column beside the cards, open.
            await expect(alerts).to_have_attribute("open", "")
            panel = await alerts.bounding_box()
            cards = await page.locator("#cards").bounding_box()
            assert panel is not None
            assert cards is not None
            assert panel["x"] >= cards["x"] + cards["width"]
        else:
            # Folded on a phone; one tap opens it.
            await expect(alerts).not_to_have_attribute("open", "")
            await alerts.locator("summary").click()
            await expect(page.locator("#alert-list > li").first).to_be_visible()
        await expect(page.locator("#kpi-accounts")).to_have_text("3")
        await expect(page.locator("#kpi-at")).to_have_text("1")
        await screenshot(page, f"overview-first-screen-{name}.png")


async def test_use_next_marks_the_account_with_room_and_moves_when_usage_changes(
    gateway_process: GatewayProcess, fake: FakeUpstream, new_page: NewPage
) -> None:
    await seed_three(gateway_process)
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    badges = page.locator('article.card [data-field="use-next"]:visible')
    await expect(badges).to_have_count(1)
    await expect(card(page, "Roomy").locator('[data-field="use-next"]')).to_be_visible()
    await expect(page.locator("#use-next-link")).to_have_text("Roomy")
    # "Most left": the roomy one, the nearly used one, the one at its limit.
    await page.locator("#sort-select").select_option("left")
    titles = page.locator('#cards [data-field="title"]')
    await expect(titles).to_have_text(["Roomy", "Nearly used", "Exhausted"])

    # Roomy's 5-hour window climbs to 98 %: the nearly used one (10 % left) is now the best.
    fake.response_headers["x-codex-primary-used-percent"] = "98"
    await proxied_turn(gateway_process, "seat_a")
    await expect(card(page, "Nearly used").locator('[data-field="use-next"]')).to_be_visible()
    await expect(badges).to_have_count(1)
    await expect(page.locator("#use-next-link")).to_have_text("Nearly used")
    status, answer = await admin_call(gateway_process, "GET", "/use-next")
    assert status == 200
    assert isinstance(answer, dict)
    assert answer["title"] == "Nearly used"


async def test_most_left_re_sorts_the_cards_live_as_a_reload_would(
    gateway_process: GatewayProcess, fake: FakeUpstream, new_page: NewPage
) -> None:
    await seed_three(gateway_process)
    page = await new_page()
    await sign_in_page(page, gateway_process, "/codexgate/?sort=left")
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    titles = page.locator('#cards [data-field="title"]')
    await expect(titles).to_have_text(["Roomy", "Nearly used", "Exhausted"])
    # Roomy's menu open by keyboard, its summary focused: a move keeps both.
    summary = card(page, "Roomy").locator('details[data-field="menu"] > summary')
    await summary.focus()
    await page.keyboard.press("Enter")
    menu = card(page, "Roomy").locator('details[data-field="menu"]')
    await expect(menu).to_have_attribute("open", "")
    await page.evaluate("window.__sameCards = [...document.querySelectorAll('#cards .card')]")

    # Roomy's 5-hour window climbs to 98 %: 2 % left, behind the nearly used one's 10 %.
    fake.response_headers["x-codex-primary-used-percent"] = "98"
    await proxied_turn(gateway_process, "seat_a")
    await expect(titles).to_have_text(["Nearly used", "Roomy", "Exhausted"])
    await expect(menu).to_have_attribute("open", "")
    assert await page.evaluate(
        "document.activeElement === document.querySelector("
        "'#cards .card:nth-child(2) details[data-field=menu] > summary')"
    )
    # Moved, not drawn again: the same elements.
    assert await page.evaluate(
        "[...document.querySelectorAll('#cards .card')]"
        ".every((card) => window.__sameCards.includes(card))"
    )
    # The order a reload shows.
    live = await titles.all_text_contents()
    await page.reload()
    await expect(titles).to_have_text(live)


async def test_the_card_menu_renames_and_deletes_by_keyboard(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    await seed_three(gateway_process)
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    roomy = card(page, "Roomy")
    # No buttons on the card until its menu is opened.
    await expect(roomy.get_by_role("button", name="Rename")).to_be_hidden()
    menu = roomy.locator('[data-field="menu"] > summary')
    await menu.focus()
    await page.keyboard.press("Enter")
    rename = roomy.get_by_role("button", name="Rename")
    await expect(rename).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(rename).to_be_focused()
    await page.keyboard.press("Enter")
    name_input = roomy.get_by_label("Display name")
    await expect(name_input).to_be_focused()
    await page.keyboard.type("Keyboard seat")
    await page.keyboard.press("Enter")
    renamed = card(page, "Keyboard seat")
    await expect(renamed).to_have_count(1)
    await expect(page.locator("#notices")).to_have_text("Renamed to Keyboard seat.")
    await expect(renamed.locator('[data-field="menu"] > summary')).to_be_focused()

    # Escape closes the menu; then Delete, Cancel, Delete again and confirm.
    await page.keyboard.press("Enter")
    await expect(renamed.get_by_role("button", name="Rename")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(renamed.get_by_role("button", name="Rename")).to_be_hidden()
    await page.keyboard.press("Enter")
    delete = renamed.get_by_role("button", name="Delete")
    await delete.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("#delete-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("heading")).to_have_text("Delete Keyboard seat?")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(renamed.locator('[data-field="menu"] > summary')).to_be_focused()
    await page.keyboard.press("Enter")
    await renamed.get_by_role("button", name="Delete").focus()
    await page.keyboard.press("Enter")
    await dialog.get_by_role("button", name="Delete account and history").focus()
    await page.keyboard.press("Enter")
    await expect(renamed).to_have_count(0)
    await expect(page.locator("#notices")).to_have_text("Deleted Keyboard seat.")
    status, listed = await admin_call(gateway_process, "GET", "/accounts")
    assert status == 200
    assert isinstance(listed, dict)
    assert "Keyboard seat" not in {a["display_name"] for a in listed["accounts"]}


async def test_the_manage_view_adds_an_account_and_says_where_the_token_is(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await new_page()
    await sign_in_page(page, gateway_process)
    await page.get_by_role("link", name="Manage accounts").click()
    await expect(page).to_have_url(gateway_process.base + "/codexgate/accounts/manage")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Manage accounts")
    await expect(page.locator("#add-where")).to_contain_text("~/.codex/auth.json")
    await expect(page.locator("#add-where")).to_contain_text('"access_token"')
    await expect(page.locator("#no-accounts")).to_be_visible()
    await page.get_by_label("Name (optional)").fill("Team seat")
    await page.get_by_label("Access token").fill("sk-not-a-jwt-but-a-token-0001")
    await page.get_by_role("button", name="Add account").click()
    await expect(page.locator("#notices")).to_have_text("Added Team seat.")
    row = page.locator("#manage-list [data-account-id]")
    await expect(row).to_have_count(1)
    await expect(row.locator('[data-field="title"]')).to_have_text("Team seat")
    await expect(page.locator("#no-accounts")).to_be_hidden()
    # Renamed from the list, then the overview shows it.
    await row.get_by_role("button", name="Rename").click()
    await row.get_by_label("Display name").fill("Ops seat")
    await row.get_by_role("button", name="Save").click()
    await expect(row.locator('[data-field="title"]')).to_have_text("Ops seat")
    await page.get_by_role("link", name="Back to the overview").click()
    await expect(card(page, "Ops seat")).to_have_count(1)

    # In Chinese, the form says the same.
    manage = "/codexgate/accounts/manage"
    await page.goto(f"{gateway_process.base}/codexgate/language?set=zh-CN&next={manage}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("管理账号")
    await expect(page.locator("#add-where")).to_contain_text("~/.codex/auth.json")
    await expect(page.locator("#add-where")).to_contain_text("access_token")
