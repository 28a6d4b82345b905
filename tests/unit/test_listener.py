"""The listener in this process: running out of descriptors, the file limit, the cap's maths."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from codexgate.listener import (
    RESERVED_FILES,
    Connections,
    Listener,
    connection_cap,
    raise_file_limit,
)


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def listening() -> AsyncIterator[tuple[Listener, Connections]]:
    """A small app behind the Listener on a loopback port."""
    connections = Connections(limit=50, per_address_limit=0, head_timeout=30.0)
    app = web.Application()
    app.middlewares.append(connections.middleware())
    app.router.add_get("/", _hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = Listener(runner, "127.0.0.1", 0, connections)
    await site.start()
    yield site, connections
    await runner.cleanup()


def test_the_cap_leaves_two_files_per_connection_and_a_reserve() -> None:
    assert connection_cap(8192, 1_048_576) == 8192
    assert connection_cap(8192, 1024) == (1024 - RESERVED_FILES) // 2
    assert connection_cap(8192, 10) == 1


def test_the_soft_file_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard - 1), hard))
    try:
        assert raise_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_running_out_of_descriptors_is_logged_once_and_accepting_resumes(
    listening: tuple[Listener, Connections], caplog: pytest.LogCaptureFixture
) -> None:
    site, connections = listening
    address = site.sockets[0].getsockname()
    clients = [socket.socket() for _ in range(5)]
    for client in clients:
        client.setblocking(False)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)  # descriptors are allocated lowest first
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        with caplog.at_level(logging.WARNING, logger="codexgate.listener"):
            for client in clients:
                # A loopback connect completes in the kernel; the gateway's accept() then fails.
                assert client.connect_ex(address) in (0, errno.EINPROGRESS)
            for _ in range(100):
                if connections.accept_errors >= 3:
                    break
                await asyncio.sleep(0.05)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert connections.accept_errors >= 3
    assert connections.open == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "codexgate.listener"]
    assert len(warnings) == 1
    assert "accepting failed (EMFILE)" in warnings[0]

    # With descriptors back, the connections that waited are taken and answered.
    answers = []
    for client in clients:
        reader, writer = await asyncio.open_connection(sock=client)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers.append(await asyncio.wait_for(reader.read(), 5.0))
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert all(answer.startswith(b"HTTP/1.1 200 OK") for answer in answers)
