"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
`python -m codexgate` process in front of the fake upstream.

`make test` installs Debian's `chromium` when it is missing; no browser is ever downloaded.
Screenshots go to test-artifacts/ (kept out of git).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from codexgate.capture.headers import identity_from_token
from codexgate.core.models import (
    LimitReport,
    RequestRecord,
    Snapshot,
    TokenUsage,
    UsageReport,
    Window,
)
from codexgate.storage.sqlite.store import Store
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway_process import GatewayProcess
from tests.helpers.tokens import bearer

ADMIN_TOKEN: Final = "browser-test-admin-token-0123"
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / "test-artifacts"
# What the workplace's probe found Chromium needs on a machine with a closed network.
CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Every wait in these tests; the live update itself is held to a second where the issue says so.
TIMEOUT_MS: Final = 10_000

NewPage = Callable[..., Awaitable[Page]]


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
    process = GatewayProcess(gateway_args(tmp_path, upstream_server), tmp_path)
    try:
        await process.wait_ready()
        yield process
    finally:
        process.kill()


async def seed_history(db: Path, hours: int = 30) -> None:
    """seat_a's windows every 20 minutes: the 5h window climbs and drops at each reset, the
    weekly one climbs slowly; one request a step."""
    identity = identity_from_token(bearer("seat_a"), None)
    assert identity is not None
    now = time.time()
    start = now - hours * 3600
    items: list[Snapshot | RequestRecord] = []
    step = 1200
    for index in range(hours * 3600 // step):
        at = start + index * step
        five_hour_start = start + (index * step // 18000) * 18000
        five_hour_used = min(100.0, ((at - five_hour_start) / 18000) * 90 + 3)
        windows = (
            Window(
                "primary",
                "5h",
                "length",
                round(five_hour_used, 1),
                300,
                int(five_hour_start + 18000),
            ),
            Window(
                "secondary",
                "7d",
                "length",
                round(10 + index * 0.4, 1),
                10080,
                int(start + 6 * 86400),
            ),
        )
        report = UsageReport(limits=(LimitReport("codex", None, windows),), plan_type="plus")
        items.append(Snapshot(identity, at, "headers", report, 200))
        items.append(
            RequestRecord(
                started_at=at - 1,
                identity=identity,
                method="POST",
                path="/backend-api/codex/responses",
                transport="sse",
                status=200,
                model="gpt-5-codex",
                ttfb_ms=180.0 + index % 7 * 20,
                tokens=TokenUsage(total_tokens=1000 + index * 10),
            )
        )
    store = await Store.open(db)
    try:
        await store.record(items)
    finally:
        await store.close()


def gateway_args(tmp_path: Path, upstream_server: TestServer) -> list[str]:
    """The command line of the gateway under test (a restart reuses it)."""
    return [
        "--upstream",
        f"http://127.0.0.1:{upstream_server.port}",
        "--db",
        str(tmp_path / "codexgate.db"),
        "--admin-token",
        ADMIN_TOKEN,
        "--log-level",
        "WARNING",
    ]


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
        page.on("console", lambda message: _console_error(message, errors))
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert errors == [], errors


def _console_error(message: ConsoleMessage, errors: list[str]) -> None:
    # A page answered with an error status (a wrong token's 401) is logged by Chromium as
    # "Failed to load resource"; that is the test's business. Anything else is the script's.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)


async def sign_in(page: Page, gateway: GatewayProcess, path: str = "/codexgate/") -> None:
    """Open `path`, which sends the browser to the sign-in form, and sign in there."""
    await page.goto(gateway.base + path)
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(gateway.base + path)


async def proxied_turn(gateway: GatewayProcess, seat: str = "seat_a") -> None:
    """One streamed turn through codexgate as the named sample seat, read to the end."""
    async with (
        ClientSession() as session,
        session.post(
            gateway.base + "/backend-api/codex/responses",
            json={"model": "gpt-5-codex", "input": "hi", "stream": True},
            headers={"Authorization": bearer(seat)},
        ) as response,
    ):
        assert response.status == 200
        await response.read()


async def admin_call(
    gateway: GatewayProcess, method: str, path: str, body: object = None
) -> tuple[int, object]:
    """Call the admin API with the bearer token; (status, JSON or None)."""
    async with (
        ClientSession() as session,
        session.request(
            method,
            f"{gateway.base}/codexgate/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response,
    ):
        data = await response.json() if response.content_type == "application/json" else None
        return response.status, data


async def screenshot(page: Page, name: str) -> Path:
    """Write a full-page screenshot to test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path
