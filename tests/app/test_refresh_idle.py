"""--refresh-idle against the fake upstream: what is polled, when, with what, and what is shown.

The service's clock is the test's: real time plus an offset the test moves forward, so that
"fifteen minutes later" takes no time. Usage rows keep real capture times, as in production.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from codexgate.app import SERVER_OPTIONS, create_app
from codexgate.config import Config
from codexgate.dashboard import i18n
from codexgate.keys import REFRESH, REFRESH_OPTIONS, STORE
from codexgate.services.refresh import USER_AGENT, RefreshOptions
from tests.helpers.admin_client import ADMIN, OPAQUE, Admin, assert_envelope
from tests.helpers.fake_upstream import FakeUpstream, Received
from tests.helpers.gateway import app_of, recorded, sqlite_file, turn
from tests.helpers.tokens import bearer, claims_of, make_jwt
from tests.helpers.waiting import eventually

INTERVAL = 300.0  # the least --refresh-after allows, in seconds
WORKSPACE = "acct-team-1"  # seat_a's ChatGPT-Account-ID
SEAT_A = bearer("seat_a")
TOKEN_A = SEAT_A.removeprefix("Bearer ")
USAGE = "/backend-api/wham/usage"

StartRefreshing = Callable[..., Awaitable[TestServer]]


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start(aiohttp_server: AiohttpServer, config: Config, clock: Clock) -> StartRefreshing:
    """Start codexgate (admin token ADMIN) with a fast, test-clocked refresh service."""

    async def started(*, refresh_idle: bool = True, **options: Any) -> TestServer:
        app = create_app(
            dataclasses.replace(
                config, admin_token=ADMIN, refresh_idle=refresh_idle, refresh_after=INTERVAL / 60
            )
        )
        fast: dict[str, Any] = {"tick": 0.02, "clock": clock, "draw": lambda: 0.5}
        app[REFRESH_OPTIONS] = RefreshOptions(**(fast | options))
        server_options = {k: v for k, v in SERVER_OPTIONS.items() if k != "handler_cancellation"}
        return await aiohttp_server(app, **server_options)

    return started


def polls(fake: FakeUpstream) -> list[Received]:
    """The usage requests the fake upstream received."""
    return [received for received in fake.received if received.path_qs == USAGE]


async def seat_a_turn(http: ClientSession, server: TestServer) -> None:
    """One accepted turn of seat_a, as the Codex CLI sends it."""
    assert await turn(http, server, SEAT_A, **{"ChatGPT-Account-ID": WORKSPACE}) == 200


async def seat_a_turn_with_status(http: ClientSession, server: TestServer, status: int) -> None:
    """One turn of seat_a that the upstream answers with `status`."""
    assert await turn(http, server, SEAT_A, **{"ChatGPT-Account-ID": WORKSPACE}) == status


async def only_account(admin: Admin) -> dict[str, Any]:
    accounts: list[dict[str, Any]] = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    assert len(accounts) == 1
    return accounts[0]


def files_holding(folder: Path, secrets: tuple[str, ...]) -> list[str]:
    """The files of the database's folder (the file, its -wal and -shm) that hold a secret."""
    names = sorted(path.name for path in folder.iterdir())
    assert names, "the database folder is empty"
    return [
        name
        for name in names
        if any(secret.encode() in (folder / name).read_bytes() for secret in secrets)
    ]


async def quiet(ticks: int = 10) -> None:
    """Let the service look at its accounts several times."""
    await asyncio.sleep(0.02 * ticks)


async def test_with_the_setting_off_nothing_is_ever_polled(
    start: StartRefreshing, http: ClientSession, fake: FakeUpstream, clock: Clock
) -> None:
    server = await start(refresh_idle=False)
    admin = Admin(http, server)
    await seat_a_turn(http, server)
    await recorded(server, 1)
    clock.offset = 24 * 3600.0  # stale by a day, with the token seen in traffic
    await quiet()
    assert polls(fake) == []
    assert REFRESH not in app_of(server)  # no token is even kept
    account = await only_account(admin)
    assert account["refresh"] == {
        "available": False,
        "state": "off",
        "stopped_reason": None,
        "last_at": None,
        "next_at": None,
    }
    health = await admin.ok("GET", "healthz", auth=None)
    assert health["refresh"] == {"enabled": False}
    answer = await admin.call("POST", f"api/v1/accounts/{account['id']}/refresh")
    error = assert_envelope(answer, 409, "refresh_off")
    assert "--refresh-idle" in error["message"]
    assert polls(fake) == []


async def test_an_idle_account_is_refreshed_once_after_the_interval(
    start: StartRefreshing, http: ClientSession, fake: FakeUpstream, clock: Clock
) -> None:
    server = await start()
    admin = Admin(http, server)
    await seat_a_turn(http, server)
    await recorded(server, 1)
    account = await only_account(admin)
    assert account["refresh"]["state"] == "scheduled"
    assert account["refresh"]["available"] is True
    assert account["refresh"]["next_at"] == pytest.approx(clock() + INTERVAL, abs=5.0)

    clock.offset = INTERVAL - 30.0  # not yet
    await quiet()
    assert polls(fake) == []

    clock.offset = INTERVAL + 1.0
    await eventually(lambda: len(polls(fake)), accept=lambda n: n >= 1)
    (poll,) = polls(fake)
    assert poll.method == "GET"
    assert poll.headers["Authorization"] == SEAT_A
    assert poll.headers["ChatGPT-Account-Id"] == WORKSPACE
    assert poll.headers["User-Agent"] == USER_AGENT
    # The answer is recorded as a relayed wham/usage answer would be.
    await recorded(server, 2)
    history = await admin.ok("GET", f"api/v1/accounts/{account['id']}/history")
    assert [row["source"] for row in history["items"]].count("usage_body") >= 1

    await quiet()
    assert len(polls(fake)) == 1  # once: the refresh itself starts the wait again
    account = await only_account(admin)
    assert account["refresh"]["state"] == "scheduled"
    assert account["refresh"]["last_at"] == pytest.approx(clock(), abs=5.0)
    assert account["refresh"]["next_at"] > clock() + INTERVAL - 5.0
    health = await admin.ok("GET", "healthz", auth=None)
    assert health["refresh"] == {
        "enabled": True,
        "after_minutes": 5.0,
        "tracked_tokens": 1,
        "in_flight": 0,
        "ok": 1,
        "failed": 0,
        "stopped_accounts": 0,
    }


async def test_no_poll_while_traffic_keeps_the_data_fresh(
    start: StartRefreshing, http: ClientSession, fake: FakeUpstream
) -> None:
    # Real time here: a 1 s interval, and a turn every 0.1 s for twice as long.
    server = await start(interval=1.0, clock=time.time)
    started = time.monotonic()
    turns = 0
    while time.monotonic() - started < 2.0:
        await seat_a_turn(http, server)
        turns += 1
        await recorded(server, turns)
        await asyncio.sleep(0.1)
    assert polls(fake) == []
    # Once the traffic stops, the account goes idle and is asked for.
    await eventually(lambda: len(polls(fake)), accept=lambda n: n >= 1)


@pytest.mark.parametrize(
    ("status", "reason", "available"),
    [(401, "unauthorized", False), (403, "forbidden", False), (429, "rate_limited", True)],
)
async def test_a_refusal_stops_the_account_and_says_why(
    start: StartRefreshing,
    http: ClientSession,
    fake: FakeUpstream,
    clock: Clock,
    status: int,
    reason: str,
    available: bool,
) -> None:
    server = await start()
    admin = Admin(http, server)
    fake.usage_status = status
    await seat_a_turn(http, server)
    await recorded(server, 1)
    clock.offset = INTERVAL + 1.0
    await eventually(lambda: len(polls(fake)), accept=lambda n: n >= 1)
    account = await eventually(
        lambda: only_account(admin), accept=lambda a: a["refresh"]["state"] == "stopped"
    )
    assert account["refresh"]["stopped_reason"] == reason
    assert account["refresh"]["available"] is available  # a refused token is dropped
    assert account["refresh"]["next_at"] is None
    clock.offset = 10 * INTERVAL
    await quiet()
    assert len(polls(fake)) == 1  # stopped: never asked again
    health = await admin.ok("GET", "healthz", auth=None)
    assert health["refresh"]["stopped_accounts"] == 1
    assert health["refresh"]["tracked_tokens"] == (1 if available else 0)
    # The card says so, on the overview and on the account's page.
    said = i18n.catalog("en")[f"refresh.stopped.{reason}"]
    for path in ("", f"accounts/{account['id']}"):
        page = html.unescape((await admin.get(path)).body.decode())
        assert said in page, path

    # A new token from traffic is a new chance.
    fake.usage_status = 200
    assert await turn(http, server, bearer("seat_a_refreshed"), **{"ChatGPT-Account-ID": WORKSPACE})
    account = await only_account(admin)
    assert account["refresh"]["state"] == "scheduled"
    assert account["refresh"]["stopped_reason"] is None


async def test_a_server_error_backs_off(
    start: StartRefreshing, http: ClientSession, fake: FakeUpstream, clock: Clock
) -> None:
    server = await start()
    admin = Admin(http, server)
    fake.usage_status = 502
    await seat_a_turn(http, server)
    await recorded(server, 1)
    clock.offset = INTERVAL + 1.0
    await eventually(lambda: len(polls(fake)), accept=lambda n: n >= 1)
    health = await eventually(
        lambda: admin.ok("GET", "healthz", auth=None), accept=lambda h: h["refresh"]["failed"]
    )
    assert health["refresh"]["failed"] == 1
    account = await only_account(admin)
    assert account["refresh"]["state"] == "scheduled"
    assert account["refresh"]["next_at"] >= clock() + INTERVAL - 5.0
    await quiet()
    assert len(polls(fake)) == 1
    clock.offset = 2 * INTERVAL + 5.0  # the first retry comes an interval later
    await eventually(lambda: len(polls(fake)), accept=lambda n: n >= 2)
    clock.offset = 3 * INTERVAL + 10.0  # the second waits twice as long
    await quiet()
    assert len(polls(fake)) == 2


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {make_jwt({**claims_of('seat_a'), 'exp': time.time() - 10})}",  # expired
        f"Bearer {make_jwt({**claims_of('seat_a'), 'exp': time.time() + 30})}",  # about to
        f"Bearer {make_jwt({k: v for k, v in claims_of('seat_a').items() if k != 'exp'})}",
        f"Bearer {OPAQUE}",  # opaque: its expiry is unknown
    ],
    ids=["expired", "expiring", "no-exp", "opaque"],
)
async def test_a_token_without_a_future_expiry_is_never_used(
    start: StartRefreshing,
    http: ClientSession,
    fake: FakeUpstream,
    clock: Clock,
    authorization: str,
) -> None:
    server = await start()
    admin = Admin(http, server)
    assert await turn(http, server, authorization, **{"ChatGPT-Account-ID": WORKSPACE}) == 200
    await recorded(server, 1)
    clock.offset = 2 * INTERVAL
    await quiet()
    assert polls(fake) == []
    account = await only_account(admin)
    assert account["refresh"]["available"] is False
    assert account["refresh"]["state"] == "idle"
    answer = await admin.call("POST", f"api/v1/accounts/{account['id']}/refresh")
    assert "access token" in assert_envelope(answer, 409, "no_token")["message"]
    health = await admin.ok("GET", "healthz", auth=None)
    assert health["refresh"]["tracked_tokens"] == 0  # dropped, not kept
    assert polls(fake) == []


async def test_refresh_now_answers(
    start: StartRefreshing, http: ClientSession, fake: FakeUpstream
) -> None:
    server = await start()
    admin = Admin(http, server)
    assert_envelope(await admin.call("POST", "api/v1/accounts/999/refresh"), 404, "not_found")
    # An account added by hand: its token is not kept, so there is none at hand.
    created = await admin.ok("POST", "api/v1/accounts", 201, json={"token": bearer("seat_b")})
    answer = await admin.call("POST", f"api/v1/accounts/{created['id']}/refresh")
    assert_envelope(answer, 409, "no_token")
    assert created["refresh"]["available"] is False

    await seat_a_turn(http, server)
    await recorded(server, 1)
    accounts = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    seat_a = next(a for a in accounts if a["id"] != created["id"])
    assert seat_a["refresh"]["available"] is True
    result = await admin.ok("POST", f"api/v1/accounts/{seat_a['id']}/refresh")
    assert result["result"] == "ok"
    assert result["upstream_status"] == 200
    assert result["refresh"]["last_at"] is not None
    assert len(polls(fake)) == 1
    await recorded(server, 2)

    again = await admin.call("POST", f"api/v1/accounts/{seat_a['id']}/refresh")
    assert_envelope(again, 429, "too_soon")
    assert 1 <= int(again.headers["Retry-After"]) <= 60
    assert len(polls(fake)) == 1

    # GET answers 405: a refresh is a change.
    assert (await admin.call("GET", f"api/v1/accounts/{seat_a['id']}/refresh")).status == 405


async def test_refresh_now_reports_a_refusal(
    start: StartRefreshing, http: ClientSession, fake: FakeUpstream
) -> None:
    server = await start()
    admin = Admin(http, server)
    fake.usage_status = 401
    await seat_a_turn(http, server)
    await recorded(server, 1)
    account = await only_account(admin)
    result = await admin.ok("POST", f"api/v1/accounts/{account['id']}/refresh")
    assert result["result"] == "stopped"
    assert result["upstream_status"] == 401
    assert result["refresh"]["state"] == "stopped"
    assert result["refresh"]["stopped_reason"] == "unauthorized"


async def test_a_deleted_account_and_a_stopped_gateway_keep_no_token(
    start: StartRefreshing, http: ClientSession
) -> None:
    server = await start()
    admin = Admin(http, server)
    await seat_a_turn(http, server)
    await recorded(server, 1)
    refresh = app_of(server)[REFRESH]
    account = await only_account(admin)
    assert refresh.stats().tracked == 1
    answer = await admin.call("DELETE", f"api/v1/accounts/{account['id']}")
    assert answer.status == 204
    assert refresh.stats().tracked == 0

    await seat_a_turn(http, server)  # traffic brings the account, and its token, back
    await recorded(server, 2)
    assert refresh.stats().tracked == 1
    # Deleted behind the service's back (the command line on the file): dropped at its next look.
    account = await only_account(admin)
    assert await app_of(server)[STORE].delete_account(account["id"])
    await eventually(lambda: refresh.stats().tracked, accept=lambda tracked: tracked == 0)

    await seat_a_turn(http, server)
    await recorded(server, 3)
    assert refresh.stats().tracked == 1
    await server.close()
    assert refresh.stats().tracked == 0


async def test_only_a_token_the_upstream_accepted_is_kept(
    start: StartRefreshing, http: ClientSession, fake: FakeUpstream
) -> None:
    server = await start()
    refresh = app_of(server)[REFRESH]
    for status in (401, 403, 429, 500):
        fake.status = status
        await seat_a_turn_with_status(http, server, status)
        assert refresh.stats().tracked == 0, status
    fake.status = 200
    await seat_a_turn(http, server)
    assert refresh.stats().tracked == 1
    # The upstream refusing that same token in traffic drops it.
    fake.status = 401
    await seat_a_turn_with_status(http, server, 401)
    assert refresh.stats().tracked == 0


async def test_the_token_is_never_written_logged_or_shown(
    start: StartRefreshing,
    http: ClientSession,
    fake: FakeUpstream,
    clock: Clock,
    config: Config,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start()
    admin = Admin(http, server)  # checks every answer for every test token
    await seat_a_turn(http, server)
    await recorded(server, 1)
    clock.offset = INTERVAL + 1.0
    await eventually(lambda: len(polls(fake)), accept=lambda n: n >= 1)
    await recorded(server, 2)
    fake.usage_status = 429
    account = await only_account(admin)
    await admin.call("POST", f"api/v1/accounts/{account['id']}/refresh")
    await admin.ok("GET", f"api/v1/accounts/{account['id']}")
    await admin.ok("GET", f"api/v1/accounts/{account['id']}/history")
    await admin.ok("GET", "api/v1/requests")
    await admin.ok("GET", "healthz", auth=None)
    metrics = await admin.call("GET", "metrics")
    assert metrics.status == 200
    await server.close()

    secrets = (TOKEN_A, TOKEN_A.split(".")[1], TOKEN_A.split(".")[2])
    assert files_holding(sqlite_file(config.db).parent, secrets) == []
    assert caplog.records  # the test saw the logs at all
    for record in caplog.records:
        text = record.getMessage() + str(record.exc_text or "")
        for secret in secrets:
            assert secret not in text, f"a token in a log line: {record.name}"
