"""Browser tests' helpers: Chromium options, signing a page in, screenshots, gateway inputs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from playwright.async_api import ConsoleMessage, Page

from codexgate.core.models import (
    LimitReport,
    RequestRecord,
    Snapshot,
    TokenUsage,
    UsageReport,
    Window,
)
from codexgate.storage import open_storage
from tests.helpers.builders import seat_identity
from tests.helpers.paths import REPO
from tests.helpers.processes import GatewayProcess
from tests.helpers.sessions import ADMIN_TOKEN
from tests.helpers.tokens import bearer

ARTIFACTS: Final = REPO / "test-artifacts"
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

# What the `new_page` fixture hands a test: open a page (`width`, `height`, `locale`, `scheme`).
NewPage = Callable[..., Awaitable[Page]]


def collect_console_error(message: ConsoleMessage, errors: list[str]) -> None:
    """Add a page's console error to `errors`, unless it only reports an error status."""
    # A page answered with an error status (a wrong token's 401) is logged by Chromium as
    # "Failed to load resource"; that is the test's business. Anything else is the script's.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)


async def sign_in_page(page: Page, gateway: GatewayProcess, path: str = "/codexgate/") -> None:
    """Open `path`, which sends the browser to the sign-in form, and sign in there."""
    await page.goto(gateway.base + path)
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(gateway.base + path)


async def screenshot(page: Page, name: str) -> Path:
    """Write a full-page screenshot to test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path


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


@asynccontextmanager
async def running_gateway(
    tmp_path: Path, upstream_server: TestServer
) -> AsyncIterator[GatewayProcess]:
    """codexgate as a real process in front of the fake upstream (gateway_args), killed at exit."""
    process = GatewayProcess(gateway_args(tmp_path, upstream_server), tmp_path)
    try:
        await process.wait_ready()
        yield process
    finally:
        process.kill()


async def seed_history(db: Path, hours: int = 30) -> None:
    """seat_a's windows every 20 minutes: the 5h window climbs and drops at each reset, the
    weekly one climbs slowly; one request a step."""
    identity = seat_identity("seat_a")
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
    store = await open_storage(db)
    try:
        await store.record(items)
    finally:
        await store.close()


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
