"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
`python -m codexgate` process in front of the fake upstream.

`make test` installs Debian's `chromium` when it is missing; no browser is ever downloaded.
Screenshots go to test-artifacts/ (kept out of git).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.helpers.browser import (
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    NewPage,
    collect_console_error,
    running_gateway,
    seed_history,
)
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess


@pytest.fixture
def fake() -> FakeUpstream:
    """The fake backend, answering turns with windows that reset soon (so countdowns move)."""
    upstream = FakeUpstream()
    now = int(time.time())
    upstream.response_headers.update(
        {
            "x-codex-primary-used-percent": "46",
            "x-codex-primary-reset-at": str(now + 2 * 3600 + 30 * 60 + 30),
            "x-codex-secondary-used-percent": "15",
            "x-codex-secondary-reset-at": str(now + 3 * 86400 + 12 * 3600 + 30),
        }
    )
    return upstream


@pytest.fixture
def fake_soon(fake: FakeUpstream) -> None:
    """The 5h window resets in under two minutes: its countdown shows seconds."""
    fake.response_headers["x-codex-primary-reset-at"] = str(int(time.time()) + 115)


@pytest.fixture
async def gateway_process(
    request: pytest.FixtureRequest, tmp_path: Path, upstream_server: TestServer
) -> AsyncIterator[GatewayProcess]:
    """codexgate as a real process with an admin token, in front of the fake upstream.

    A test marked `seeded` starts it on a database that already holds 30 hours of seat_a's
    history and requests (written through the real store, as the recorder would).
    """
    if request.node.get_closest_marker("seeded") is not None:
        await seed_history(tmp_path / "codexgate.db")
    async with running_gateway(tmp_path, upstream_server) as process:
        yield process


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; missing means `make test` did not install it: fail."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "chromium is not installed; run `make test` (it installs Debian's chromium)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[NewPage]:
    """Open a page in a fresh context; every page's script errors fail the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def open_page(
        *, width: int = 1280, height: int = 900, locale: str = "en-US", scheme: str = "light"
    ) -> Page:
        context = await browser.new_context(
            viewport={"width": width, "height": height},
            locale=locale,
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: collect_console_error(message, errors))
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert errors == [], errors
