"""The admin credential and session cookie as a test client holds them."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Final

import orjson
from aiohttp import ClientResponse, ClientSession
from aiohttp.test_utils import TestServer

from codexgate.security import SESSION_COOKIE

ADMIN_TOKEN: Final = "test-admin-token-0123456789"
OTHER_TOKEN: Final = "another-admin-token-9876543210"


def url(server: TestServer, path: str) -> str:
    """An absolute URL on that test server."""
    return f"http://127.0.0.1:{server.port}{path}"


def origin(server: TestServer) -> str:
    """The Origin a browser on that test server sends."""
    return f"http://127.0.0.1:{server.port}"


def admin(token: str = ADMIN_TOKEN) -> dict[str, str]:
    """The Authorization header of the admin credential."""
    return {"Authorization": f"Bearer {token}"}


async def error_type(response: ClientResponse) -> str:
    """The error type of an answer in the one envelope (and nothing else in it)."""
    body = orjson.loads(await response.read())
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message"}
    kind: str = body["error"]["type"]
    return kind


def set_cookie(response: ClientResponse) -> str:
    """The Set-Cookie line of the session cookie."""
    lines = [v for v in response.headers.getall("Set-Cookie", ()) if SESSION_COOKIE in v]
    assert len(lines) == 1, lines
    return lines[0]


def cookie_value(response: ClientResponse) -> str:
    """The session cookie's value."""
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(set_cookie(response))
    return parsed[SESSION_COOKIE].value


async def sign_in(http: ClientSession, server: TestServer, token: str = ADMIN_TOKEN) -> str:
    """The session cookie header a browser holds after following the login URL."""
    async with http.get(
        url(server, "/codexgate/login"), params={"token": token}, allow_redirects=False
    ) as response:
        assert response.status == 303
        return f"{SESSION_COOKIE}={cookie_value(response)}"
