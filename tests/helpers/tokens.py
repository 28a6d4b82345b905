"""Bearer tokens for tests: JWTs carrying the sample claims (a gateway never checks signatures)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.helpers.fake_upstream import load_sample


def _b64url(data: bytes) -> str:
    """base64url without padding, as in a JWT."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT carrying `claims`."""
    header = _b64url(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}))
    return f"{header}.{_b64url(orjson.dumps(claims))}.{_b64url(b'dummy-signature')}"


def claims_of(name: str) -> dict[str, Any]:
    """One payload from tests/data/jwt-claims.json."""
    claims: dict[str, Any] = load_sample("jwt-claims.json")[name]
    return claims


def bearer(name: str) -> str:
    """An Authorization header value for the named sample seat."""
    return f"Bearer {make_jwt(claims_of(name))}"
