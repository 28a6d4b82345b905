"""What reaches the log: no secret at any level, no third-party chatter, no client noise."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.test_utils import TestServer

from codexgate.logs import BadRequestFilter
from codexgate.security import hash_token
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess, free_port
from tests.helpers.tokens import bearer

ADMIN = "admin-secret-token-4f1d2c3b5a69"
METRICS = "metrics-secret-token-8e7d6c5b4a"
PROXY_USER = "proxyuser"
PROXY_PASSWORD = "proxy-password-5c2e9a"
FILE_HOOK = "/hooks/T000/B000/file-hook-secret-91f3"
API_HOOK = "/hooks/T111/B111/api-hook-secret-27ab"


class RelayProxy:
    """A forward HTTP proxy for plain-HTTP targets: checks Proxy-Authorization, then relays."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.expected = "Basic " + base64.b64encode(
            f"{PROXY_USER}:{PROXY_PASSWORD}".encode()
        ).decode("ascii")
        self.relayed = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            auth = [
                line.split(":", 1)[1].strip()
                for line in lines
                if ":" in line and line.split(":", 1)[0].lower() == "proxy-authorization"
            ]
            if auth != [self.expected]:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                return
            self.relayed += 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            try:
                up_writer.write(head)
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
                await up_writer.wait_closed()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.write_eof()


@pytest.fixture
async def relay(upstream_server: TestServer) -> AsyncIterator[RelayProxy]:
    assert upstream_server.port is not None
    proxy = RelayProxy(upstream_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_debug_log_holds_no_secret_and_no_third_party_lines(
    tmp_path: Path, upstream_server: TestServer, fake: FakeUpstream, relay: RelayProxy
) -> None:
    assert relay.server is not None
    proxy_port = relay.server.sockets[0].getsockname()[1]
    dead = free_port()
    (tmp_path / "codexgate.toml").write_text(
        f'[[alerts.webhooks]]\nurl = "http://127.0.0.1:{dead}{FILE_HOOK}"\nname = "ops"\n'
    )
    seat = bearer("seat_a")
    gateway = GatewayProcess(
        [
            "--log-level", "DEBUG",
            "--upstream", f"http://127.0.0.1:{upstream_server.port}",
            "--upstream-proxy", f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy_port}",
            "--admin-token", ADMIN,
            "--metrics-token", METRICS,
        ],
        tmp_path,
    )  # fmt: skip
    base = f"{gateway.base}/codexgate"
    try:
        await gateway.wait_ready()
        async with ClientSession() as http:
            async with http.post(
                f"{gateway.base}/backend-api/codex/responses",
                data=b"{}",
                headers={"Authorization": seat},
            ) as turn:
                assert turn.status == 200
                assert b"response.completed" in await turn.read()
            async with http.get(
                f"{base}/login", params={"token": ADMIN}, allow_redirects=False
            ) as signed_in:
                assert signed_in.status == 303
                session = signed_in.cookies["codexgate_session"].value
            cookie = {"Cookie": f"codexgate_session={session}", "Origin": gateway.base}
            async with http.post(
                f"{base}/api/v1/alerts/webhooks",
                json={"url": f"http://127.0.0.1:{dead}{API_HOOK}", "name": "api"},
                headers=cookie,
            ) as added:
                assert added.status == 201, await added.text()
            async with http.post(f"{base}/api/v1/alerts/test", json={}, headers=cookie) as tested:
                assert tested.status == 200
            accounts: list[dict[str, object]] = []
            for _ in range(200):  # the recorder writes the turn's account shortly after it
                async with http.get(f"{base}/api/v1/accounts", headers=cookie) as listed:
                    accounts = (await listed.json())["accounts"]
                if accounts:
                    break
                await asyncio.sleep(0.05)
            account = accounts[0]["id"]
            async with http.patch(
                f"{base}/api/v1/accounts/{account}", json={"display_name": "work"}, headers=cookie
            ) as renamed:
                assert renamed.status == 200
            async with http.get(
                f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS}"}
            ) as metrics:
                assert metrics.status == 200
        assert await gateway.terminate() == 0
    finally:
        gateway.kill()
    assert relay.relayed >= 1  # the turn really went through the proxy with its password
    with sqlite3.connect(tmp_path / "data" / "codexgate.db") as db:
        stored = [
            *db.execute("SELECT name, value FROM settings WHERE length(value) >= 16"),
            *db.execute("SELECT 'session id hash', id_sha256 FROM sessions"),
        ]
    assert any(name == "admin_token_sha256" for name, _ in stored)
    assert any(name == "session id hash" for name, _ in stored)
    log = gateway.log()
    assert f"via proxy http://***@127.0.0.1:{proxy_port}" in log
    secrets = {
        "admin token": ADMIN,
        "admin token hash": hash_token(ADMIN),
        "metrics token": METRICS,
        "metrics token hash": hash_token(METRICS),
        **{f"stored {name}": value for name, value in stored},
        "session cookie": session,
        "proxy password": PROXY_PASSWORD,
        "proxy credentials": relay.expected.split()[1],
        "file webhook path": FILE_HOOK,
        "api webhook path": API_HOOK,
        "seat token": seat.split()[1],
        "seat token payload": seat.split(".")[1],
    }
    for what, secret in secrets.items():
        assert secret not in log, f"the {what} reached the log"
    assert "hook-secret" not in log
    assert "aiosqlite" not in log
    assert " DEBUG aiohttp" not in log
    assert " INFO aiohttp" not in log
    assert " DEBUG asyncio" not in log


async def test_banner_masks_the_environment_proxy_password(tmp_path: Path) -> None:
    port = free_port()
    proxy = f"http://envuser:env-proxy-secret@127.0.0.1:{port}"
    env = {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
    gateway = GatewayProcess(
        ["--upstream", f"http://127.0.0.1:{free_port()}", "--admin-token", ADMIN], tmp_path, env
    )
    try:
        await gateway.wait_ready()
        assert await gateway.terminate() == 0
    finally:
        gateway.kill()
    log = gateway.log()
    assert f"via proxy http://***@127.0.0.1:{port}" in log
    assert "env-proxy-secret" not in log
    assert "envuser" not in log


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Evil: \x1b]0;owned\x07\r\nbad\x1b[2J line\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
    b"GET / HTTP/1.1\r\n\r\nGE\x1bT / HTTP/1.1\r\n\r\n",  # a bad second request
]


def _send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                answer += chunk
        return answer


async def test_malformed_requests_leave_no_traceback_or_error(tmp_path: Path) -> None:
    gateway = GatewayProcess(
        ["--upstream", f"http://127.0.0.1:{free_port()}", "--admin-token", ADMIN], tmp_path
    )
    try:
        await gateway.wait_ready()
        for data in MALFORMED:
            answer = await asyncio.to_thread(_send_raw, gateway.port, data)
            assert answer == b"" or b" 400 " in answer.split(b"\r\n", 1)[0], answer[:80]
        assert await gateway.terminate() == 0
    finally:
        gateway.kill()
    log = gateway.log()
    assert "Traceback" not in log
    assert " ERROR " not in log
    assert "Error handling request" not in log
    assert "\x1b" not in log
    assert "\x07" not in log
    # One line says that malformed requests came, and no more within the minute.
    assert log.count("malformed request from 127.0.0.1") == 1


def _record(
    error: BaseException | None, message: str = "Error handling request from %s"
) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, message, ("10.0.0.1",), exc_info
    )


def test_bad_request_filter_reports_once_a_minute_and_passes_real_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    bad_request = BadRequestFilter(interval=60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="codexgate")
    hostile = BadHttpMessage("Invalid header value char: '\x1b]0;x\x07'\r\nINFO forged")
    assert bad_request.filter(_record(hostile)) is False
    assert bad_request.filter(_record(LineTooLong("line", "8190"))) is False
    now[0] += 61
    assert bad_request.filter(_record(BadHttpMessage("again"))) is False
    # A handler's own failure stays an ERROR with its traceback.
    assert bad_request.filter(_record(RuntimeError("handler bug"))) is True
    assert bad_request.filter(_record(None, "Unhandled exception")) is True
    lines = [r.getMessage() for r in caplog.records if r.name == "codexgate.logs"]
    assert len(lines) == 2
    assert "10.0.0.1" in lines[0]
    assert "\\x1b]0;x\\x07" in lines[0]
    assert "\n" not in lines[0]
    assert "\x1b" not in lines[0]
    assert "(1 more since the last such line)" in lines[1]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
