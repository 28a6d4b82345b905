"""The live feed's HTTP side: `GET /<prefix>/api/v1/events`, its SSE framing and replay.

Wire format (the rules of aiohttp-sse, framed here): the answer is `text/event-stream` with
`Cache-Control: no-cache` and `X-Accel-Buffering: no`, never compressed. Lines end in CRLF;
every event is `id: <cursor>`, `event: usage|request|account|alert` and one `data:` line of
JSON, then a blank line. The stream opens with a `retry:` hint, a `: ping` comment comes every
ping interval, and anything else starting with `:` is a comment for people.

Payloads are the REST shapes (api/schemas.py): a `request` event is the item GET requests
lists, an `alert` event the item GET alerts lists, a `usage` event carries the item GET
accounts/{id}/history lists as its `row`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import aclosing
from types import MappingProxyType
from typing import Final, Literal

import orjson
from aiohttp import web

from codexgate.api.errors import error_response
from codexgate.api.schemas import account_event_json, alert_json, request_json, usage_event_json
from codexgate.core.rows import AlertRow, FeedCursor, RequestRow, UsageRow
from codexgate.keys import EVENT_BUS, FORECASTS, STORE
from codexgate.services.feed import (
    FeedEvent,
    Framing,
    Subscription,
    advance,
    event_id,
    feed_event,
    parse_event_id,
    read_after,
    within,
)
from codexgate.services.forecasts import ForecastCache
from codexgate.storage.interface import Storage, StorageUnavailable

log = logging.getLogger(__name__)

SEP: Final = b"\r\n"  # aiohttp-sse's line separator
# Set on the stream's answer; nothing may compress it (a compressor would hold events back).
SSE_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx and friends: do not buffer the stream
    }
)
PING: Final = b": ping" + SEP + SEP
# Replayed frames written to the client at once.
_REPLAY_CHUNK: Final = 100

Kind = Literal["usage", "request", "account", "alert"]


def frame(kind: Kind, cursor: FeedCursor, payload: object) -> bytes:
    """One SSE event; orjson writes no raw line breaks, so the JSON is one data line."""
    return b"".join(
        (
            b"id: ",
            event_id(cursor).encode("ascii"),
            SEP,
            b"event: ",
            kind.encode("ascii"),
            SEP,
            b"data: ",
            orjson.dumps(payload),
            SEP,
            SEP,
        )
    )


def encode_event(event: FeedEvent) -> bytes:
    """An event framed for the wire, its payload in the REST shape of its row."""
    row = event.row
    if isinstance(row, UsageRow):
        return frame("usage", event.cursor, usage_event_json(row, event.at, event.forecasts))
    if isinstance(row, RequestRow):
        return frame("request", event.cursor, request_json(row))
    if isinstance(row, AlertRow):
        return frame("alert", event.cursor, alert_json(row))
    payload = account_event_json(row.event.account_id, row.event.kind, row.account)
    return frame("account", event.cursor, payload)


# What the bus encodes its events with.
SSE_FRAMING: Final = Framing(encode=encode_event, ping=PING)


def _comment(text: str) -> bytes:
    """A comment line: ignored by EventSource, there for people reading the stream."""
    return b": " + text.encode("ascii") + SEP


async def stream_events(request: web.Request) -> web.StreamResponse:
    """GET api/v1/events: the live feed, replaying from the store after a Last-Event-ID.

    Replayed and live rows carry the position after them as their id. A confirmation-only
    `usage` event (a row whose values were reported again: only its confirmed_at and age
    changed) is sent live with the current position as its id and is never replayed: the
    row's newest state is always one REST call away.
    """
    bus = request.app[EVENT_BUS]
    subscription = bus.subscribe()
    if subscription is None:
        retry = max(1, round(bus.options.retry_ms / 1000))
        return error_response(
            503,
            "too_many_subscribers",
            f"the live feed has its maximum of {bus.max_subscribers} streams open; "
            f"retry in {retry}s",
            headers={"Retry-After": str(retry)},
        )
    # The header (sent by EventSource when it reconnects) wins; a page's first connection names
    # the position it was rendered at in the query, since EventSource cannot set the header.
    raw = request.headers.get("Last-Event-ID", request.query.get("last_event_id", "")).strip()
    after = parse_event_id(raw) if raw else None
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        await response.prepare(request)
    except BaseException:
        bus.unsubscribe(subscription)
        raise
    transport = request.transport
    if transport is not None:
        subscription.abort = transport.abort
    try:
        head = [b"retry: %d" % bus.options.retry_ms + SEP]
        if raw and after is None:
            head.append(_comment("Last-Event-ID not understood: live from now, nothing replayed"))
        elif after is not None and not within(after, subscription.start):
            head.append(_comment("Last-Event-ID is ahead of this feed: live from now"))
            after = None
        if after is None:
            # An id without data sets the client's last id: a reconnect resumes from here.
            head.append(b"id: " + event_id(subscription.start).encode("ascii") + SEP)
        await _write(response, subscription, b"".join(head) + SEP)
        if after is not None:
            await _replay(
                response, subscription, request.app[STORE], after, request.app.get(FORECASTS)
            )
        await _live(response, subscription)
    except ConnectionResetError:
        log.debug("live feed client went away")
    except StorageUnavailable:
        # The headers are sent: end the stream; the client reconnects with its last id.
        log.warning("live feed: replay from the database failed", exc_info=True)
    finally:
        bus.unsubscribe(subscription)
    return response


async def _write(response: web.StreamResponse, subscription: Subscription, data: bytes) -> None:
    """Write to the client, letting the bus cut the connection if the write hangs."""
    subscription.writing = True
    try:
        await response.write(data)
    finally:
        subscription.writing = False


async def _replay(
    response: web.StreamResponse,
    subscription: Subscription,
    store: Storage,
    after: FeedCursor,
    forecasts: ForecastCache | None,
) -> None:
    """Write the rows after `after` up to where live events start for this subscription."""
    cursor = after
    chunk: list[bytes] = []
    async with aclosing(read_after(store, after, subscription.start)) as rows:
        async for row in rows:
            if subscription.closed is not None:
                return
            cursor = advance(cursor, row)
            chunk.append(encode_event(await feed_event(row, cursor, time.time(), forecasts)))
            if len(chunk) >= _REPLAY_CHUNK:
                await _write(response, subscription, b"".join(chunk))
                chunk.clear()
    if chunk and subscription.closed is None:
        await _write(response, subscription, b"".join(chunk))


async def _live(response: web.StreamResponse, subscription: Subscription) -> None:
    """Write queued events and the bus's pings as they come, until the bus closes us."""
    while True:
        frames = await subscription.get()
        if not frames:
            return
        await _write(response, subscription, b"".join(frames))
