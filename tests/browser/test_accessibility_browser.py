"""An axe-core scan of every page (overview, an account, sign-in, a missing account, managing
accounts) in both languages, at 1280x900 and 390x844 and in the dark theme: no moderate, serious or
critical violation.

axe-core comes from npm (tests/client, installed by `make test` with `npm ci`), never a CDN. It is
injected as a script, which the pages' Content-Security-Policy forbids: the scan's browser context
bypasses CSP for that, and only that (the pages' own scripts are the same either way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.helpers.browser import TIMEOUT_MS, admin_call, proxied_turn
from tests.helpers.paths import REPO
from tests.helpers.processes import GatewayProcess
from tests.helpers.sessions import ADMIN_TOKEN

AXE: Final = REPO / "tests" / "client" / "node_modules" / "axe-core" / "axe.min.js"
# Moderate too: "heading-order" (a card's name right under the account page's h1) is one.
BLOCKING: Final = ("serious", "critical", "moderate")
SIZES: Final = ((1280, 900), (390, 844))
LANGUAGES: Final = ("en-US", "zh-CN")
# Opens every <details> (the charts' tables) so that their content is scanned too.
OPEN_DETAILS: Final = "document.querySelectorAll('details').forEach((d) => { d.open = true; })"


@pytest.fixture
async def scan_context(browser: Browser) -> AsyncIterator[Any]:
    """A factory of browser contexts that may inject axe-core; all closed at the end."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing; run `make test` (npm ci in tests/client)", pytrace=False)
    contexts: list[BrowserContext] = []

    async def open_context(width: int, height: int, locale: str, scheme: str) -> BrowserContext:
        context = await browser.new_context(
            viewport={"width": width, "height": height},
            locale=locale,
            color_scheme=scheme,  # type: ignore[arg-type]
            bypass_csp=True,
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        await context.close()


async def violations(page: Page) -> list[str]:
    """The page's moderate, serious and critical axe-core violations, one line per element."""
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    lines = []
    for violation in found["violations"]:
        if violation["impact"] in BLOCKING:
            for node in violation["nodes"]:
                lines.append(
                    f"{violation['id']} ({violation['impact']}) {node['target']}: "
                    f"{node['failureSummary']}"
                )
    return lines


async def sign_in(page: Page, gateway: GatewayProcess) -> None:
    """Sign in with the admin token through the form (its label is in either language)."""
    await page.goto(gateway.base + "/codexgate/login")
    await page.locator("#token").fill(ADMIN_TOKEN)
    await page.locator("form[action$='/login'] button[type=submit]").click()
    await page.wait_for_url(gateway.base + "/codexgate/")


async def manage_answers(gateway: GatewayProcess, page: Page) -> bool:
    """Whether the manage-accounts view exists (another part of the dashboard adds it)."""
    answer = await page.request.get(gateway.base + "/codexgate/accounts/manage")
    return answer.status == 200


@pytest.mark.seeded
async def test_no_page_has_a_moderate_serious_or_critical_violation(
    gateway_process: GatewayProcess, scan_context: Any
) -> None:
    await proxied_turn(gateway_process)
    await proxied_turn(gateway_process, "seat_b")
    await admin_call(gateway_process, "POST", "/alerts/test")
    found: dict[str, list[str]] = {}
    cases = [(size, locale, "light") for size in SIZES for locale in LANGUAGES]
    cases.append((SIZES[0], "en-US", "dark"))
    for (width, height), locale, scheme in cases:
        context = await scan_context(width, height, locale, scheme)
        page = await context.new_page()
        where = f"{width}x{height} {locale} {scheme}"

        await page.goto(gateway_process.base + "/codexgate/login")
        found[f"sign-in {where}"] = await violations(page)

        await sign_in(page, gateway_process)
        await expect(page.locator("html")).to_have_attribute("lang", locale.removesuffix("-US"))
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        found[f"overview {where}"] = await violations(page)

        await page.goto(gateway_process.base + "/codexgate/accounts/1")
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        await page.evaluate(OPEN_DETAILS)
        found[f"account {where}"] = await violations(page)

        await page.goto(gateway_process.base + "/codexgate/accounts/1?range=30d")
        await page.evaluate(OPEN_DETAILS)
        found[f"account 30 days {where}"] = await violations(page)

        await page.goto(gateway_process.base + "/codexgate/accounts/999")
        found[f"missing account {where}"] = await violations(page)

        if await manage_answers(gateway_process, page):
            await page.goto(gateway_process.base + "/codexgate/accounts/manage")
            found[f"manage accounts {where}"] = await violations(page)
    blocking = {name: lines for name, lines in found.items() if lines}
    assert blocking == {}, "\n".join(
        f"{name}:\n  " + "\n  ".join(lines) for name, lines in blocking.items()
    )
    assert len(found) >= 5 * len(cases)


@pytest.mark.seeded
async def test_every_page_has_one_h1_landmarks_and_labelled_controls(
    gateway_process: GatewayProcess, scan_context: Any
) -> None:
    await proxied_turn(gateway_process)
    context = await scan_context(1280, 900, "en-US", "light")
    page = await context.new_page()
    await page.goto(gateway_process.base + "/codexgate/login")
    pages = {"sign-in": await structure(page)}
    await sign_in(page, gateway_process)
    pages["overview"] = await structure(page)
    await page.goto(gateway_process.base + "/codexgate/accounts/1")
    pages["account"] = await structure(page)
    await page.goto(gateway_process.base + "/codexgate/accounts/999")
    pages["missing"] = await structure(page)
    if await manage_answers(gateway_process, page):
        await page.goto(gateway_process.base + "/codexgate/accounts/manage")
        pages["manage"] = await structure(page)
    for name, shape in pages.items():
        assert shape["h1"] == 1, (name, shape)
        assert shape["main"] == 1, (name, shape)
        assert shape["banner"] == 1, (name, shape)
        assert shape["unlabelled"] == [], (name, shape)
    assert pages["account"]["h1_text"] == "alice@example.com"


async def structure(page: Page) -> dict[str, Any]:
    """A page's h1s, landmarks and form controls without a name."""
    return {
        "h1": await page.locator("h1").count(),
        "h1_text": (await page.locator("h1").first.text_content() or "").strip(),
        "main": await page.get_by_role("main").count(),
        "banner": await page.get_by_role("banner").count(),
        "unlabelled": await page.evaluate(
            """() => [...document.querySelectorAll(
                  'input:not([type=hidden]), select, textarea, button')]
                .filter((el) => el.checkVisibility())
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
                .map((el) => el.outerHTML.slice(0, 120))"""
        ),
    }
