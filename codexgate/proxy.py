"""Forwarding every request that is not codexgate's own to the upstream, streamed both ways."""

from __future__ import annotations

import logging
import time
import urllib.request
from dataclasses import dataclass
from typing import Final

from aiohttp import (
    ClientError,
    ClientResponse,
    ClientSession,
    ServerTimeoutError,
    hdrs,
    web,
)
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .errors import error_response
from .keys import CONFIG, PROXIED, UPSTREAM_SESSION

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
# Defaults aiohttp's client would add by itself; the client's own values (if any) pass through.
SKIP_AUTO_HEADERS: Final = frozenset(
    {hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE}
)


@dataclass(frozen=True, slots=True)
class ProxiedExchange:
    """What the proxy knows about a relayed response, for the capture signal."""

    started_at: float  # unix seconds, when the request reached codexgate


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


def _connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Header names listed in Connection, which are hop-by-hop for this message only."""
    tokens: set[str] = set()
    for value in headers.getall(hdrs.CONNECTION, ()):
        tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return frozenset(tokens)


def _appended(existing: str | None, value: str) -> str:
    return f"{existing}, {value}" if existing else value


def request_headers_for_upstream(request: web.Request) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones, with X-Forwarded-For/-Proto appended."""
    dropped = REQUEST_HEADERS_DROPPED | _connection_tokens(request.headers)
    forwarded: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in dropped:
            forwarded.add(name, value)
    forwarded[hdrs.X_FORWARDED_FOR] = _appended(
        forwarded.get(hdrs.X_FORWARDED_FOR), request.remote or "unknown"
    )
    forwarded[hdrs.X_FORWARDED_PROTO] = _appended(
        forwarded.get(hdrs.X_FORWARDED_PROTO), request.scheme
    )
    return forwarded


def response_headers_for_client(upstream: ClientResponse) -> CIMultiDict[str]:
    """The upstream's headers minus hop-by-hop ones; Content-Encoding stays, bodies are raw."""
    dropped = RESPONSE_HEADERS_DROPPED | _connection_tokens(upstream.headers)
    relayed: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        if name.lower() not in dropped:
            relayed.add(name, value)
    return relayed


def _gateway_error(status: int, error_type: str, message: str) -> web.Response:
    return error_response(
        status, error_type, f"codexgate: {message}", headers={"X-Codexgate-Error": error_type}
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
    except ServerTimeoutError:  # connect timeout, or no answer within the idle timeout
        return _gateway_error(
            504, "upstream_timeout", f"the upstream {target.origin()} did not answer in time"
        )
    except ClientError as exc:
        log.warning("upstream %s unreachable: %s", target.origin(), exc.__class__.__name__)
        return _gateway_error(
            502,
            "upstream_unreachable",
            f"could not reach the upstream {target.origin()} ({exc.__class__.__name__})",
        )


async def forward(request: web.Request) -> web.StreamResponse:
    """Relay one request to the upstream and stream its answer back chunk by chunk."""
    started_at = time.time()
    app = request.app
    try:
        target = upstream_url(app[CONFIG].upstream, request.rel_url)
    except ValueError:
        return _gateway_error(400, "invalid_request_target", "the request target is not a path")
    upstream = await _open_upstream(app[UPSTREAM_SESSION], request, target)
    if isinstance(upstream, web.Response):
        return upstream
    try:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=response_headers_for_client(upstream),
        )
        response[PROXIED] = ProxiedExchange(started_at=started_at)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except ConnectionResetError:
            log.debug("client hung up during %s", request.path)
            return response
        except (ClientError, TimeoutError) as exc:
            # The client already has the status line, so no error answer is possible: cut the
            # connection, so the client sees a broken body rather than a short one that looks whole.
            log.warning("upstream stream for %s broke: %s", request.path, exc.__class__.__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        # An unfinished body closes the upstream connection; a finished one returns it to the pool.
        upstream.release()
