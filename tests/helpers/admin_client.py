"""A client of codexgate's own routes that checks every answer for leaked tokens."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tests.helpers.tokens import claims_of, make_jwt

ADMIN: Final = "admin-token-for-tests-0123456789"  # 32 characters
OPAQUE: Final = "sk-opaque-token-for-the-api-tests-7f3a"
JWTS: Final = {name: make_jwt(claims_of(name)) for name in ("seat_a", "seat_b", "personal")}
# Everything a body must never contain: every token the tests send, and the admin token.
SECRETS: Final = (ADMIN, OPAQUE, *JWTS.values(), *(jwt.split(".")[1] for jwt in JWTS.values()))


@dataclass(frozen=True)
class Answer:
    """One answer from codexgate's own routes."""

    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


def assert_no_secret(body: bytes) -> None:
    """No token the tests used appears in an answer."""
    for secret in SECRETS:
        assert secret.encode() not in body, "a token leaked into an answer"


class Admin:
    """A client of codexgate's own routes that checks every body it receives for tokens."""

    def __init__(self, http: ClientSession, server: TestServer, prefix: str = "codexgate") -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{server.port}/{prefix}"
        self.received = 0

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | io.BytesIO | None = None,
        auth: str | None = ADMIN,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request to /<prefix>/<path> with the admin bearer token unless auth is None."""
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = f"Bearer {auth}"
        if json is not None:
            data = orjson.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(
            method, f"{self.base}/{path}", data=data, headers=sent
        ) as response:
            body = await response.read()
            answer = Answer(response.status, body, dict(response.headers))
        assert_no_secret(body)
        self.received += 1
        return answer

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("GET", path, **kwargs)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON of an answer that must have `status`."""
        answer = await self.call(method, path, **kwargs)
        assert answer.status == status, answer.body
        assert answer.headers["Content-Type"].startswith("application/json")
        return answer.json


def assert_envelope(
    answer: Answer, status: int, error_type: str, field: str | None = None
) -> dict[str, Any]:
    """The one error envelope, exactly: {"error": {"type", "message"[, "field"]}}."""
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["type"] == error_type
    assert isinstance(error["message"], str)
    assert error["message"]
    if field is None:
        assert set(error) == {"type", "message"}
    else:
        assert set(error) == {"type", "message", "field"}
        assert error["field"] == field
    return error
