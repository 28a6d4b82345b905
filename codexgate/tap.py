"""The on_response_prepare signal: rate-limit headers of relayed responses become snapshots."""

from __future__ import annotations

import time

from aiohttp import hdrs, web

from .capture import parse_rate_limit_headers
from .keys import IDENTITIES, PROXIED, RECORDER
from .models import Snapshot

ACCOUNT_ID_HEADER = "ChatGPT-Account-ID"


async def capture_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Turn the headers of a response the proxy relays into a snapshot; never await, never raise."""
    if PROXIED not in response:
        return
    recorder = request.app[RECORDER]
    try:
        now = time.time()
        report = parse_rate_limit_headers(response.headers, now)
        if report is None:
            return
        identity = request.app[IDENTITIES].resolve(
            request.headers.get(hdrs.AUTHORIZATION), request.headers.get(ACCOUNT_ID_HEADER)
        )
        if identity is None:
            recorder.count_unattributed()
            return
        recorder.offer(
            Snapshot(
                identity=identity,
                captured_at=now,
                source="headers",
                report=report,
                http_status=response.status,
            )
        )
    except Exception as exc:  # noqa: BLE001 - monitoring costs a snapshot, never the response
        recorder.capture_failed(f"the response to {request.path}", exc)
