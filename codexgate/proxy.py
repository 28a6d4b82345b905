"""Forwarding every request that is not codexgate's own to the upstream, streamed both ways."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import urllib.request
from dataclasses import dataclass, field
from typing import Final, TypeVar

from aiohttp import (
    ClientError,
    ClientResponse,
    ClientSession,
    ClientWebSocketResponse,
    ClientWSTimeout,
    ServerTimeoutError,
    TraceConfig,
    TraceRequestEndParams,
    WSCloseCode,
    WSMsgType,
    WSServerHandshakeError,
    hdrs,
    web,
)
from multidict import CIMultiDict, MultiMapping
from yarl import URL

from .errors import error_response
from .keys import CONFIG, IDENTITIES, PROXIED, RECORDER, UPSTREAM_SESSION, UPSTREAM_WS_SESSION
from .observe import HttpExchange, WebSocketExchange
from .security import SESSION_COOKIE_MARK, strip_admin_cookie

log = logging.getLogger(__name__)

# RFC 9110 §7.6.1: these describe one connection, not the message, so they are never relayed.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",  # non-standard, still sent by some clients
        "te",
        "trailer",
        "transfer-encoding",  # each side frames its own body
        "upgrade",
    }
)
# The upstream's Host comes from the target URL; Expect was already answered by our server.
REQUEST_HEADERS_DROPPED: Final = HOP_BY_HOP | {"host", "expect"}
RESPONSE_HEADERS_DROPPED: Final = HOP_BY_HOP
# aiohttp makes these anew for each leg of a WebSocket (key, version, negotiated extensions).
WS_HANDSHAKE_HEADERS: Final = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
WS_DROPPED: Final = HOP_BY_HOP | WS_HANDSHAKE_HEADERS | {"content-length"}
# No idle limit on an open WebSocket (the client pings as it likes); closing waits 10 s at most.
WS_TIMEOUT: Final = ClientWSTimeout(ws_receive=None, ws_close=10.0)
ERROR_HEADER: Final = "X-Codexgate-Error"
# Defaults aiohttp's client would add by itself; the client's own values (if any) pass through.
SKIP_AUTO_HEADERS: Final = frozenset(
    {hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE}
)


_E = TypeVar("_E", HttpExchange, WebSocketExchange)


@dataclass(slots=True)
class _Handshake:
    """The upstream's answer to a WebSocket upgrade, kept by the trace below."""

    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


# aiohttp keeps a WebSocket handshake's response to itself; a trace on the WebSocket session
# hands its headers to the relay that is awaiting ws_connect in the same task.
HANDSHAKE: Final[contextvars.ContextVar[_Handshake | None]] = contextvars.ContextVar(
    "codexgate_handshake", default=None
)


async def _keep_handshake(
    session: ClientSession, context: object, params: TraceRequestEndParams
) -> None:
    handshake = HANDSHAKE.get()
    if handshake is not None:
        handshake.headers = CIMultiDict(params.response.headers)


def handshake_trace() -> TraceConfig:
    """The trace config of the WebSocket session."""
    trace = TraceConfig()
    trace.on_request_end.append(_keep_handshake)
    return trace


def environment_proxy(upstream: URL) -> URL | None:
    """The proxy that HTTP(S)_PROXY / NO_PROXY choose for the upstream, decided once at start.

    aiohttp's trust_env would redo this (and read ~/.netrc) on every request.
    """
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(upstream.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(upstream.host_port_subcomponent or ""):
        return None
    return URL(proxy)


def upstream_url(upstream: URL, request_target: URL) -> URL:
    """Join the configured origin with the request's path and query, never changing the host."""
    path_and_query = request_target.raw_path_qs
    if not path_and_query.startswith("/"):
        path_and_query = "/" + path_and_query
    # String concatenation, not URL.join: a path such as "//evil.example/" must stay a path.
    target = URL(f"{upstream}{path_and_query}", encoded=True)
    if target.origin() != upstream:
        raise ValueError(f"target {target.origin()} escaped the upstream origin")
    return target


def _connection_tokens(headers: MultiMapping[str]) -> frozenset[str]:
    """Header names listed in Connection, which are hop-by-hop for this message only."""
    tokens: set[str] = set()
    for value in headers.getall(hdrs.CONNECTION, ()):
        tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return frozenset(tokens)


def _filtered(headers: MultiMapping[str], dropped: frozenset[str]) -> CIMultiDict[str]:
    """A copy of `headers` without the dropped names and those the Connection header lists."""
    dropped = dropped | _connection_tokens(headers)
    return CIMultiDict(
        (name, value) for name, value in headers.items() if name.lower() not in dropped
    )


def _appended(existing: str | None, value: str) -> str:
    return f"{existing}, {value}" if existing else value


def request_headers_for_upstream(request: web.Request) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones, with X-Forwarded-For/-Proto appended."""
    forwarded = _filtered(request.headers, REQUEST_HEADERS_DROPPED)
    forwarded[hdrs.X_FORWARDED_FOR] = _appended(
        forwarded.get(hdrs.X_FORWARDED_FOR), request.remote or "unknown"
    )
    forwarded[hdrs.X_FORWARDED_PROTO] = _appended(
        forwarded.get(hdrs.X_FORWARDED_PROTO), request.scheme
    )
    # The admin session cookie never goes upstream; other cookies pass. Rare, so test cheaply.
    cookies = forwarded.getall(hdrs.COOKIE, ())
    if cookies and any(SESSION_COOKIE_MARK in cookie for cookie in cookies):
        del forwarded[hdrs.COOKIE]
        for cookie in cookies:
            if (kept := strip_admin_cookie(cookie)) is not None:
                forwarded.add(hdrs.COOKIE, kept)
    return forwarded


def response_headers_for_client(upstream: ClientResponse) -> CIMultiDict[str]:
    """The upstream's headers minus hop-by-hop ones; Content-Encoding stays, bodies are raw."""
    return _filtered(upstream.headers, RESPONSE_HEADERS_DROPPED)


def _gateway_error(status: int, error_type: str, message: str) -> web.Response:
    return error_response(
        status, error_type, f"codexgate: {message}", headers={ERROR_HEADER: error_type}
    )


async def _open_upstream(
    session: ClientSession, request: web.Request, target: URL
) -> ClientResponse | web.Response:
    """Send the request upstream; a failure before any answer becomes a 502 or 504."""
    try:
        return await session.request(
            request.method,
            target,
            headers=request_headers_for_upstream(request),
            data=request.content if request.body_exists else None,
            allow_redirects=False,
            skip_auto_headers=SKIP_AUTO_HEADERS,
        )
    except ClientError as exc:
        return _upstream_failure(exc, target)


def _upstream_failure(exc: ClientError, target: URL) -> web.Response:
    """The 504 (connect or idle timeout) or 502 (anything else) for a request that got no answer."""
    if isinstance(exc, ServerTimeoutError):
        return _gateway_error(
            504, "upstream_timeout", f"the upstream {target.origin()} did not answer in time"
        )
    log.warning("upstream %s unreachable: %s", target.origin(), exc.__class__.__name__)
    return _gateway_error(
        502,
        "upstream_unreachable",
        f"could not reach the upstream {target.origin()} ({exc.__class__.__name__})",
    )


def _new_exchange(request: web.Request, kind: type[_E]) -> _E | None:
    app = request.app
    if not app[CONFIG].capture:
        return None
    return kind(request, app[RECORDER], app[IDENTITIES])


async def forward(request: web.Request) -> web.StreamResponse:
    """Relay one request to the upstream and stream its answer back chunk by chunk."""
    app = request.app
    try:
        target = upstream_url(app[CONFIG].upstream, request.rel_url)
    except ValueError:
        return _gateway_error(400, "invalid_request_target", "the request target is not a path")
    if _is_websocket_upgrade(request):
        return await relay_websocket(request, target)
    exchange = _new_exchange(request, HttpExchange)
    upstream = await _open_upstream(app[UPSTREAM_SESSION], request, target)
    if isinstance(upstream, web.Response):
        if exchange is not None:
            exchange.finish(status=upstream.status, error_code=upstream.headers[ERROR_HEADER])
        return upstream
    error_code: str | None = None
    try:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=response_headers_for_client(upstream),
        )
        if exchange is not None:
            response[PROXIED] = exchange
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                if exchange is not None:
                    exchange.body_chunk(chunk)
        except ConnectionResetError:
            error_code = "client_disconnected"
            return response
        except (ClientError, TimeoutError) as exc:
            # The client already has the status line, so no error answer is possible: cut the
            # connection, so the client sees a broken body rather than a short one that looks whole.
            log.warning("upstream stream for %s broke: %s", request.path, exc.__class__.__name__)
            error_code = "upstream_stream_broken"
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    except asyncio.CancelledError:
        error_code = "client_disconnected"
        raise
    finally:
        # An unfinished body closes the upstream connection; a finished one returns it to the pool.
        upstream.release()
        if exchange is not None:
            exchange.finish(error_code=error_code)


def _is_websocket_upgrade(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        and "upgrade" in _connection_tokens(request.headers)
    )


async def relay_websocket(request: web.Request, target: URL) -> web.StreamResponse:
    """Relay a WebSocket: handshake upstream first, then frames both ways as they arrive."""
    app = request.app
    if app[CONFIG].websocket == "refuse":
        # 426 makes the Codex client fall back to HTTP for the session at once.
        return _gateway_error(
            426, "websocket_refused", "WebSocket relaying is off here; use HTTP (SSE) instead"
        )
    exchange = _new_exchange(request, WebSocketExchange)
    protocols = [
        protocol.strip()
        for value in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ())
        for protocol in value.split(",")
        if protocol.strip()
    ]
    handshake = _Handshake()
    token = HANDSHAKE.set(handshake)
    try:
        upstream = await app[UPSTREAM_WS_SESSION].ws_connect(
            target,
            headers=_websocket_headers_for_upstream(request),
            protocols=protocols,
            autoping=False,  # pings and pongs are relayed, not answered here
            autoclose=False,  # close frames are relayed with their codes
            # Offer permessage-deflate upstream only if the client offered it: on loopback and
            # fast links compression halves throughput, and the client knows what it wants.
            compress=15 if _offers_deflate(request) else 0,
            max_msg_size=0,
            timeout=WS_TIMEOUT,
        )
    except WSServerHandshakeError as exc:
        refused = web.Response(
            status=exc.status, headers=_filtered(exc.headers or CIMultiDict(), WS_DROPPED)
        )
        if exchange is not None:
            refused[PROXIED] = exchange
        return refused
    except ClientError as exc:
        return _upstream_failure(exc, target)
    finally:
        HANDSHAKE.reset(token)
    try:
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (),
            autoping=False,
            autoclose=False,
            compress=True,  # accept the client's permessage-deflate offer
            max_msg_size=0,
        )
        client.headers.extend(_filtered(handshake.headers, WS_DROPPED))
        if exchange is not None:
            client[PROXIED] = exchange
        await client.prepare(request)
        try:
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(_client_to_upstream(client, upstream, exchange))
                pumps.create_task(_upstream_to_client(upstream, client, exchange))
        except* (ConnectionError, ClientError) as broken:
            # One side went away mid-frame; the other is closed below. Nothing to report.
            log.debug("WebSocket relay for %s ended: %r", request.path, broken.exceptions[0])
        return client
    finally:
        await upstream.close()
        if exchange is not None:
            exchange.closed()


def _offers_deflate(request: web.Request) -> bool:
    return any(
        "permessage-deflate" in value.lower()
        for value in request.headers.getall(hdrs.SEC_WEBSOCKET_EXTENSIONS, ())
    )


def _websocket_headers_for_upstream(request: web.Request) -> CIMultiDict[str]:
    """The client's handshake headers, minus those aiohttp makes anew for the upstream leg."""
    headers = request_headers_for_upstream(request)
    for name in WS_HANDSHAKE_HEADERS:
        headers.popall(name, None)
    return headers


async def _client_to_upstream(
    client: web.WebSocketResponse,
    upstream: ClientWebSocketResponse,
    exchange: WebSocketExchange | None,
) -> None:
    """Relay the client's frames upstream until either side closes."""
    while True:
        message = await client.receive()
        match message.type:
            case WSMsgType.TEXT:
                if exchange is not None:
                    exchange.client_text(message.data)
                await upstream.send_str(message.data)
            case WSMsgType.BINARY:
                if exchange is not None:
                    exchange.binary(len(message.data), from_client=True)
                await upstream.send_bytes(message.data)
            case WSMsgType.PING:
                await upstream.ping(message.data)
            case WSMsgType.PONG:
                await upstream.pong(message.data)
            case WSMsgType.CLOSE:
                reason = (message.extra or "").encode()
                await upstream.close(code=message.data, message=reason)
                await client.close(code=message.data, message=reason)
                return
            case WSMsgType.CLOSING:  # the other pump is closing this socket
                return
            case _:  # the client's connection is gone without a close frame
                await upstream.close(code=WSCloseCode.GOING_AWAY)
                return


async def _upstream_to_client(
    upstream: ClientWebSocketResponse,
    client: web.WebSocketResponse,
    exchange: WebSocketExchange | None,
) -> None:
    """Relay the upstream's frames to the client until either side closes."""
    while True:
        message = await upstream.receive()
        match message.type:
            case WSMsgType.TEXT:
                await client.send_str(message.data)
                if exchange is not None:
                    exchange.server_text(message.data)
            case WSMsgType.BINARY:
                await client.send_bytes(message.data)
                if exchange is not None:
                    exchange.binary(len(message.data), from_client=False)
            case WSMsgType.PING:
                await client.ping(message.data)
            case WSMsgType.PONG:
                await client.pong(message.data)
            case WSMsgType.CLOSE:
                reason = (message.extra or "").encode()
                await client.close(code=message.data, message=reason)
                await upstream.close(code=message.data, message=reason)
                return
            case WSMsgType.CLOSING:
                return
            case _:
                await client.close(
                    code=WSCloseCode.INTERNAL_ERROR, message=b"upstream connection lost"
                )
                return
