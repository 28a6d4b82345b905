"""Each limit on its card in headless Chromium: spend limits, reset credits and promotions on the
limit they came with, and one model's limit reached without the seat shown blocked. The live
page (the feed through the page script) and a reload (the server's template) must agree."""

from __future__ import annotations

import re
import time

import orjson
from aiohttp import ClientSession
from playwright.async_api import Page, expect

from tests.helpers.browser import NewPage, proxied_turn, screenshot, sign_in_page
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess
from tests.helpers.tokens import bearer

# The group limit has no reset said; the individual one resets in a day and a bit, in the
# reader's clock ("Sat 14:05" or "14:05").
SPEND_LINES: list[str | re.Pattern[str]] = [
    re.compile(r"Spend limit: 20 of 50 · 40% · resets (\w{3} )?\d\d:\d\d, in 1d 1h"),
    "Group spend limit (Engineering, a team with a long name): 82 of 100 · 82% · reached",
]
CREDITS_LINE = "Reset credits left: 2"
PROMO = "<b>Try</b> the new model"  # text, never markup


async def usage_query(gateway: GatewayProcess) -> None:
    """GET wham/usage through codexgate as seat_a, read to the end."""
    async with (
        ClientSession() as session,
        session.get(
            gateway.base + "/backend-api/wham/usage", headers={"Authorization": bearer("seat_a")}
        ) as response,
    ):
        assert response.status == 200
        await response.read()


async def live_page(new_page: NewPage, gateway: GatewayProcess) -> Page:
    page = await new_page()
    await sign_in_page(page, gateway)
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    return page


async def expect_spend_and_credits(page: Page) -> None:
    main = page.locator('article.card .limit[data-limit-id="codex"]')
    await expect(main.locator(".spend-limit")).to_have_text(SPEND_LINES)
    await expect(main.locator(".spend-limit.reached strong")).to_have_text("reached")
    await expect(main.locator('[data-field="reset-credits"]')).to_have_text(CREDITS_LINE)
    await expect(main.locator('[data-field="promo"]')).to_have_text(PROMO)
    other = page.locator('article.card .limit[data-limit-id="codex_other"]')
    await expect(other.locator('[data-field="spend-limits"]')).to_be_hidden()
    await expect(other.locator('[data-field="reset-credits"]')).to_be_hidden()


async def test_spend_limits_and_reset_credits_show_on_the_main_limit(
    fake: FakeUpstream, gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    body = orjson.loads(fake.usage_body)
    body["rate_limit_reset_credits"] = {"available_count": 2}
    body["promo"] = {"message": PROMO}
    body["additional_rate_limits"] = [
        {
            "limit_name": "gpt-5.2-codex-sonic",
            "metered_feature": "codex_other",
            "rate_limit": {"primary_window": {"used_percent": 10, "limit_window_seconds": 18000,
                                              "reset_at": int(time.time()) + 3600}},
        }
    ]  # fmt: skip
    body["spend_control"] = {
        "reached": True,
        "reached_limit_type": "group_shared",
        "individual_limit": {"limit": "50", "used": "20", "remaining": "30", "used_percent": 40,
                             "remaining_percent": 60, "reset_after_seconds": 86400 + 3600 + 60},
        "group_shared_limit": {
            "group_id": "group-1",
            "group_name": "Engineering, a team with a long name",
            "details": {"limit": "100", "used": "82", "remaining": "18", "used_percent": 82,
                        "remaining_percent": 18},
        },
    }  # fmt: skip
    fake.usage_body = orjson.dumps(body)
    page = await live_page(new_page, gateway_process)
    await usage_query(gateway_process)
    await expect_spend_and_credits(page)  # live: the page script
    await expect(page.locator("#use-next-link")).to_have_text("alice@example.com")
    await screenshot(page, "card-spend-limits.png")
    await page.reload()
    await expect_spend_and_credits(page)  # the server's page
    assert await page.locator("article.card b").count() == 0
    # On a phone the lines wrap inside the card: nothing scrolls sideways.
    phone = await new_page(width=360, height=740)
    await sign_in_page(phone, gateway_process)
    await expect_spend_and_credits(phone)
    overflow = await phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"360 px wide scrolls sideways by {overflow} px"
    card = phone.locator("article.card")
    card_box = await card.bounding_box()
    assert card_box is not None
    lines = await card.locator(".spend-limit:visible, .reset-credits:visible, .promo:visible").all()
    assert len(lines) == 4  # two spend limits, the reset credits, the promotion
    for line in lines:
        box = await line.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= card_box["x"] + card_box["width"] + 0.5
    await screenshot(phone, "card-spend-limits-phone.png")


async def expect_counts(page: Page, at_limit: str) -> None:
    """The summary's "at limit" count, and the seat to use next while it is not at its limit."""
    await expect(page.locator("#kpi-at")).to_have_text(at_limit)
    if at_limit == "0":
        await expect(page.locator("#use-next-link")).to_have_text("alice@example.com")
        await expect(page.locator('article.card [data-field="use-next"]')).to_be_visible()
    else:
        await expect(page.locator("#use-next-none")).to_be_visible()
        await expect(page.locator('article.card [data-field="use-next"]')).to_be_hidden()


async def test_one_models_limit_reached_does_not_block_the_seat(
    fake: FakeUpstream, gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    page = await live_page(new_page, gateway_process)
    back = int(time.time()) + 3600
    fake.status = 429
    fake.response_headers = {
        "x-codex-primary-used-percent": "40",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(back + 600),
        "x-codex-other-primary-used-percent": "100",
        "x-codex-other-primary-window-minutes": "300",
        "x-codex-other-primary-reset-at": str(back),
        "x-codex-other-limit-name": "gpt-5.2-codex-sonic",
        "x-codex-active-limit": "codex_other",
    }
    fake.error_body = orjson.dumps({"error": {"type": "usage_limit_reached", "resets_at": back}})
    async with (
        ClientSession() as session,
        session.post(
            gateway_process.base + "/backend-api/codex/responses",
            json={"model": "gpt-5.2-codex-sonic", "input": "hi", "stream": True},
            headers={"Authorization": bearer("seat_a")},
        ) as response,
    ):
        assert response.status == 429
    other = page.locator('article.card .limit[data-limit-id="codex_other"]')
    main = page.locator('article.card .limit[data-limit-id="codex"]')
    alert = page.locator('#alert-list > li[data-kind="limit_hit"]')
    for reloaded in (False, True):
        if reloaded:
            await page.reload()
        await expect(other.locator('[data-field="limit-hit"]')).to_be_visible()
        await expect(other.locator('[data-field="limit-hit"]')).to_contain_text("back at")
        await expect(other.locator('[data-field="limit-name"]')).to_contain_text(
            "gpt-5.2-codex-sonic"
        )
        await expect(main.locator('[data-field="limit-hit"]')).to_be_hidden()
        await expect_counts(page, "0")  # the seat itself has room: 40 % of its own limit
        # The alert says which limit: one model's, not the seat's.
        await expect(alert.locator('[data-field="alert-text"]')).to_have_text(
            "codex_other limit reached"
        )
    await screenshot(page, "card-model-limit-reached.png")
    # The seat's own limit reached: now it is at its limit.
    fake.status = 200
    fake.error_body = None
    fake.response_headers = {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(back + 600),
    }
    await proxied_turn(gateway_process)
    await expect_counts(page, "1")
    await page.reload()
    await expect_counts(page, "1")
