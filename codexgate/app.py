"""The application factory: resources as cleanup contexts, the capture signal, the routes."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web

from codexgate import routes, security
from codexgate.api import errors
from codexgate.api import feed as feed_api
from codexgate.capture import tap
from codexgate.capture.headers import IdentityCache, RateLimitHeaderParser
from codexgate.config import Config
from codexgate.dashboard import pages
from codexgate.keys import (
    CONFIG,
    CONNECTIONS,
    FORECASTS,
    IDENTITIES,
    RATE_LIMIT_HEADERS,
    RECORDER,
    STORE,
    UPSTREAM_SESSION,
    UPSTREAM_WS_SESSION,
)
from codexgate.listener import Connections
from codexgate.proxy import relay as proxy
from codexgate.services import alerts, metrics
from codexgate.services import feed as events
from codexgate.services.accounts import accounts_ctx
from codexgate.services.forecasts import ForecastCache
from codexgate.services.instances import instance_ctx
from codexgate.services.recorder import Recorder
from codexgate.services.refresh import refresh_ctx
from codexgate.services.retention import retention_ctx
from codexgate.storage import open_storage

# Options of aiohttp's server that codexgate depends on, however it is run (CLI or tests).
SERVER_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "handler_cancellation": True,  # a client hang-up cancels the upstream request at once
        "auto_decompress": False,  # request bodies (zstd, gzip) are relayed as their bytes
    }
)
# Seconds between two hand-backs of the memory a burst of traffic freed (see trim_memory_ctx):
# one takes ~2 ms after a burst that freed 15 MB, ~0.05 ms when there is nothing to give back.
TRIM_SECONDS: Final = 10.0

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def memory_trimmer() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), which hands every free page inside the heap back to the system;
    None where the C library has no such call (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> None:
        trim(0)

    return release


def trim_memory_ctx(every: float = TRIM_SECONDS) -> CleanupContext:
    """A cleanup context that gives freed memory back to the system every `every` seconds.

    glibc returns a free region only from the top of its heap. The deflate buffers of
    WebSockets (600 KB each) and the chunks of long streams are freed between objects that
    stay, so without a trim the process keeps the peak of every burst for good (15 MB after
    32 compressed WebSockets).
    """

    async def trim_memory(app: web.Application) -> AsyncIterator[None]:
        release = memory_trimmer()
        if release is None:
            yield
            return
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal timer
            release()
            timer = loop.call_later(every, tick)

        timer = loop.call_later(every, tick)
        try:
            yield
        finally:
            timer.cancel()

    return trim_memory


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[STORE] = await open_storage(
        config.db,
        heartbeat_seconds=config.history_heartbeat,
        pool_size=config.db_pool_size,
        connect_timeout=config.db_connect_timeout,
    )
    yield
    await app[STORE].close()


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    session = ClientSession(
        # No pool limit: every open stream holds a connection, and streams last for minutes.
        connector=TCPConnector(limit=0, ttl_dns_cache=300),
        # No total timeout, since turns stream for minutes; sock_read is the idle timeout.
        timeout=ClientTimeout(
            total=None,
            connect=config.connect_timeout,
            sock_connect=config.connect_timeout,
            sock_read=config.idle_timeout,
        ),
        auto_decompress=False,  # bodies pass through with their Content-Encoding
        cookie_jar=DummyCookieJar(),  # never carry one client's cookies into another's request
        proxy=config.upstream_proxy or proxy.environment_proxy(config.upstream),
        skip_auto_headers=proxy.SKIP_AUTO_HEADERS,
    )
    app[UPSTREAM_SESSION] = session
    yield
    await session.close()


async def _upstream_ws_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    session = ClientSession(
        connector=TCPConnector(limit=0, ttl_dns_cache=300),
        timeout=ClientTimeout(
            total=None, connect=config.connect_timeout, sock_connect=config.connect_timeout
        ),
        auto_decompress=False,
        cookie_jar=DummyCookieJar(),
        proxy=config.upstream_proxy or proxy.environment_proxy(config.upstream),
        trace_configs=[proxy.handshake_trace()],
    )
    app[UPSTREAM_WS_SESSION] = session
    yield
    await session.close()


async def _recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    recorder = Recorder(app[STORE], queue_size=config.queue_size, max_accounts=config.max_accounts)
    app[RECORDER] = recorder
    recorder.start()
    yield
    await recorder.stop()


async def _forecasts_ctx(app: web.Application) -> AsyncIterator[None]:
    app[FORECASTS] = ForecastCache(app[STORE])
    yield


def create_app(config: Config) -> web.Application:
    """Build a codexgate application for `config`; nothing starts until the app is run."""
    app = web.Application()
    app[CONFIG] = config
    app[IDENTITIES] = IdentityCache()
    app[RATE_LIMIT_HEADERS] = RateLimitHeaderParser()
    app[CONNECTIONS] = Connections(
        limit=config.max_connections,
        per_address_limit=config.max_connections_per_address,
        head_timeout=config.request_head_timeout,
        keepalive_timeout=config.keepalive_timeout,
    )
    app.cleanup_ctx.extend(
        [_store_ctx, security.auth_ctx, _upstream_ctx, _upstream_ws_ctx, _recorder_ctx]
    )
    # The singleton lease: taken before the work that needs it, given up after it stopped.
    app.cleanup_ctx.append(instance_ctx)
    app.cleanup_ctx.append(retention_ctx)  # deletes in the store: stops before it closes
    # Feeds the recorder through the upstream session: after both, and before the accounts service.
    app.cleanup_ctx.append(refresh_ctx)
    app.cleanup_ctx.append(_forecasts_ctx)
    app.cleanup_ctx.append(alerts.alerts_ctx)  # follows the recorder's commits: after it
    # The feed publishes the alerts too: after the engine.
    app.cleanup_ctx.append(events.bus_context(feed_api.SSE_FRAMING))
    app.cleanup_ctx.append(accounts_ctx)  # wakes the bus and the engine: after both
    app.cleanup_ctx.append(metrics.metrics_ctx)  # counts the recorder's request records: after it
    app.cleanup_ctx.append(trim_memory_ctx())
    app.on_shutdown.append(events.close_streams)  # or graceful shutdown waits for every stream
    if config.capture:
        app.on_response_prepare.append(tap.capture_response_headers)
    # Outermost: a connection is busy (never closed as idle) from its request's start to its end.
    app.middlewares.append(app[CONNECTIONS].middleware())
    app.middlewares.append(errors.error_middleware(config.admin_prefix))  # then the envelope
    # Security: the admin credential guards the prefix; own answers get security headers.
    app.middlewares.append(security.auth_middleware(config.admin_prefix))
    app.on_response_prepare.append(
        security.security_headers(config.admin_prefix, own_error_header=proxy.ERROR_HEADER)
    )
    pages.setup(app)
    routes.add_routes(app, config.admin_prefix)
    return app
