"""The on_response_prepare signal: the headers of relayed responses go to their exchange."""

from __future__ import annotations

from aiohttp import web

from codexgate.keys import PROXIED, RECORDER


async def capture_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Hand a relayed response's headers to its exchange; never await, never raise."""
    exchange = response.get(PROXIED)
    if exchange is None:
        return
    try:
        exchange.response_prepared(response)
    except Exception as exc:  # noqa: BLE001 - monitoring costs a snapshot, never the response
        request.app[RECORDER].capture_failed(f"the response to {request.path}", exc)
