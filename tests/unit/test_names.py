"""Display names given through the API: no control or bidi characters, one clear 400."""

from __future__ import annotations

import pytest

from tests.helpers.admin_client import JWTS, OPAQUE, Admin, assert_envelope
from tests.helpers.compat import assert_compat_error

UNSAFE_NAMES = [
    "\x1b]0;x\x07",  # sets the terminal title of whoever lists the accounts
    "ops\x1b[2J",
    "admin\u202egpj.exe",  # right-to-left override
    "two\nlines",
    "zero\u200bwidth",
    "del\x7f",
    "c1\x9b31m",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
async def test_rest_create_and_rename_refuse_unsafe_names(admin: Admin, name: str) -> None:
    created = await admin.call("POST", "api/v1/accounts", json={"token": OPAQUE, "name": name})
    error = assert_envelope(created, 400, "invalid_request", "name")
    assert "control characters" in error["message"]
    account = await admin.ok("POST", "api/v1/accounts", json={"token": OPAQUE}, status=201)
    renamed = await admin.call(
        "PATCH", f"api/v1/accounts/{account['id']}", json={"display_name": name}
    )
    assert_envelope(renamed, 400, "invalid_request", "display_name")
    after = await admin.ok("GET", f"api/v1/accounts/{account['id']}")
    assert after["display_name"] is None


@pytest.mark.parametrize("name", UNSAFE_NAMES)
async def test_compat_tokens_refuse_unsafe_names(admin: Admin, name: str) -> None:
    created = await admin.call("POST", "codex/tokens", json={"token": JWTS["seat_a"], "name": name})
    assert created.status == 400
    assert_compat_error(created.json, "error", "invalid_request")
    added = await admin.ok("POST", "codex/tokens", json={"token": JWTS["seat_a"], "name": "ok"})
    key = added["data"]["key"]
    renamed = await admin.call("PUT", f"codex/tokens/{key}", json={"name": name})
    assert renamed.status == 400
    assert_compat_error(renamed.json, "error", "invalid_request")
    tokens = await admin.ok("GET", "codex/tokens")
    assert [t["name"] for t in tokens["data"]] == ["ok"]


async def test_ordinary_names_still_work(admin: Admin) -> None:
    account = await admin.ok(
        "POST", "api/v1/accounts", json={"token": OPAQUE, "name": "Équipe 東京 - ops"}, status=201
    )
    assert account["display_name"] == "Équipe 東京 - ops"
