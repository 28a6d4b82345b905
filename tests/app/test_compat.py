"""The original plan's routes (codex/usage, codex/tokens) in that plan's shapes."""

from __future__ import annotations

import hashlib

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tests.helpers.admin_client import ADMIN, JWTS, OPAQUE, Admin, assert_envelope, assert_no_secret
from tests.helpers.compat import assert_compat_error
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, recorded, turn

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")


async def test_tokens_and_usage_in_the_plans_shapes(
    admin: Admin, server: TestServer, http: ClientSession
) -> None:
    token = JWTS["seat_a"]
    added = await admin.ok("POST", "codex/tokens", json={"token": token, "name": "Alice"})
    assert added["status"] == "success"
    key = added["data"]["key"]
    assert added["data"] == {
        "key": key,
        "name": "Alice",
        "email": "alice@example.com",
        "fingerprint": hashlib.sha256(token.encode()).hexdigest()[:8],
    }
    assert key.isdigit()
    await admin.ok("POST", "codex/tokens", json={"token": OPAQUE})

    tokens = await admin.ok("GET", "codex/tokens")
    assert tokens["status"] == "success"
    assert tokens["data"][0]["key"] == key
    assert len(tokens["data"]) == 2
    assert all(set(t) == {"key", "name", "email", "fingerprint"} for t in tokens["data"])

    before = await admin.ok("GET", f"codex/usage/{key}")
    assert before["data"]["five_hour"] is None
    assert before["data"]["updated_at"] is None

    assert await turn(http, server, f"Bearer {token}") == 200
    await recorded(server, 1)
    usage = await admin.ok("GET", "codex/usage")
    assert usage["status"] == "success"
    alice = next(entry for entry in usage["data"] if entry["key"] == key)
    assert set(alice) == {
        "key",
        "name",
        "email",
        "plan_type",
        "five_hour",
        "seven_day",
        "monthly",
        "updated_at",
        "updated_at_iso",
    }
    assert alice["name"] == "Alice"
    assert alice["plan_type"] == "plus"  # the headers' plan, newer than the token's claim
    assert alice["five_hour"]["used_percent"] == 46.0
    assert alice["five_hour"]["window_minutes"] == 300
    assert alice["five_hour"]["resets_at"] == 1893456000
    assert alice["five_hour"]["resets_at_iso"] == "2030-01-01T00:00:00Z"
    assert alice["seven_day"]["used_percent"] == 15.0
    assert alice["monthly"] is None
    assert isinstance(alice["updated_at"], float)
    one = await admin.ok("GET", f"codex/usage/{key}")
    assert one["status"] == "success"
    assert one["data"]["five_hour"]["used_percent"] == 46.0

    renamed = await admin.ok("PUT", f"codex/tokens/{key}", json={"name": "Alice W."})
    assert renamed == {"status": "success", "data": {**added["data"], "name": "Alice W."}}

    assert await admin.ok("DELETE", f"codex/tokens/{key}") == {"status": "success"}
    gone = await admin.call("GET", f"codex/usage/{key}")
    assert gone.status == 404
    assert_compat_error(gone.json, "not_found", "not_found")
    assert [t["key"] for t in (await admin.ok("GET", "codex/tokens"))["data"]] != [key]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "codex/usage/999"),
        ("GET", "codex/usage/abc"),
        ("PUT", "codex/tokens/999"),
        ("DELETE", "codex/tokens/999"),
    ],
)
async def test_unknown_keys_are_the_plans_not_found(admin: Admin, method: str, path: str) -> None:
    answer = await admin.call(method, path, json={"name": "x"})
    assert answer.status == 404
    assert_compat_error(answer.json, "not_found", "not_found")


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("POST", b"{}", "token"),
        ("POST", b"nope", "body"),
        ("POST", b'{"token": "t", "name": ""}', "name"),
        ("PUT", b"{}", "name"),
        ("PUT", b'{"name": 3}', "name"),
    ],
)
async def test_bad_bodies_are_400_with_the_field(
    admin: Admin, method: str, body: bytes, field: str
) -> None:
    added = await admin.ok("POST", "codex/tokens", json={"token": OPAQUE})
    path = "codex/tokens" if method == "POST" else f"codex/tokens/{added['data']['key']}"
    answer = await admin.call(method, path, data=body)
    assert answer.status == 400
    assert_compat_error(answer.json, "error", "invalid_request")
    assert answer.json["error"]["field"] == field


async def test_compat_routes_want_the_admin_credential_and_the_right_method(admin: Admin) -> None:
    for method, path in [
        ("GET", "codex/usage"),
        ("GET", "codex/usage/1"),
        ("GET", "codex/tokens"),
        ("POST", "codex/tokens"),
        ("PUT", "codex/tokens/1"),
        ("DELETE", "codex/tokens/1"),
    ]:
        assert_envelope(await admin.call(method, path, auth=None), 401, "unauthorized")
    wrong = await admin.call("DELETE", "codex/tokens")
    assert_envelope(wrong, 405, "method_not_allowed")
    assert wrong.headers["Allow"] == "GET,HEAD,POST"
    wrong = await admin.call("GET", "codex/tokens/1")
    assert_envelope(wrong, 405, "method_not_allowed")
    assert wrong.headers["Allow"] == "DELETE,PUT"


async def test_with_admin_prefix_api_xxx_they_are_the_plans_exact_urls(
    start_gateway: StartGateway, http: ClientSession, fake: FakeUpstream
) -> None:
    server = await start_gateway(admin_token=ADMIN, admin_prefix="api_xxx")
    admin = Admin(http, server, prefix="api_xxx")
    added = await admin.ok("POST", "codex/tokens", json={"token": JWTS["personal"]})
    key = added["data"]["key"]
    assert (await admin.ok("GET", "codex/tokens"))["data"] == [added["data"]]
    assert (await admin.ok("GET", "codex/usage"))["data"][0]["key"] == key
    assert (await admin.ok("GET", f"codex/usage/{key}"))["data"]["key"] == key
    assert (await admin.ok("PUT", f"codex/tokens/{key}", json={"name": "c"}))["data"]["name"] == "c"
    assert await admin.ok("DELETE", f"codex/tokens/{key}") == {"status": "success"}
    api = await admin.ok("GET", "api/v1/accounts")
    assert api == {"accounts": [], "next_cursor": None}
    # The default prefix is nobody's now: like any path outside the Codex backend, it is neither
    # served nor relayed.
    async with http.get(f"http://127.0.0.1:{server.port}/codexgate/codex/usage") as response:
        body = await response.read()
        assert response.status == 404
    assert_no_secret(body)
    assert fake.received == []
