"""Forwarding every request that is not codexgate's own to the upstream, streamed both ways."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
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
    StreamReader,
    TraceConfig,
    TraceRequestEndParams,
    TraceRequestRedirectParams,
    WebSocketError,
    WSCloseCode,
    WSMessage,
    WSMsgType,
    WSServerHandshakeError,
    hdrs,
    web,
)
from multidict import CIMultiDict, MultiMapping
from yarl import URL

from codexgate.api.errors import error_response
from codexgate.capture.observe import HttpExchange, WebSocketExchange
from codexgate.core.sanitize import escape_unsafe
from codexgate.keys import (
    ADMIN_AUTH,
    CONFIG,
    IDENTITIES,
    PROXIED,
    RATE_LIMIT_HEADERS,
    RECORDER,
    REFRESH,
    UPSTREAM_SESSION,
    UPSTREAM_WS_SESSION,
)
from codexgate.proxy.paths import relayed
from codexgate.security import SESSION_COOKIE, SESSION_COOKIE_MARK, AdminAuth, strip_admin_cookie

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
MIB: Final = 1024 * 1024
ERROR_HEADER: Final = "X-Codexgate-Error"
# What aiohttp's writer refuses in a header: controls but tab, and DEL (RFC 9110 §5.5).
UNWRITABLE_HEADER_TEXT: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
# The surrogates that stand for bytes that were not UTF-8; aiohttp's writer leaves them out.
NOT_UTF8: Final = re.compile("[\ud800-\udfff]")
NOT_RELAYED: Final = "only the Codex backend's paths (/backend-api/, /api/codex/) are relayed"
# Defaults aiohttp's client would add by itself; the client's own values (if any) pass through.
# Given to the session (app.py), which converts them once; per request aiohttp redoes it.
SKIP_AUTO_HEADERS: Final = frozenset(
    {hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE}
)


_E = TypeVar("_E", HttpExchange, WebSocketExchange)


@dataclass(slots=True)
class _Handshake:
    """The upstream's answer to a WebSocket upgrade, kept by the trace below."""

    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


@dataclass(slots=True)
class _Ending:
    """The code for the upstream leg when the relay, not a pump, has to close it."""

    # When the client's connection closes, aiohttp cancels the handler (handler_cancellation),
    # and with it a pump that was still closing the upstream leg: the code it meant is here.
    upstream_code: int = WSCloseCode.GOING_AWAY


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


async def _refuse_redirect(
    session: ClientSession, context: object, params: TraceRequestRedirectParams
) -> None:
    # ws_connect has no allow_redirects: raising here, before aiohttp follows, makes the 3xx
    # reach the relay as a refused handshake (aiohttp closes the response on the way out).
    response = params.response
    raise WSServerHandshakeError(
        response.request_info,
        (),
        status=response.status,
        message="redirect not followed",
        headers=response.headers,
    )


def handshake_trace() -> TraceConfig:
    """The trace config of the WebSocket session: keeps handshakes, follows no redirect."""
    trace = TraceConfig()
    trace.on_request_end.append(_keep_handshake)
    trace.on_request_redirect.append(_refuse_redirect)
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


def _without(headers: MultiMapping[str], dropped: frozenset[str]) -> CIMultiDict[str]:
    """A copy of `headers` without the dropped names and those the Connection header lists."""
    if hdrs.CONNECTION in headers:
        dropped = dropped | _connection_tokens(headers)
    # A copy in C, then a few deletions: several times faster than a filtering generator.
    kept = CIMultiDict(headers)
    for name in dropped:
        if name in kept:
            del kept[name]
    return kept


def _filtered(headers: MultiMapping[str], dropped: frozenset[str]) -> CIMultiDict[str]:
    """An upstream answer's headers fit to relay: no dropped or Connection-listed name, no
    Set-Cookie for the admin session, no header with a control character aiohttp cannot write."""
    kept = _without(headers, dropped)
    if hdrs.SET_COOKIE in kept and any(
        SESSION_COOKIE in cookie for cookie in kept.getall(hdrs.SET_COOKIE)
    ):
        _drop_admin_set_cookie(kept)
    # One pass in C over every value; a tab or a non-UTF-8 byte makes it false too: rare, and
    # the exact rule then decides. Non-UTF-8 bytes are left to aiohttp, which writes the rest.
    if not "".join(kept.values()).isprintable():
        return _writable(kept)
    return kept


def _drop_admin_set_cookie(headers: CIMultiDict[str]) -> None:
    """Remove every Set-Cookie that would plant or overwrite the admin session cookie."""
    cookies = headers.popall(hdrs.SET_COOKIE)
    for cookie in cookies:
        # Browsers trim the name but compare it case-sensitively.
        if cookie.split("=", 1)[0].strip() != SESSION_COOKIE:
            headers.add(hdrs.SET_COOKIE, cookie)


def _writable(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """`headers` without the values that aiohttp would refuse to write, each one logged."""
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if UNWRITABLE_HEADER_TEXT.search(value) is None:
            kept.add(name, value)
        else:
            log.warning(
                "dropped the upstream's header %s: its value has a control character",
                escape_unsafe(name),
            )
    return kept


def _appended(existing: str | None, value: str) -> str:
    return f"{existing}, {value}" if existing else value


def request_headers_for_upstream(request: web.Request) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones, with X-Forwarded-For/-Proto appended."""
    forwarded = _without(request.headers, REQUEST_HEADERS_DROPPED)
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
    """The upstream's headers minus hop-by-hop ones, an admin Set-Cookie and unwritable ones;
    Content-Encoding stays, bodies are raw."""
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
            data=_request_body(request),
            allow_redirects=False,
        )
    except ClientError as exc:
        return _upstream_failure(exc, target)


def _request_body(request: web.Request) -> bytes | StreamReader | None:
    """The body to send upstream: streamed as it comes, or as bytes when it came whole with
    its headers (the usual turn), which spares aiohttp's streaming payload and its reads."""
    if not request.body_exists:
        return None
    content = request.content
    if content.is_eof() and content.exception() is None:
        return content.read_nowait()
    return content


def _upstream_failure(exc: ClientError, target: URL) -> web.Response:
    """The 504 (connect or idle timeout) or 502 (anything else) for a request that got no answer."""
    if isinstance(exc, ServerTimeoutError):
        return _gateway_error(
            504, "upstream_timeout", f"the upstream {target.origin()} did not answer in time"
        )
    log.warning(
        "upstream %s unreachable for %s: %s",
        target.origin(),
        escape_unsafe(target.path),
        exc.__class__.__name__,
    )
    return _gateway_error(
        502,
        "upstream_unreachable",
        f"could not reach the upstream {target.origin()} ({exc.__class__.__name__})",
    )


def _new_exchange(request: web.Request, kind: type[_E]) -> _E | None:
    app = request.app
    if not app[CONFIG].capture:
        return None
    # The idle refresh keeps accepted tokens only when --refresh-idle is on (else no key).
    return kind(request, app[RECORDER], app[IDENTITIES], app[RATE_LIMIT_HEADERS], app.get(REFRESH))


def _refusal(request: web.Request) -> web.Response | None:
    """The answer to a request the proxy must not relay; None for one it relays."""
    app = request.app
    if not relayed(request.rel_url.raw_path, app[CONFIG].admin_prefix):
        return _gateway_error(404, "not_found", NOT_RELAYED)
    headers = request.headers
    for authorization in headers.getall(hdrs.AUTHORIZATION, ()):
        if _is_admin_credential(app[ADMIN_AUTH], authorization):
            log.warning(
                "refused to relay %s: it carries codexgate's admin or metrics token",
                escape_unsafe(request.path),
            )
            return _gateway_error(
                403,
                "admin_token_refused",
                "codexgate's admin and metrics tokens never go upstream; "
                "send the Codex access token instead",
            )
    # aiohttp's parser already refuses control characters in a request header; what it lets
    # through as surrogates (bytes that are not UTF-8) its client would leave out when writing.
    if not "".join(headers.values()).isascii() and any(
        NOT_UTF8.search(value) for value in headers.values()
    ):
        return _gateway_error(
            400,
            "invalid_header",
            "a request header is not valid UTF-8, so it cannot be forwarded byte for byte",
        )
    return None


def _is_admin_credential(auth: AdminAuth, authorization: str) -> bool:
    """Whether an Authorization value carries the admin or the metrics token, in any scheme."""
    credential = authorization.strip()
    _, space, token = credential.partition(" ")
    if space:
        credential = token.strip()
    return auth.identify(credential) is not None


async def forward(request: web.Request) -> web.StreamResponse:
    """Relay one request to the upstream and stream its answer back chunk by chunk."""
    app = request.app
    if (refusal := _refusal(request)) is not None:
        return refusal
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
        response = _RelayedResponse(
            status=upstream.status,
            # aiohttp refuses a control character in the status line: the standard phrase then.
            reason=reason if (reason := upstream.reason) and reason.isprintable() else None,
            headers=response_headers_for_client(upstream),
        )
        if exchange is not None:
            response[PROXIED] = exchange
        await response.prepare(request)
        body = upstream.content
        try:
            # What came with the upstream's headers leaves with the client's, in one write; when
            # nothing came, the headers leave at once (the first write below, of b"").
            chunk = body.read_nowait()
            while not body.at_eof():
                await response.write(chunk)
                if exchange is not None and chunk:
                    exchange.body_chunk(chunk)
                chunk = await body.readany()
            # The last bytes, and with them the end of the body (the chunked terminator).
            await response.write_eof(chunk)
            if exchange is not None and chunk:
                exchange.body_chunk(chunk)
        except ConnectionResetError:
            error_code = "client_disconnected"
            return response
        except (ClientError, TimeoutError) as exc:
            # The client already has the status line, so no error answer is possible: cut the
            # connection, so the client sees a broken body rather than a short one that looks whole.
            log.warning(
                "upstream stream for %s broke: %s",
                escape_unsafe(request.path),
                exc.__class__.__name__,
            )
            error_code = "upstream_stream_broken"
            if request.transport is not None:
                request.transport.close()
            return response
        return response
    except asyncio.CancelledError:
        error_code = "client_disconnected"
        raise
    finally:
        # An unfinished body closes the upstream connection; a finished one returns it to the pool.
        upstream.release()
        if exchange is not None:
            exchange.finish(error_code=error_code)


class _RelayedResponse(web.StreamResponse):
    """A relayed answer, whose headers the relay sends with its first body bytes.

    aiohttp sends a StreamResponse's headers on prepare(), each in a write (a system call) of
    its own, then every chunk, then the end of the body: three writes for a short answer that
    the upstream sent in one. Held, they share the first body write, and a body that is
    complete on arrival goes out in one; the relay never holds them waiting for bytes.
    """

    _send_headers_immediately = False  # what aiohttp's own web.Response uses


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
    # aiohttp reassembles each message; past this it closes the offending leg with 1009. Its
    # check refuses a message of max_msg_size bytes itself, hence the + 1.
    max_msg_size = app[CONFIG].websocket_max_message_mib * MIB + 1
    handshake = _Handshake()
    ending = _Ending()
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
            max_msg_size=max_msg_size,
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
            max_msg_size=max_msg_size,
        )
        client.headers.extend(_filtered(handshake.headers, WS_DROPPED))
        if exchange is not None:
            client[PROXIED] = exchange
        await client.prepare(request)
        try:
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(_client_to_upstream(client, upstream, exchange, ending))
                pumps.create_task(_upstream_to_client(upstream, client, exchange))
        except* (ConnectionError, ClientError) as broken:
            # One side went away mid-frame; the other is closed below. Nothing to report.
            log.debug(
                "WebSocket relay for %s ended: %r",
                escape_unsafe(request.path),
                broken.exceptions[0],
            )
        return client
    finally:
        await upstream.close(code=ending.upstream_code)
        if exchange is not None:
            exchange.closed()


def _offers_deflate(request: web.Request) -> bool:
    return any(
        "permessage-deflate" in value.lower()
        for value in request.headers.getall(hdrs.SEC_WEBSOCKET_EXTENSIONS, ())
    )


def _too_big(message: WSMessage) -> bool:
    """Whether aiohttp refused a message over max_msg_size (and closed that leg with 1009)."""
    return (
        isinstance(message.data, WebSocketError)
        and message.data.code == WSCloseCode.MESSAGE_TOO_BIG
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
    ending: _Ending,
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
                ending.upstream_code = message.data
                await upstream.close(code=message.data, message=reason)
                await client.close(code=message.data, message=reason)
                return
            case WSMsgType.CLOSING:  # the other pump is closing this socket
                return
            case WSMsgType.ERROR if _too_big(message):
                ending.upstream_code = WSCloseCode.MESSAGE_TOO_BIG
                await upstream.close(
                    code=WSCloseCode.MESSAGE_TOO_BIG, message=b"client message too big"
                )
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
            case WSMsgType.ERROR if _too_big(message):
                await client.close(
                    code=WSCloseCode.MESSAGE_TOO_BIG, message=b"upstream message too big"
                )
                return
            case _:
                await client.close(
                    code=WSCloseCode.INTERNAL_ERROR, message=b"upstream connection lost"
                )
                return
