"""The proxy against a real fake upstream: streaming, headers, bodies, errors, hang-ups."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import zstandard
from aiohttp import ClientPayloadError, ClientSession, web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.gateway import StartGateway

CODEX_REQUEST_HEADERS = {
    "Authorization": "Bearer not-a-jwt-token-value",
    "ChatGPT-Account-ID": "acct-1111",
    "originator": "codex_cli_rs",
    "User-Agent": "codex_cli_rs/0.169.0 (Debian 12; x86_64)",
    "version": "0.169.0",
    "session-id": "0199a213-81c0-7800-8aa1-bbab2a035a53",
    "thread-id": "0199a213-81c0-7800-8aa1-bbab2a035a54",
    "x-client-request-id": "req-abc",
    "x-codex-turn-state": "opaque-sticky-routing-token",
    "x-codex-turn-metadata": '{"turn":1}',
    "x-codex-window-id": "w-1",
    "x-codex-beta-features": "a,b",
    "Accept": "text/event-stream",
}


def url(server: TestServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def test_sse_events_arrive_unbuffered(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.release_second_event = asyncio.Event()
    events = sse_events("stream-basic.sse")
    async with http.post(url(gateway, "/backend-api/codex/responses"), data=b"{}") as response:
        assert response.status == 200
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), timeout=2)
        # The upstream has not sent the second event yet: the first one got here on its own.
        assert first == events[0]
        assert not fake.release_second_event.is_set()
        fake.release_second_event.set()
        rest = await response.read()
    assert first + rest == b"".join(events)


async def test_headers_never_wait_for_a_body_the_upstream_has_not_sent(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.release_first_event = asyncio.Event()
    events = sse_events("stream-basic.sse")
    request = http.post(url(gateway, "/backend-api/codex/responses"), data=b"{}")
    async with await asyncio.wait_for(request, timeout=2) as response:
        # The status line and headers are here while the upstream still holds every event.
        assert response.status == 200
        assert response.headers["x-codex-primary-used-percent"] == "46"
        assert not fake.release_first_event.is_set()
        fake.release_first_event.set()
        assert await response.read() == b"".join(events)


async def test_request_headers_and_zstd_body_reach_upstream_byte_for_byte(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    body = zstandard.ZstdCompressor().compress(orjson.dumps({"input": "x" * 5000}))
    headers = {**CODEX_REQUEST_HEADERS, "Content-Encoding": "zstd"}
    async with http.post(
        url(gateway, "/backend-api/codex/responses?client_version=0.169.0"),
        data=body,
        headers=headers,
    ) as response:
        assert response.status == 200
        await response.read()
    received = fake.received[-1]
    assert received.body == body
    assert received.path_qs == "/backend-api/codex/responses?client_version=0.169.0"
    for name, value in headers.items():
        assert received.headers.getall(name) == [value], name
    assert received.headers["Content-Length"] == str(len(body))


async def test_response_passes_through_undecoded(
    gateway: TestServer, upstream_server: TestServer, http: ClientSession
) -> None:
    async with http.get(url(upstream_server, "/backend-api/gzip")) as direct:
        direct_body = await direct.read()
    async with http.get(url(gateway, "/backend-api/gzip")) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert await response.read() == direct_body


async def test_hop_by_hop_headers_are_dropped_both_ways(
    gateway: TestServer, fake: FakeUpstream
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"GET /backend-api/echo/hop HTTP/1.1\r\nHost: example.invalid\r\n"
        b"Connection: keep-alive, X-Private-Hop\r\nKeep-Alive: timeout=5\r\n"
        b"X-Private-Hop: secret\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\n"
        b"Proxy-Connection: keep-alive\r\nX-Forwarded-For: 203.0.113.9\r\nX-Kept: yes\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    writer.close()
    received = fake.received[-1].headers
    for name in ("Keep-Alive", "X-Private-Hop", "TE", "Proxy-Authorization", "Proxy-Connection"):
        assert name not in received, name
    assert received["X-Kept"] == "yes"
    assert received["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert received["X-Forwarded-Proto"] == "http"
    assert received["Host"] == f"127.0.0.1:{fake_port(fake, received)}"
    # The upstream said "Connection: keep-alive"; that is about its own connection.
    response_head = head.decode().lower()
    assert "x-upstream: fake" in response_head
    assert "set-cookie: a=1" in response_head
    assert "keep-alive: " not in response_head


def fake_port(fake: FakeUpstream, received: object) -> str:
    return fake.received[-1].host.rsplit(":", 1)[1]


@pytest.mark.parametrize(
    "target",
    [
        b"//evil.example/steal",
        b"http://evil.example/steal",
        b"/../../steal",
        b"/%2e%2e/steal",
        b"//evil.example/backend-api/codex/responses",
        b"http://evil.example/backend-api/codex/responses",
        b"/backend-api/../../steal",
        b"/backend-api/%2e%2e/%2e%2e/steal",
    ],
)
async def test_no_request_target_reaches_another_host(
    gateway: TestServer, upstream_server: TestServer, fake: FakeUpstream, target: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    for received in fake.received:
        assert received.host == f"127.0.0.1:{upstream_server.port}"
        assert "evil.example" not in received.host


async def test_redirects_are_relayed_not_followed(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async with http.get(url(gateway, "/backend-api/redirect"), allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == "http://127.0.0.2:1/elsewhere"
    assert len(fake.received) == 0 or all("/elsewhere" not in r.path_qs for r in fake.received)


async def test_large_stream_arrives_whole(gateway: TestServer, http: ClientSession) -> None:
    async with http.get(url(gateway, "/backend-api/big?mb=16")) as response:
        assert response.headers["Content-Length"] == str(16 * 1024 * 1024)
        total = 0
        async for chunk in response.content.iter_any():
            total += len(chunk)
    assert total == 16 * 1024 * 1024


async def test_client_hang_up_closes_the_upstream_stream(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    response = await http.get(url(gateway, "/backend-api/endless"))
    await asyncio.wait_for(fake.stream_started.wait(), timeout=5)
    await response.content.readuntil(b"\n\n")
    response.close()
    await asyncio.wait_for(fake.stream_closed_by_client.wait(), timeout=2)


async def test_upstream_cut_mid_body_breaks_the_client_body(
    gateway: TestServer, http: ClientSession
) -> None:
    async with http.get(url(gateway, "/backend-api/cut")) as response:
        assert response.status == 200
        with pytest.raises(ClientPayloadError):
            await response.read()
    # The gateway is fine after.
    async with http.get(url(gateway, "/backend-api/echo/after")) as response:
        assert response.status == 200


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_upstream_gives_502_in_upstream_error_style(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(upstream=URL(f"http://127.0.0.1:{_closed_port()}"))
    async with http.post(url(gateway, "/backend-api/codex/responses"), data=b"{}") as response:
        assert response.status == 502
        assert response.content_type == "application/json"
        body = orjson.loads(await response.read())
    assert body["error"]["type"] == "upstream_unreachable"
    assert "codexgate" in body["error"]["message"]


async def test_silent_upstream_gives_504_after_the_idle_timeout(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(idle_timeout=0.3)
    started = time.monotonic()
    async with http.get(url(gateway, "/backend-api/hang")) as response:
        assert response.status == 504
        body = orjson.loads(await response.read())
    assert time.monotonic() - started < 3
    assert body["error"]["type"] == "upstream_timeout"
    assert "codexgate" in body["error"]["message"]


async def test_admin_prefix_is_never_proxied(
    start_gateway: StartGateway, fake: FakeUpstream, http: ClientSession
) -> None:
    admin = "a" * 32
    gateway = await start_gateway(admin_token=admin)
    path = url(gateway, "/codexgate/nothing-here")
    async with http.get(path) as response:
        assert response.status == 401  # codexgate's own, so it asks for its own credential
    async with http.get(path, headers={"Authorization": f"Bearer {admin}"}) as response:
        assert response.status == 404
        body = orjson.loads(await response.read())
    assert body["error"]["type"] == "not_found"
    assert fake.received == []


async def test_methods_and_empty_bodies_pass_through(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    for method in ("GET", "DELETE", "PUT", "PATCH", "OPTIONS"):
        async with http.request(method, url(gateway, "/backend-api/echo/m?x=1&y=%20")) as response:
            assert response.status == 200
            echoed = orjson.loads(await response.read())
        assert echoed["method"] == method
        assert echoed["path_qs"] == "/backend-api/echo/m?x=1&y=%20"


async def test_no_headers_are_invented_for_the_upstream(
    gateway: TestServer, fake: FakeUpstream
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"POST /backend-api/echo/bare HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    writer.close()
    received = fake.received[-1]
    assert received.body == b"abc"
    for name in ("User-Agent", "Accept", "Accept-Encoding", "Content-Type"):
        assert name not in received.headers, name


async def _forward_proxy(aiohttp_server: AiohttpServer, seen: list[str]) -> TestServer:
    """A minimal HTTP forward proxy that answers itself and records the absolute targets."""

    async def handle(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.Response(text="answered by the proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await aiohttp_server(app)


async def test_upstream_proxy_setting_carries_the_upstream_connection(
    aiohttp_server: AiohttpServer,
    start_gateway: StartGateway,
    upstream_server: TestServer,
    http: ClientSession,
) -> None:
    seen: list[str] = []
    proxy = await _forward_proxy(aiohttp_server, seen)
    gateway = await start_gateway(upstream_proxy=URL(f"http://127.0.0.1:{proxy.port}"))
    async with http.get(url(gateway, "/backend-api/codex/models?v=1")) as response:
        assert await response.text() == "answered by the proxy"
    assert seen == [f"http://127.0.0.1:{upstream_server.port}/backend-api/codex/models?v=1"]


async def test_proxy_environment_is_honoured_without_the_setting(
    aiohttp_server: AiohttpServer,
    start_gateway: StartGateway,
    upstream_server: TestServer,
    http: ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    proxy = await _forward_proxy(aiohttp_server, seen)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    gateway = await start_gateway()
    async with http.get(url(gateway, "/backend-api/codex/models")) as response:
        assert await response.text() == "answered by the proxy"
    assert seen == [f"http://127.0.0.1:{upstream_server.port}/backend-api/codex/models"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    gateway = await start_gateway()
    async with http.get(url(gateway, "/backend-api/codex/models")) as response:
        assert response.status == 200
        assert "models" in await response.text()
    assert len(seen) == 1


async def test_an_upstream_silent_mid_stream_is_cut_after_the_idle_timeout(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(idle_timeout=0.3)
    async with http.get(url(gateway, "/backend-api/stall")) as response:
        assert await response.content.readuntil(b"\n\n") == b"data: first\n\n"
        started = time.monotonic()
        with pytest.raises(ClientPayloadError):
            await response.read()
    assert time.monotonic() - started < 3


async def test_large_request_bodies_stream_up_whole(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(256):
            yield b"z" * 65536

    async with http.post(url(gateway, "/backend-api/echo/upload"), data=body()) as response:
        echoed = orjson.loads(await response.read())
    assert echoed["body_length"] == 256 * 65536
    assert fake.received[-1].body == b"z" * (256 * 65536)
