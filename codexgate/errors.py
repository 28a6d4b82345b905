"""The one JSON error shape codexgate answers with, in the upstream's style."""

from __future__ import annotations

import orjson
from aiohttp import web


def error_body(error_type: str, message: str) -> bytes:
    """Serialise `{"error": {"type", "message"}}` the way the upstream writes its errors."""
    return orjson.dumps({"error": {"type": error_type, "message": message}})


def error_response(
    status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON error answer from codexgate itself."""
    return web.Response(
        status=status,
        body=error_body(error_type, message),
        content_type="application/json",
        headers=headers,
    )
