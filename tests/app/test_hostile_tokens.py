"""Accounts from traffic: forged claims, refused credentials, the account bound, short keys."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, WSServerHandshakeError
from aiohttp.test_utils import TestServer

from codexgate.core.rows import AccountRow, RequestRow
from codexgate.core.sanitize import MAX_STORED_TEXT, has_unsafe
from codexgate.keys import RECORDER, STORE
from tests.helpers.admin_client import ADMIN, OPAQUE, Admin
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of, settled
from tests.helpers.tokens import bearer, claims_of, make_jwt

SEAT_A: dict[str, Any] = claims_of("seat_a")
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
INVALID_TOKEN = b'{"error": {"message": "invalid token", "code": "token_invalid"}}'
SERVER_ERROR = b'{"error": {"message": "upstream had a bad day", "type": "server_error"}}'


def forged(
    *, user: str = "user-AAAA", workspace: str = "acct-team-1", email: str, plan: str = "pro"
) -> str:
    """A bearer token whose claims anyone could write: a seat's ids with other text."""
    claims = {
        **SEAT_A,
        AUTH_CLAIM: {
            **SEAT_A[AUTH_CLAIM],
            "chatgpt_account_id": workspace,
            "chatgpt_user_id": user,
            "user_id": user,
            "chatgpt_plan_type": plan,
        },
        PROFILE_CLAIM: {"email": email},
    }
    return f"Bearer {make_jwt(claims)}"


async def post(http: ClientSession, gateway: TestServer, authorization: str) -> int:
    """One turn through the gateway; returns the status."""
    async with http.post(
        f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses",
        data=b'{"stream": true}',
        headers={"Authorization": authorization},
    ) as response:
        await response.read()
        return response.status


async def accounts(gateway: TestServer) -> list[AccountRow]:
    return await app_of(gateway)[STORE].accounts()


async def requests(gateway: TestServer) -> list[RequestRow]:
    """Every request row, oldest first."""
    return list(reversed(await app_of(gateway)[STORE].requests(limit=1000)))


def refuse(fake: FakeUpstream, status: int, body: bytes = INVALID_TOKEN) -> None:
    """Make the fake upstream answer with `status`, a JSON error and no rate-limit data."""
    fake.status = status
    fake.response_headers = {}
    fake.error_body = body


async def victim(http: ClientSession, gateway: TestServer, fake: FakeUpstream) -> AccountRow:
    """Seat A's account, made by a real turn the upstream accepted."""
    assert await post(http, gateway, bearer("seat_a")) == 200
    await settled(gateway, 1)
    [account] = await accounts(gateway)
    assert (account.email, account.plan_type) == ("alice@example.com", "plus")
    return account


# -- item 3: only an exchange that proves the credential touches an account ----------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_a_forged_token_for_a_victims_seat_that_the_upstream_refuses_changes_nothing(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession, status: int
) -> None:
    before = await victim(http, gateway, fake)
    refuse(fake, status)
    await asyncio.sleep(0.01)  # a later last_seen_at would show
    token = forged(email="Security notice: https://evil.example/reset", plan="enterprise")
    assert await post(http, gateway, token) == status
    await settled(gateway, 2)
    assert await accounts(gateway) == [before]  # email, plan, fingerprint, seen times
    first, refused = await requests(gateway)
    assert (first.account_id, refused.account_id, refused.status) == (before.id, None, status)


@pytest.mark.parametrize("status", [401, 403])
async def test_a_forged_token_for_a_new_seat_that_the_upstream_refuses_creates_no_account(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession, status: int
) -> None:
    refuse(fake, status)
    for n in range(3):
        assert await post(http, gateway, forged(user=f"user-{n}", email=f"x{n}@evil")) == status
    assert await post(http, gateway, "Bearer not-a-jwt-at-all") == status
    await settled(gateway, 4)
    assert await accounts(gateway) == []
    assert [(r.account_id, r.status) for r in await requests(gateway)] == [(None, status)] * 4


async def test_a_refused_websocket_handshake_creates_no_account(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.ws_handshake_status = 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await http.ws_connect(
            f"http://127.0.0.1:{gateway.port}/backend-api/codex/responses",
            headers={"Authorization": forged(email="ws@evil")},
        )
    assert refused.value.status == 401
    await settled(gateway, 1)
    assert await accounts(gateway) == []
    [row] = await requests(gateway)
    assert (row.account_id, row.error_code) == (None, "handshake_refused")


async def test_an_accepted_turn_creates_the_account_and_a_newer_one_updates_it(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    before = await victim(http, gateway, fake)
    fake.response_headers = {}  # a 200 proves the token without any rate-limit data
    assert await post(http, gateway, forged(email="alice@new.example", plan="pro")) == 200
    await settled(gateway, 2)
    [after] = await accounts(gateway)
    assert (after.id, after.email, after.plan_type) == (before.id, "alice@new.example", "pro")
    assert after.token_fingerprint != before.token_fingerprint
    assert after.last_seen_at > before.last_seen_at


async def test_an_answer_that_proves_nothing_joins_an_existing_account_without_changing_it(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    before = await victim(http, gateway, fake)
    for status in (500, 400, 404):
        refuse(fake, status, SERVER_ERROR)
        assert await post(http, gateway, forged(email="boss@evil.example")) == status
        # The same answer for a seat nobody has seen yet: logged, no account.
        assert await post(http, gateway, forged(user="user-NEW", email="new@evil")) == status
    await settled(gateway, 7)
    assert await accounts(gateway) == [before]
    rows = await requests(gateway)
    assert [r.account_id for r in rows] == [before.id] + [before.id, None] * 3


async def test_rate_limit_data_proves_a_credential_whatever_the_status(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.status = 503  # with the sample x-codex headers
    fake.error_body = SERVER_ERROR
    assert await post(http, gateway, bearer("personal")) == 503
    await settled(gateway, 1)
    [account] = await accounts(gateway)
    assert account.email == "carol@example.com"
    [row] = await requests(gateway)
    assert row.account_id == account.id


async def test_claims_and_headers_are_stored_without_controls_and_capped(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = []  # the stream's model would win over the header's
    fake.response_headers = {
        **fake.response_headers,
        # aiohttp refuses to write controls into a header; invisible formatting passes.
        "x-codex-plan-type": "plus\u202e\ufeff",
        "openai-model": "gpt\u2066-5\u200b",
    }
    email = "\x1b]0;owned\x07alice\u202egro.live@example.com\u200b" + "x" * 5000
    token = forged(email=email, user="user-\x1b[31mAAAA", workspace="acct\u2067-team-1")
    assert await post(http, gateway, token) == 200
    await settled(gateway, 1)
    [account] = await accounts(gateway)
    assert account.account_key == "seat:acct-team-1:user-[31mAAAA"
    assert account.email is not None
    assert account.email.startswith("]0;ownedalicegro.live@example.com")
    assert len(account.email) == MAX_STORED_TEXT
    assert account.plan_type == "plus"
    [row] = await requests(gateway)
    assert row.model == "gpt-5"
    for text in (account.account_key, account.email, account.chatgpt_user_id, row.model):
        assert text is not None
        assert not has_unsafe(text)


# -- item 4: traffic creates at most max_accounts accounts -------------------------------------


async def test_traffic_creates_at_most_max_accounts_and_the_rest_is_counted(
    start_gateway: StartGateway,
    http: ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_gateway(admin_token=ADMIN, max_accounts=2)
    admin = Admin(http, server)
    caplog.set_level(logging.WARNING, logger="codexgate.services.recorder")
    for seat in ("seat_a", "seat_b"):
        assert await post(http, server, bearer(seat)) == 200
    await settled(server, 2)
    assert await post(http, server, bearer("personal")) == 200  # a third seat: refused
    await settled(server, 3)
    assert await post(http, server, bearer("personal")) == 200  # and again, in a later batch
    assert await post(http, server, bearer("seat_a")) == 200  # existing seats keep recording
    await settled(server, 5)
    found = await accounts(server)
    assert [a.email for a in found] == ["alice@example.com", "bob@example.com"]
    rows = await requests(server)
    assert [r.account_id for r in rows] == [found[0].id, found[1].id, None, None, found[0].id]
    recorder = app_of(server)[RECORDER].stats()
    assert (recorder.recorded, recorder.unattributed, recorder.accounts_refused) == (3, 2, 4)
    health = await admin.ok("GET", "healthz")
    assert health["accounts"] == {"max": 2, "refused": 4}
    assert health["snapshots"]["unattributed"] == 2
    warnings = [r for r in caplog.records if "max_accounts" in r.getMessage()]
    assert len(warnings) == 1  # at most once a minute
    # The admin is not limited.
    added = await admin.ok("POST", "api/v1/accounts", 201, json={"token": bearer("personal")})
    assert added["email"] == "carol@example.com"
    assert len(await accounts(server)) == 3


# -- item 12: no more than 8 hex digits of a token's hash are ever shown -----------------------


def assert_short(body: bytes, digest: str) -> None:
    """No 9 consecutive hex digits of the token's SHA-256 appear in body."""
    for start in range(len(digest) - 8):
        assert digest[start : start + 9].encode() not in body, body


async def test_the_feed_and_the_api_show_at_most_8_hex_digits_of_a_tokens_hash(
    server: TestServer, admin: Admin, http: ClientSession
) -> None:
    digest = hashlib.sha256(OPAQUE.encode()).hexdigest()
    feed = await http.get(
        f"http://127.0.0.1:{server.port}/codexgate/api/v1/events",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert feed.status == 200
    assert await post(http, server, f"Bearer {OPAQUE}") == 200
    await settled(server, 1)
    [account] = await accounts(server)
    assert account.account_key == f"token:{digest}"  # stored whole, so existing rows still match
    received = b""
    async with asyncio.timeout(5):
        while b"event: account" not in received or b"event: request" not in received:
            received += await feed.content.readany()
    feed.close()
    assert_short(received, digest)
    [event] = [
        orjson.loads(line.removeprefix(b"data: "))
        for block in received.replace(b"\r\n", b"\n").split(b"\n\n")
        if b"event: account" in block
        for line in block.split(b"\n")
        if line.startswith(b"data: ")
    ]
    shown = event["account"]
    assert (shown["account_key"], shown["token_fingerprint"]) == (
        f"token:{digest[:8]}",
        digest[:8],
    )
    for path in ("api/v1/accounts", f"api/v1/accounts/{account.id}", "codex/tokens", "codex/usage"):
        answer = await admin.call("GET", path)
        assert answer.status == 200, path
        assert_short(answer.body, digest)
    page = await admin.call("GET", "")
    assert_short(page.body, digest)
