"""Signing out in headless Chromium: the header's two buttons, against a codexgate process."""

from __future__ import annotations

from playwright.async_api import expect

from tests.helpers.browser import NewPage, sign_in_page
from tests.helpers.processes import GatewayProcess


async def test_sign_out_and_sign_out_everywhere(
    gateway_process: GatewayProcess, new_page: NewPage
) -> None:
    login = gateway_process.base + "/codexgate/login"
    here = await new_page()
    there = await new_page()  # another browser, signed in with the same token
    await sign_in_page(here, gateway_process)
    await sign_in_page(there, gateway_process)

    # The page's own form post passes the origin check; the session ends for this browser only.
    await here.get_by_role("button", name="Sign out", exact=True).click()
    await expect(here).to_have_url(login)
    await here.goto(gateway_process.base + "/codexgate/")
    await expect(here).to_have_url(login + "?next=/codexgate/")
    await there.reload()
    await expect(there.locator("#kpi-accounts")).to_be_visible()

    await sign_in_page(here, gateway_process)
    await here.get_by_role("button", name="Sign out everywhere").click()
    await expect(here).to_have_url(login)
    await there.goto(gateway_process.base + "/codexgate/")
    await expect(there).to_have_url(login + "?next=/codexgate/")
