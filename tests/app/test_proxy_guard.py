"""What the proxy refuses to relay, and what it keeps out of relayed answers and its log lines.

Near-miss spellings of the admin prefix, non-Codex paths, the admin and metrics tokens, request
headers it cannot forward byte for byte, upstream headers aiohttp cannot write, and the admin
session cookie; each against a real gateway with an upstream that records what reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

import orjson
import pytest
from aiohttp import ClientPayloadError, ClientSession
from aiohttp.test_utils import TestServer
from yarl import URL

from codexgate.core.sanitize import has_unsafe
from tests.helpers.admin_client import ADMIN, JWTS
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway

CODEX_BEARER = f"Bearer {JWTS['seat_a']}"
METRICS_TOKEN = "metrics-token-for-tests-0123456789"


def url(server: TestServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def raw_exchange(port: int | None, head: bytes) -> bytes:
    """Send `head` (a request without a body); read the answer's head and Content-Length body."""
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        for line in answer.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
                answer += await asyncio.wait_for(reader.readexactly(length), timeout=5)
        return answer
    finally:
        writer.close()


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_not_relayed(answer: bytes, fake: FakeUpstream, status: int, error_type: str) -> None:
    got, body = status_and_body(answer)
    assert got == status, answer[:300]
    assert orjson.loads(body)["error"]["type"] == error_type
    assert fake.received == []


# --- item 8: near-miss admin URLs ---------------------------------------------------------------

NEAR_MISSES = [
    b"//codexgate/api/v1/accounts",
    b"//codexgate/metrics",
    b"/codexgate;v=1/metrics",
    b"/codexgate;v=1/api/v1/accounts",
    b"/CODEXGATE/api/v1/accounts",
    b"/CodexGate/metrics",
    b"/codexgate\\metrics",
    b"/codexgate\\api\\v1\\accounts",
    b"/x/../codexgate/api/v1/accounts",
    b"/%2fcodexgate/metrics",
    b"/codexgate%2fmetrics",
    b"/codexgate%2Fapi%2Fv1%2Faccounts",
    b"/%43ODEXGATE/metrics",
    b"/backend-api/../codexgate/metrics",
    b"/backend-api/%2e%2e/codexgate/api/v1/accounts",
    b"/backend-api/..%2fcodexgate/metrics",
    b"/backend-api/%252e%252e/codexgate/metrics",
    b"/backend-api\\..\\codexgate\\metrics",
    b"/backend-api/..;/codexgate/metrics",
    b"/backend-api//..//codexgate/metrics",
    b"/api/codex/../../codexgate/metrics",
    b"/api/codex/./../../CODEXGATE/metrics",
]


@pytest.mark.parametrize("target", NEAR_MISSES, ids=lambda target: target.decode())
@pytest.mark.parametrize("credential", ["admin", "codex"])
async def test_near_miss_admin_paths_never_reach_the_upstream(
    server: TestServer, fake: FakeUpstream, target: bytes, credential: str
) -> None:
    bearer = f"Bearer {ADMIN}" if credential == "admin" else CODEX_BEARER
    answer = await raw_exchange(
        server.port,
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: " + bearer.encode() + b"\r\n\r\n",
    )
    if credential == "codex" and unquote_to_bytes(target).startswith(b"/codexgate/"):
        # request.path decodes %2F, so the admin middleware asks for its own credential first.
        assert_not_relayed(answer, fake, 401, "unauthorized")
    else:
        assert_not_relayed(answer, fake, 404, "not_found")


async def test_percent_encoded_admin_paths_are_codexgates_own(
    server: TestServer, fake: FakeUpstream
) -> None:
    """aiohttp's router decodes these into the prefix: the admin routes answer, with auth."""
    for target in (b"/%63odexgate/api/v1/accounts", b"/codexgat%65/metrics"):
        head = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        status, _ = status_and_body(await raw_exchange(server.port, head + b"\r\n"))
        assert status == 401
        admin = head + b"Authorization: Bearer " + ADMIN.encode() + b"\r\n\r\n"
        status, _ = status_and_body(await raw_exchange(server.port, admin))
        assert status == 200
    assert fake.received == []


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {ADMIN}",
        f"bearer {ADMIN}",
        f"Bearer   {ADMIN}  ",
        ADMIN,
        f"Bearer {METRICS_TOKEN}",
        f"Basic {ADMIN}",
    ],
)
async def test_the_admin_and_metrics_tokens_are_never_forwarded(
    start_gateway: StartGateway, fake: FakeUpstream, http: ClientSession, authorization: str
) -> None:
    gateway = await start_gateway(admin_token=ADMIN, metrics_token=METRICS_TOKEN)
    async with http.post(
        url(gateway, "/backend-api/codex/responses"),
        data=b"{}",
        headers={"Authorization": authorization},
    ) as response:
        assert response.status == 403
        assert response.headers["X-Codexgate-Error"] == "admin_token_refused"
        assert (await response.json())["error"]["type"] == "admin_token_refused"
    assert fake.received == []


async def test_an_admin_token_in_a_second_authorization_or_a_websocket_is_refused(
    server: TestServer, fake: FakeUpstream
) -> None:
    second = await raw_exchange(
        server.port,
        b"GET /backend-api/wham/usage HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"Authorization: " + CODEX_BEARER.encode() + b"\r\n"
        b"Authorization: Bearer " + ADMIN.encode() + b"\r\n\r\n",
    )
    assert_not_relayed(second, fake, 403, "admin_token_refused")
    upgrade = await raw_exchange(
        server.port,
        b"GET /backend-api/codex/responses HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Authorization: Bearer " + ADMIN.encode() + b"\r\n\r\n",
    )
    assert_not_relayed(upgrade, fake, 403, "admin_token_refused")


async def test_codex_credentials_still_pass(
    server: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async with http.get(
        url(server, "/backend-api/wham/usage"), headers={"Authorization": CODEX_BEARER}
    ) as response:
        assert response.status == 200
    assert fake.received[-1].headers["Authorization"] == CODEX_BEARER


# --- item 14: only Codex paths are relayed ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/index.html",
        "/favicon.ico",
        "/v1/responses",
        "/backend-api",
        "/api/codexx/usage",
        "/api/other",
        "/codexgatex",
        "/echo/x",
        "/x/backend-api/codex/responses",
        "/backend-api/../v1/responses",
        "/api/codex/%2e%2e/%2e%2e/v1/responses",
    ],
)
async def test_paths_outside_the_codex_backend_are_not_relayed(
    server: TestServer, fake: FakeUpstream, http: ClientSession, path: str
) -> None:
    async with http.post(
        URL(url(server, path), encoded=True), headers={"Authorization": CODEX_BEARER}
    ) as response:
        assert response.status == 404
        body = await response.json()
        # An own answer: the envelope and the security headers, and no hint at the admin prefix.
        assert response.headers["X-Codexgate-Error"] == "not_found"
        assert "Content-Security-Policy" in response.headers
    assert body["error"]["type"] == "not_found"
    assert "codexgate/" not in body["error"]["message"]
    assert fake.received == []


@pytest.mark.parametrize(
    "path",
    [
        "/backend-api/codex/models?client_version=0.171.0",
        "/backend-api/wham/usage",
        "/api/codex/usage",
        "/backend-api/ps/plugins/installed",
        "/backend-api//wham/usage",
        "/backend-api/wham/./usage",
        "/backend-api/codex/x/../models",
        "/backend-api/echo/a%20b",
    ],
)
async def test_codex_paths_are_relayed_as_sent(
    server: TestServer, fake: FakeUpstream, http: ClientSession, path: str
) -> None:
    async with http.get(
        URL(url(server, path), encoded=True), headers={"Authorization": CODEX_BEARER}
    ) as response:
        assert response.status == 200
        assert "X-Codexgate-Error" not in response.headers
    assert [received.path_qs for received in fake.received] == [path]


# --- a raw upstream: header bytes that aiohttp's server would not write ---------------------------


@dataclass
class RawUpstream:
    """An HTTP/1.1 upstream that writes `head` and `body` as bytes and records each request."""

    head: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain"
    body: bytes = b"hello"
    declared_length: int | None = None  # more than len(body): the connection drops mid-body
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request, then close the connection."""
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            length = self.declared_length or len(self.body)
            writer.write(
                self.head + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % length
            )
            writer.write(self.body)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[tuple[RawUpstream, int]]:
    """The raw upstream, listening on loopback, and its port."""
    upstream = RawUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    yield upstream, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def raw_gateway(
    start_gateway: StartGateway, raw_upstream: tuple[RawUpstream, int]
) -> TestServer:
    """codexgate in front of the raw upstream."""
    return await start_gateway(upstream=URL(f"http://127.0.0.1:{raw_upstream[1]}"))


@pytest.mark.parametrize(
    "bad",
    [b"a\x1bb", b"\x07", b"a\x7fb", b"a\x1b[31mred", b"\x01\x02", b"x\x1fy"],
    ids=["esc", "bel", "del", "ansi", "soh-stx", "us"],
)
async def test_an_upstream_header_aiohttp_cannot_write_is_dropped_and_the_rest_relayed(
    raw_gateway: TestServer,
    raw_upstream: tuple[RawUpstream, int],
    caplog: pytest.LogCaptureFixture,
    bad: bytes,
) -> None:
    upstream, _ = raw_upstream
    upstream.head = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        b"X-Codex-Primary-Used-Percent: 100\r\nX-Bad: " + bad + b"\r\nX-Tab: a\tb\r\n"
        b"X-Utf8: caf\xc3\xa9\r\nX-Multi: good\r\nX-Multi: " + bad
    )
    upstream.body = b'{"error":{"type":"usage_limit_reached"}}'
    answer = await raw_exchange(
        raw_gateway.port,
        b"GET /backend-api/wham/usage HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 "), answer
    assert body == upstream.body
    lines = head.lower().split(b"\r\n")
    assert b"x-codex-primary-used-percent: 100" in lines
    assert b"x-tab: a\tb" in lines  # a tab is allowed in a value, and kept
    assert b"x-utf8: caf\xc3\xa9" in lines  # UTF-8 passes byte for byte
    assert not any(line.startswith(b"x-bad") for line in lines)
    assert [line for line in lines if line.startswith(b"x-multi")] == [b"x-multi: good"]
    dropped = [record for record in caplog.records if "X-Bad" in record.getMessage()]
    assert dropped
    assert all(not has_unsafe(record.getMessage()) for record in dropped)


async def test_an_upstream_header_that_is_not_utf8_is_relayed_without_those_bytes(
    raw_gateway: TestServer, raw_upstream: tuple[RawUpstream, int]
) -> None:
    """aiohttp's writer cannot write them; the capture still sees them (as U+FFFD)."""
    upstream, _ = raw_upstream
    upstream.head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Plan: pl\xffus"
    answer = await raw_exchange(
        raw_gateway.port,
        b"GET /backend-api/wham/usage HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    assert b"\r\nX-Plan: plus\r\n" in answer
    assert status_and_body(answer) == (200, b"hello")


async def test_a_control_character_in_the_reason_phrase_is_not_a_500(
    raw_gateway: TestServer, raw_upstream: tuple[RawUpstream, int]
) -> None:
    upstream, _ = raw_upstream
    upstream.head = b"HTTP/1.1 200 O\x1bK\r\nContent-Type: text/plain"
    answer = await raw_exchange(
        raw_gateway.port,
        b"GET /backend-api/wham/usage HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    # aiohttp's client parser lets it through; the client gets the standard phrase instead.
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert status_and_body(answer)[1] == b"hello"


async def test_the_upstream_cannot_plant_the_admin_session_cookie(
    raw_gateway: TestServer, raw_upstream: tuple[RawUpstream, int]
) -> None:
    upstream, _ = raw_upstream
    upstream.head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        b"Set-Cookie: codexgate_session=planted; Path=/codexgate; HttpOnly\r\n"
        b"Set-Cookie: a=1; Path=/\r\n"
        b"Set-Cookie:  codexgate_session =padded; Path=/\r\n"
        b"Set-Cookie: xcodexgate_session=2\r\n"
        b"Set-Cookie: b=codexgate_session=3"
    )
    answer = await raw_exchange(
        raw_gateway.port,
        b"GET /backend-api/wham/usage HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    cookies = [line for line in head.split(b"\r\n") if line.lower().startswith(b"set-cookie:")]
    assert cookies == [
        b"Set-Cookie: a=1; Path=/",
        b"Set-Cookie: xcodexgate_session=2",
        b"Set-Cookie: b=codexgate_session=3",
    ]
    assert body == b"hello"


async def test_nor_on_a_websocket_handshake(
    start_gateway: StartGateway, fake: FakeUpstream
) -> None:
    fake.response_headers = {"Set-Cookie": "codexgate_session=planted; Path=/", "X-Kept": "1"}
    gateway = await start_gateway()
    answer = await raw_exchange(
        gateway.port,
        b"GET /backend-api/codex/responses HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Authorization: " + CODEX_BEARER.encode() + b"\r\n\r\n",
    )
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 101 ")
    assert b"x-kept: 1" in head
    assert b"codexgate_session" not in head


# --- item 17, the client's side: headers that are not UTF-8 ---------------------------------------


async def test_a_request_header_that_is_not_utf8_is_refused(
    raw_gateway: TestServer, raw_upstream: tuple[RawUpstream, int]
) -> None:
    upstream, _ = raw_upstream
    for value in (b"caf\xff", b"\xc3(", b"acct-\x80"):
        answer = await raw_exchange(
            raw_gateway.port,
            b"GET /backend-api/wham/usage HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            b"ChatGPT-Account-ID: " + value + b"\r\n\r\n",
        )
        status, body = status_and_body(answer)
        assert status == 400
        assert orjson.loads(body)["error"]["type"] == "invalid_header"
    assert upstream.requests == []
    answer = await raw_exchange(
        raw_gateway.port,
        b"GET /backend-api/wham/usage HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"X-Name: caf\xc3\xa9\r\nX-Tab: a\tb\r\n\r\n",
    )
    assert status_and_body(answer)[0] == 200
    assert b"\r\nX-Name: caf\xc3\xa9\r\n" in upstream.requests[0]  # byte for byte
    assert b"\r\nX-Tab: a\tb\r\n" in upstream.requests[0]


# --- item 15: log lines the proxy writes --------------------------------------------------------

# A forged second log line, a screen wipe, a bell, a right-to-left override; and a line that
# a carriage return overwrites (no newline: aiohttp's router never matched one before).
SPOOFS = [
    "/backend-api/x%0d%0a2026-01-01%20ERROR%20forged%1b[2J%07%e2%80%ae",
    "/backend-api/x%0d2026-01-01%20ERROR%20forged%1b[2J",
]
spoofs = pytest.mark.parametrize("spoof", SPOOFS, ids=["newline", "carriage-return"])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_clean_log(caplog: pytest.LogCaptureFixture, expected: int) -> None:
    records = [record for record in caplog.records if record.name == "codexgate.proxy.relay"]
    assert len(records) >= expected, [record.getMessage() for record in records]
    for record in records:
        assert not has_unsafe(record.getMessage()), record.getMessage()
    assert any("x\\x0d" in record.getMessage() for record in records)


@spoofs
async def test_an_unreachable_upstream_log_line_escapes_the_path(
    start_gateway: StartGateway, http: ClientSession, caplog: pytest.LogCaptureFixture, spoof: str
) -> None:
    gateway = await start_gateway(upstream=URL(f"http://127.0.0.1:{_closed_port()}"))
    caplog.set_level(logging.WARNING, "codexgate.proxy.relay")
    async with http.get(URL(url(gateway, spoof), encoded=True)) as response:
        assert response.status == 502
    assert_clean_log(caplog, 1)


@spoofs
async def test_a_broken_stream_log_line_escapes_the_path(
    raw_gateway: TestServer,
    raw_upstream: tuple[RawUpstream, int],
    http: ClientSession,
    caplog: pytest.LogCaptureFixture,
    spoof: str,
) -> None:
    upstream, _ = raw_upstream
    upstream.declared_length = 1000  # 5 bytes come, then the connection closes
    caplog.set_level(logging.WARNING, "codexgate.proxy.relay")
    async with http.get(URL(url(raw_gateway, spoof), encoded=True)) as response:
        assert response.status == 200
        with pytest.raises(ClientPayloadError):
            await response.read()
    assert_clean_log(caplog, 1)


@spoofs
async def test_a_refused_admin_token_log_line_escapes_the_path(
    server: TestServer, http: ClientSession, caplog: pytest.LogCaptureFixture, spoof: str
) -> None:
    caplog.set_level(logging.WARNING, "codexgate.proxy.relay")
    async with http.get(
        URL(url(server, spoof), encoded=True), headers={"Authorization": f"Bearer {ADMIN}"}
    ) as response:
        assert response.status == 403
    assert_clean_log(caplog, 1)
