"""Client connections: the listening socket, the connection caps, the request-head deadline.

aiohttp's TCPSite hands the listening socket to the event loop, which accepts every connection
it can and, when the process runs out of file descriptors, either logs an error per attempt
(asyncio) or silently accepts and drops the waiting connections (uvloop). `Listener` accepts
instead, so that a connection beyond a cap costs no more than one `accept()` and one `close()`,
and running out of descriptors is logged once a minute whichever loop runs.

`Connections` counts what is open, per client address too. A connection is idle from the moment
it is accepted, and again after each response, until the app's middleware sees its next request
start. A new connection must send a whole request head within the head deadline; a kept-alive
one may stay quiet for the keep-alive timeout, but once the first byte of its next request
comes, that head too must be whole within the head deadline (so a slowly dribbled head never
outlives it). When a cap is reached the oldest idle connection makes room for the new one. Only
when every connection is busy with a request (streams, uploads) is a new one refused, with a
`503`. Connections that never speak therefore cannot keep others out, and `healthz` answers
while they pile up.

Draining (on SIGTERM, so that another process listening on the same port with SO_REUSEPORT takes
over without a failed request): the listening sockets are closed, after taking every connection
the kernel had already queued on them (it resets those still queued when a listener closes).
From then on every answer says `Connection: close`, so its client reconnects, to the other
process. HTTP/1.1 has no way to tell a quiet kept-alive connection to go away, and closing one
races a request its client may be writing at that very moment (a POST it cannot retry), so a
kept-alive connection is not closed at once: it gets `DRAIN_QUIET_SECONDS` to send its next
request, which is answered and closed, and is closed only if it stays quiet that long. A
connection whose first request head has not come yet keeps its head deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from codexgate.api.errors import error_body
from codexgate.services.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: the database and its journal files,
# the listening sockets, the event loop's own, webhooks, logs.
RESERVED_FILES: Final = 64
# A proxied request holds two: the client's socket and the upstream connection it relays to.
FILES_PER_CONNECTION: Final = 2
# Where the hard limit is "unlimited", the soft limit is raised this far (macOS refuses more).
_UNLIMITED_FILES: Final = 1 << 20
# After accept() failed for want of descriptors (or memory): wait this long before the next try.
ACCEPT_RETRY_SECONDS: Final = 0.1
# Connections accepted per wake-up of the listening socket, so a flood cannot hog the loop.
_ACCEPT_BATCH: Final = 64
# Warnings about refused connections and failed accepts: at most one per kind per minute.
NOTICE_SECONDS: Final = 60.0
# While draining, a kept-alive connection quiet this long (after its last answer, or after the
# drain began) is closed. A client that is using its connection sends within milliseconds.
DRAIN_QUIET_SECONDS: Final = 1.0

_REFUSAL_BODY: Final = error_body(
    "too_many_connections", "codexgate has too many busy connections; retry shortly"
)
# The whole answer to a connection beyond a cap, written straight to its socket.
REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n" % len(_REFUSAL_BODY)
) + _REFUSAL_BODY


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; the soft limit in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
        else:
            soft = target
    return _UNLIMITED_FILES if soft == resource.RLIM_INFINITY else soft


def connection_cap(max_connections: int, file_limit: int) -> int:
    """The connections that may be open at once: the setting, or fewer if the files run out."""
    return max(1, min(max_connections, (file_limit - RESERVED_FILES) // FILES_PER_CONNECTION))


class _Notice:
    """A warning logged at most once per interval, saying how often it happened meanwhile."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = float("-inf")
        self._count = 0

    def note(self, message: str, *args: object) -> None:
        """Count one occurrence; log it (with the count since the last line) if it is time."""
        self._count += 1
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        log.warning("%s (%d since the last such warning)", message % args, self._count)
        self._last = now
        self._count = 0


@dataclass(eq=False, slots=True)
class _Connection:
    """One accepted client connection."""

    address: str
    transport: asyncio.Transport | None = None
    busy: int = 0  # requests in flight (aiohttp runs one at a time; pipelined ones wait)
    head_since: float = 0.0  # when the head deadline started counting
    kept_until: float = 0.0  # when a kept-alive connection that stays quiet is closed
    served: bool = False  # answered a request: between requests it is kept alive
    kept: bool = False  # kept alive, and no byte of its next request has come yet
    gone: bool = False  # closed, or forgotten because it is being closed


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """What healthz shows under `connections`."""

    open: int
    idle: int
    limit: int
    per_address_limit: int
    refused: int
    evicted: int
    head_timeouts: int
    keepalive_timeouts: int
    accept_errors: int


@dataclass(slots=True)
class Connections:
    """The open client connections, their caps and their head deadline (see the module doc)."""

    limit: int
    per_address_limit: int  # 0: no cap per address
    head_timeout: float
    keepalive_timeout: float = 75.0  # a kept-alive connection may stay quiet this long
    open: int = 0
    refused: int = 0  # connections answered 503 at once: every slot was busy
    evicted: int = 0  # idle connections closed to make room for a new one
    head_timeouts: int = 0  # idle connections closed for not sending a request head in time
    keepalive_timeouts: int = 0  # kept-alive connections closed after the keep-alive timeout
    accept_errors: int = 0  # accept() failures (out of descriptors or memory)
    file_limit: int | None = None  # the open-files limit the cap was fitted to
    listening: bool = False
    draining: bool = False  # answers close their connections; quiet ones are closed soon
    _all_closed: asyncio.Event | None = None  # set once draining and every connection is closed
    _loop: asyncio.AbstractEventLoop | None = None
    _per_address: dict[str, int] = field(default_factory=dict)
    # Idle connections, oldest first (a dict keeps insertion order), overall and per address.
    _idle: dict[_Connection, None] = field(default_factory=dict)
    _idle_of: dict[str, dict[_Connection, None]] = field(default_factory=dict)
    # The two deadlines' queues, oldest first: a request head is awaited, or a kept-alive one.
    _heads: dict[_Connection, None] = field(default_factory=dict)
    _kept: dict[_Connection, None] = field(default_factory=dict)
    _by_transport: dict[asyncio.BaseTransport, _Connection] = field(default_factory=dict)
    _timer: asyncio.TimerHandle | None = None
    _refusals: _Notice = field(default_factory=lambda: _Notice(NOTICE_SECONDS))
    _accept_failures: _Notice = field(default_factory=lambda: _Notice(NOTICE_SECONDS))

    def fit_file_limit(self, file_limit: int) -> None:
        """Lower the cap to what the open-files limit allows."""
        self.file_limit = file_limit
        self.limit = connection_cap(self.limit, file_limit)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin tracking connections accepted on `loop`."""
        self._loop = loop
        self.listening = True

    def drain(self) -> None:
        """Stop keeping connections alive: see the module doc."""
        assert self._loop is not None
        self.draining = True
        self._all_closed = asyncio.Event()
        if not self.open:
            self._all_closed.set()
        # Clamping keeps the queue in deadline order: later entries were kept until later.
        until = self._loop.time() + self._kept_for()
        for connection in self._kept:
            connection.kept_until = min(connection.kept_until, until)
        self._schedule()

    async def wait_closed(self, within: float) -> bool:
        """Wait until every connection is closed after drain(), at most `within` seconds."""
        assert self._all_closed is not None
        try:
            async with asyncio.timeout(within):
                await self._all_closed.wait()
        except TimeoutError:
            return False
        return True

    async def close_when_draining(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> None:
        """on_response_prepare: while draining, an answer closes its connection after it."""
        # A 101 hands the connection to a WebSocket: it must say `Connection: Upgrade`.
        if self.draining and response.status != 101:
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"

    def stop(self) -> None:
        """Stop the head deadline (on shutdown aiohttp closes what is idle)."""
        self.listening = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def busy(self) -> int:
        """Connections with a request in flight."""
        return self.open - len(self._idle)

    def stats(self) -> ConnectionStats:
        """The counters since start."""
        return ConnectionStats(
            open=self.open,
            idle=len(self._idle),
            limit=self.limit,
            per_address_limit=self.per_address_limit,
            refused=self.refused,
            evicted=self.evicted,
            head_timeouts=self.head_timeouts,
            keepalive_timeouts=self.keepalive_timeouts,
            accept_errors=self.accept_errors,
        )

    # -- accepting ------------------------------------------------------------------------------

    def admit(self, address: str) -> _Connection | None:
        """A slot for a new connection from `address`, closing an idle one if it must; or None."""
        cap = self.per_address_limit
        if cap and self._per_address.get(address, 0) >= cap and not self._evict_from(address):
            self._refuse(f"{cap} from one address")
            return None
        if self.open >= self.limit and not self._evict_from(None):
            self._refuse(f"{self.limit} in all")
            return None
        connection = _Connection(address)
        self.open += 1
        self._per_address[address] = self._per_address.get(address, 0) + 1
        # Idle from now on, so that in a burst of accepts the ones still waiting for their
        # transport can make room too (and the deadline counts from the accept).
        self._set_idle(connection)
        return connection

    def attach(self, connection: _Connection, transport: asyncio.Transport) -> None:
        """The connection's transport exists (closed at once if its place was taken meanwhile)."""
        connection.transport = transport
        if connection.gone:
            transport.abort()
            return
        self._by_transport[transport] = connection

    def lost(self, connection: _Connection) -> None:
        """The connection is closed."""
        if connection.gone:
            return
        connection.gone = True
        self.open -= 1
        left = self._per_address[connection.address] - 1
        if left:
            self._per_address[connection.address] = left
        else:
            del self._per_address[connection.address]
        self._set_busy(connection)
        if connection.transport is not None:
            self._by_transport.pop(connection.transport, None)
        if not self.open and self._all_closed is not None:
            self._all_closed.set()

    def accept_failed(self, exc: OSError) -> None:
        """accept() failed: count it, make room if an idle connection can give it, say so."""
        self.accept_errors += 1
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            self._evict_from(None)
        self._accept_failures.note(
            "connections: accepting failed (%s); retrying in %gs",
            errno.errorcode.get(exc.errno or 0, exc),
            ACCEPT_RETRY_SECONDS,
        )

    def _refuse(self, cap: str) -> None:
        self.refused += 1
        self._refusals.note(
            "connections: refused new connections with 503: %d open, every one busy (cap: %s)",
            self.open,
            cap,
        )

    def _evict_from(self, address: str | None) -> bool:
        """Close the oldest idle connection (of `address`, if given); False if there is none."""
        idle = self._idle if address is None else self._idle_of.get(address)
        if not idle:
            return False
        self.evicted += 1
        self._close(next(iter(idle)))
        return True

    def _close(self, connection: _Connection) -> None:
        self.lost(connection)
        if connection.transport is not None:
            # abort, not close: close() would wait for a client that does not read to take
            # the rest of its last answer, and keep the descriptor meanwhile.
            connection.transport.abort()

    # -- idle and busy --------------------------------------------------------------------------

    def middleware(self) -> Middleware:
        """The app's outermost middleware: a request keeps its connection busy until answered."""

        # A plain function handing back the handler's coroutine: a coroutine of its own would
        # stay alive (and hold memory) for as long as a stream lasts.
        @web.middleware
        def track(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
            transport = request.transport
            connection = self._by_transport.get(transport) if transport is not None else None
            if connection is not None:
                task = asyncio.current_task()
                if task is not None:
                    # The task also writes the answer after the handler returns: its end is the
                    # end of the exchange.
                    self._set_busy(connection)
                    connection.busy += 1
                    task.add_done_callback(functools.partial(self._answered, connection))
            return handler(request)

        return track

    def _answered(self, connection: _Connection, task: asyncio.Task[Any]) -> None:
        connection.busy -= 1
        if not connection.busy and not connection.gone:
            connection.served = True
            self._set_idle(connection)

    def head_started(self, connection: _Connection) -> None:
        """The first byte of a kept-alive connection's next request: the head deadline starts."""
        if self._loop is None or not connection.kept:
            return
        connection.kept = False
        del self._kept[connection]
        connection.head_since = self._loop.time()
        self._heads[connection] = None
        self._schedule()

    def _set_idle(self, connection: _Connection) -> None:
        if self._loop is None:
            return
        now = self._loop.time()
        connection.head_since = now
        self._idle[connection] = None
        self._idle_of.setdefault(connection.address, {})[connection] = None
        if connection.served:
            connection.kept = True
            connection.kept_until = now + self._kept_for()
            self._kept[connection] = None
        else:
            self._heads[connection] = None
        self._schedule()

    def _set_busy(self, connection: _Connection) -> None:
        if connection in self._idle:
            del self._idle[connection]
            of_address = self._idle_of[connection.address]
            del of_address[connection]
            if not of_address:
                del self._idle_of[connection.address]
            self._heads.pop(connection, None)
            self._kept.pop(connection, None)
            connection.kept = False

    def _kept_for(self) -> float:
        """How long a kept-alive connection may stay quiet from now."""
        if self.draining:
            return min(self.keepalive_timeout, DRAIN_QUIET_SECONDS)
        return self.keepalive_timeout

    def _next_deadline(self) -> float | None:
        """When the oldest head or kept-alive connection runs out of time; None if none waits."""
        due: list[float] = []
        if self._heads:
            due.append(next(iter(self._heads)).head_since + self.head_timeout)
        if self._kept:
            due.append(next(iter(self._kept)).kept_until)
        return min(due) if due else None

    def _schedule(self) -> None:
        """Wake up when the next deadline passes (sooner than the timer set, if it is)."""
        if not self.listening or self._loop is None:
            return
        due = self._next_deadline()
        if due is None:
            return
        if self._timer is not None:
            if self._timer.when() <= due:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(due, self._expire)

    def _expire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        while self._heads:
            oldest = next(iter(self._heads))
            if oldest.head_since > now - self.head_timeout:
                break
            self.head_timeouts += 1
            self._close(oldest)
        while self._kept:
            oldest = next(iter(self._kept))
            if oldest.kept_until > now:
                break
            self.keepalive_timeouts += 1
            self._close(oldest)
        self._schedule()


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol for one connection, reporting the connection's end to the tracker."""

    __slots__ = ("_connection", "_connections", "_inner")

    def __init__(
        self, inner: asyncio.Protocol, connection: _Connection, connections: Connections
    ) -> None:
        self._inner = inner
        self._connection = connection
        self._connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.attach(self._connection, cast(asyncio.Transport, transport))
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._connection.kept:
            self._connections.head_started(self._connection)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.lost(self._connection)
        self._inner.connection_lost(exc)


def _in_use(address: Any, reuse_port: bool) -> str:
    """Why binding `address` failed with EADDRINUSE, and what to do."""
    where = f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    if reuse_port:
        return (
            f"{where} is in use by a process started without --reuse-port on (or by another user)"
        )
    return (
        f"{where} is in use by another process (to start a new codexgate there while the "
        "old one drains, start both with --reuse-port on)"
    )


async def _bind(
    host: str, port: int, backlog: int, *, reuse_port: bool = False
) -> list[socket.socket]:
    """Listening sockets for every address `host` names, as asyncio's create_server binds them;
    with `reuse_port`, sockets that other processes may bind too (SO_REUSEPORT)."""
    reuse_port_option: int | None = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port and reuse_port_option is None:
        raise OSError(
            errno.ENOPROTOOPT, "--reuse-port on needs SO_REUSEPORT, which this system does not have"
        )
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port_option is not None and reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, reuse_port_option, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(exc.errno, _in_use(address, reuse_port)) from None
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {exc}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _refuse(client: socket.socket) -> None:
    """Answer 503 and close, without a transport; never blocks."""
    with contextlib.suppress(OSError):
        client.send(REFUSAL)
        # Read what the client already sent: closing over unread data would send a reset,
        # which can make the client drop the answer.
        client.recv(65536)
    client.close()


class Listener(web.BaseSite):
    """A TCP site that accepts connections itself and admits them through `Connections`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        connections: Connections,
        *,
        backlog: int = 128,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._connections = connections
        self._reuse_port = reuse_port
        self._sockets: list[socket.socket] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._retries: dict[socket.socket, asyncio.TimerHandle] = {}
        self._factory: Callable[[], asyncio.Protocol] | None = None

    @property
    def name(self) -> str:
        """The site's URL."""
        return str(URL.build(scheme="http", host=self._host or "0.0.0.0", port=self._port))  # noqa: S104

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets."""
        return list(self._sockets)

    async def start(self) -> None:
        """Bind, listen and start accepting."""
        await super().start()
        server = self._runner.server
        assert server is not None
        self._factory = server
        loop = asyncio.get_running_loop()
        self._sockets = await _bind(
            self._host, self._port, self._backlog, reuse_port=self._reuse_port
        )
        connections = self._connections
        connections.start(loop)
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)
        per_address = connections.per_address_limit
        log.info(
            "connections: at most %d open (%s from one address, open-files limit %s); "
            "a request head within %gs, kept alive %gs",
            connections.limit,
            per_address or "no cap",
            connections.file_limit or "not checked",
            connections.head_timeout,
            connections.keepalive_timeout,
        )

    async def stop(self) -> None:
        """Stop accepting: close the listening sockets; open connections are aiohttp's."""
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        for retry in self._retries.values():
            retry.cancel()
        self._retries.clear()
        for task in list(self._connecting):
            await cancel_and_wait(task)
        self._connections.stop()
        await super().stop()

    def start_draining(self) -> int:
        """Close the listening sockets without resetting a connection the kernel queued on them,
        and drain the connections (see the module doc); how many queued ones were taken."""
        loop = asyncio.get_running_loop()
        sockets, self._sockets = self._sockets, []
        taken = 0
        for sock in sockets:
            retry = self._retries.pop(sock, None)
            if retry is not None:
                retry.cancel()
            loop.remove_reader(sock.fileno())
            # Until accept() says none is left, then close, with no await in between: a
            # connection still queued when the socket closes is reset.
            taken += self._take(sock, None)
            sock.close()
        self._connections.drain()
        return taken

    def _accept(self, sock: socket.socket) -> None:
        """Accept what waits on a listening socket (up to a batch)."""
        self._take(sock, _ACCEPT_BATCH)

    def _take(self, sock: socket.socket, most: int | None) -> int:
        """Accept what waits on a listening socket (at most `most`); how many were taken."""
        taken = 0
        while most is None or taken < most:
            try:
                client, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of descriptors (EMFILE, ENFILE) or memory: retrying at once would spin.
                self._connections.accept_failed(exc)
                if sock in self._sockets:  # not when draining: it is about to close
                    self._pause(sock)
                break
            self._admit(client, peer)
            taken += 1
        return taken

    def _pause(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        self._retries[sock] = loop.call_later(ACCEPT_RETRY_SECONDS, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        del self._retries[sock]
        if sock in self._sockets:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    def _admit(self, client: socket.socket, peer: Any) -> None:
        client.setblocking(False)
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        connection = self._connections.admit(address)
        if connection is None:
            _refuse(client)
            return
        task = asyncio.get_running_loop().create_task(self._connect(client, connection))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, client: socket.socket, connection: _Connection) -> None:
        """Hand an accepted socket to aiohttp."""
        factory = self._factory
        assert factory is not None
        connections = self._connections

        def protocol() -> asyncio.Protocol:
            return _Tracked(factory(), connection, connections)

        try:
            await asyncio.get_running_loop().connect_accepted_socket(protocol, client)
        except OSError:
            connections.lost(connection)
            client.close()
        except asyncio.CancelledError:
            connections.lost(connection)
            client.close()  # a transport made meanwhile is closed by the loop
            raise
