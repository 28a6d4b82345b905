"""The listener's drain in this process, over raw loopback sockets: nothing the kernel queued is
reset, every answer closes its connection, quiet kept-alive connections get a moment first; and
its `reuse_port`."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from codexgate.listener import DRAIN_QUIET_SECONDS, Connections, Listener
from tests.helpers.processes import free_port
from tests.helpers.waiting import eventually

REQUEST = b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n"
# Each event of the slow stream comes this long after the one before.
STREAM_DELAY = 0.1
STREAM = [b"event %d\n" % number for number in range(5)]


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _slow_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for chunk in STREAM:
        await asyncio.sleep(STREAM_DELAY)
        await response.write(chunk)
    await response.write_eof()
    return response


@dataclass
class Site:
    listener: Listener
    connections: Connections
    address: tuple[str, int]


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    """A small app behind the Listener on a loopback port, wired as `serve` wires it."""
    connections = Connections(limit=50, per_address_limit=0, head_timeout=3.0)
    app = web.Application()
    app.middlewares.append(connections.middleware())
    app.on_response_prepare.append(connections.close_when_draining)
    app.router.add_get("/", _hello)
    app.router.add_get("/stream", _slow_stream)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = Listener(runner, "127.0.0.1", 0, connections)
    await listener.start()
    host, port = listener.sockets[0].getsockname()[:2]
    yield Site(listener, connections, (str(host), int(port)))
    await runner.cleanup()


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP answer off the wire: (head, body), the body by Content-Length or chunks."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    for line in lines:
        if line.startswith(b"content-length:"):
            return head, await reader.readexactly(int(line.split(b":")[1]))
    assert b"transfer-encoding: chunked" in lines, head
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readexactly(2)
    return head, body


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (end of stream or reset), nothing else sent."""
    try:
        return await reader.read(1) == b""
    except ConnectionResetError:
        return True


async def test_connections_the_kernel_queued_are_taken_and_answered(site: Site) -> None:
    # connect() on loopback completes in the kernel: these wait in the listening socket's queue,
    # since the loop has not run since (no await in between).
    clients = [socket.create_connection(site.address) for _ in range(5)]
    taken = site.listener.start_draining()
    assert taken == 5
    # The listening socket is gone: a new connection is refused.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(site.address).close()
    for client in clients:
        client.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=client)
        writer.write(REQUEST)
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nConnection: close\r\n" in head
        assert body == b"hello"
        assert await closed_by_server(reader)
        writer.close()
    assert await site.connections.wait_closed(5.0)


async def test_a_connection_accepted_before_its_head_came_is_served(site: Site) -> None:
    reader, writer = await asyncio.open_connection(*site.address)
    await eventually(lambda: site.connections.open)  # accepted by the loop, no byte sent yet
    site.listener.start_draining()
    await asyncio.sleep(0.5)
    writer.write(REQUEST)
    head, body = await read_answer(reader)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b"hello"
    assert b"\r\nConnection: close\r\n" in head
    assert await closed_by_server(reader)
    writer.close()
    assert await site.connections.wait_closed(1.0)


async def test_a_kept_alive_connection_gets_its_next_request_answered_then_closed(
    site: Site,
) -> None:
    reader, writer = await asyncio.open_connection(*site.address)
    writer.write(REQUEST)
    head, _ = await read_answer(reader)
    assert b"Connection: close" not in head  # kept alive, as before the drain
    site.listener.start_draining()
    # A client about to reuse its connection sends within the quiet time: it is answered.
    await asyncio.sleep(DRAIN_QUIET_SECONDS / 2)
    writer.write(REQUEST)
    head, body = await read_answer(reader)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" in head
    assert body == b"hello"
    assert await closed_by_server(reader)
    writer.close()
    assert await site.connections.wait_closed(1.0)


async def test_a_quiet_kept_alive_connection_is_closed_after_the_quiet_time(site: Site) -> None:
    reader, writer = await asyncio.open_connection(*site.address)
    writer.write(REQUEST)
    await read_answer(reader)
    await asyncio.sleep(0.2)
    site.listener.start_draining()
    began = time.monotonic()
    assert await asyncio.wait_for(closed_by_server(reader), 5.0)
    waited = time.monotonic() - began
    writer.close()
    # The quiet time counts from the drain, not from the answer: the client had a full second.
    assert DRAIN_QUIET_SECONDS - 0.05 <= waited < DRAIN_QUIET_SECONDS + 1.0
    assert site.connections.keepalive_timeouts == 1
    assert await site.connections.wait_closed(1.0)


async def test_a_stream_in_flight_runs_to_its_end_and_its_connection_serves_one_more(
    site: Site,
) -> None:
    reader, writer = await asyncio.open_connection(*site.address)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: gateway\r\n\r\n")
    answer = asyncio.create_task(read_answer(reader))
    await asyncio.sleep(STREAM_DELAY * 2.5)  # mid-stream
    site.listener.start_draining()
    assert site.connections.busy == 1
    head, body = await answer
    # Its head went out before the drain, keeping the connection alive: the next request on
    # it is answered, with `Connection: close`.
    assert b"Connection: close" not in head
    assert body == b"".join(STREAM)
    writer.write(REQUEST)
    head, body = await read_answer(reader)
    assert b"\r\nConnection: close\r\n" in head
    assert body == b"hello"
    assert await closed_by_server(reader)
    writer.close()
    assert await site.connections.wait_closed(1.0)


async def test_wait_closed_says_when_connections_outlast_it(site: Site) -> None:
    reader, writer = await asyncio.open_connection(*site.address)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: gateway\r\n\r\n")
    await asyncio.sleep(STREAM_DELAY)
    site.listener.start_draining()
    assert not await site.connections.wait_closed(STREAM_DELAY)
    await read_answer(reader)
    writer.close()


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    """Two runners of a small app, each for a listener of its own."""
    app = web.Application()
    app.router.add_get("/", _hello)
    made = [web.AppRunner(app), web.AppRunner(app)]
    for runner in made:
        await runner.setup()
    yield made
    for runner in made:
        await runner.cleanup()


async def test_with_reuse_port_two_listeners_share_the_port(runners: list[web.AppRunner]) -> None:
    port = free_port()
    for runner in runners:
        connections = Connections(limit=50, per_address_limit=0, head_timeout=3.0)
        await Listener(runner, "127.0.0.1", port, connections, reuse_port=True).start()


async def test_reuse_port_needs_it_of_the_listener_already_there(
    site: Site, runners: list[web.AppRunner]
) -> None:
    connections = Connections(limit=50, per_address_limit=0, head_timeout=3.0)
    listener = Listener(runners[0], *site.address, connections, reuse_port=True)
    with pytest.raises(OSError, match=r"in use by a process started without --reuse-port on"):
        await listener.start()


async def test_reuse_port_where_the_system_has_no_so_reuseport_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        listener = Listener(
            runner, "127.0.0.1", free_port(), Connections(1, 0, 1.0), reuse_port=True
        )
        with pytest.raises(OSError, match=r"needs SO_REUSEPORT, which this system does not have"):
            await listener.start()
    finally:
        await runner.cleanup()
