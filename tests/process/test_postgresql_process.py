"""`python -m codexgate --db postgresql://...` as a user runs it: a turn recorded, the password
never shown, an unreachable server retried then refused with one line, a wrong one at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate import paths
from codexgate.storage.migrations import read_migrations
from tests.helpers.admin_client import ADMIN
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.postgres import PostgresServer
from tests.helpers.processes import GatewayProcess, free_port
from tests.helpers.tokens import bearer


def _password(url: str) -> str:
    password = urlsplit(url).password
    assert password
    return password


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _codexgate(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codexgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
        env={**os.environ, **(env or {})},
    )


async def test_a_turn_is_recorded_in_postgresql_and_the_password_never_shows(
    tmp_path: Path,
    upstream_server: TestServer,
    fake: FakeUpstream,
    postgres_server: PostgresServer,
    postgres_database: str,
) -> None:
    upstream = f"http://127.0.0.1:{upstream_server.port}"
    args = ["serve", "--upstream", upstream, "--db", postgres_database]
    gateway = GatewayProcess(args, tmp_path, env={"CODEXGATE_ADMIN_TOKEN": ADMIN})
    try:
        await gateway.wait_ready()
        async with ClientSession() as http:
            async with http.post(
                f"{gateway.base}/backend-api/codex/responses",
                data=b"{}",
                headers={"Authorization": bearer("seat_a")},
            ) as response:
                assert response.status == 200
                assert b"response.completed" in await response.read()
            async with http.get(f"{gateway.base}/codexgate/healthz") as response:
                health = await response.read()
            deadline = time.monotonic() + 10
            accounts: list[dict[str, object]] = []
            while not accounts and time.monotonic() < deadline:
                async with http.get(
                    f"{gateway.base}/codexgate/api/v1/accounts",
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as response:
                    assert response.status == 200
                    accounts = orjson.loads(await response.read())["accounts"]
        assert await gateway.terminate() == 0
    finally:
        gateway.kill()
    assert [account["email"] for account in accounts] == ["alice@example.com"]
    rows = await postgres_server.run_sql(
        postgres_database,
        "SELECT email, five_hour_used_percent, seven_day_used_percent FROM latest_usage",
    )
    assert [tuple(row) for row in rows] == [("alice@example.com", 46.0, 15.0)]
    password = _password(postgres_database)
    log = gateway.log()
    assert f"127.0.0.1:{postgres_server.port}" in log
    assert password not in log
    assert password.encode() not in health
    check = await asyncio.to_thread(
        _codexgate, "check-config", "--db", postgres_database, cwd=tmp_path
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert password not in check.stdout + check.stderr
    assert "***" in check.stdout


def test_an_unreachable_server_is_retried_then_refused_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://codexgate:s3cret-word@127.0.0.1:{port}/codexgate"
    started = time.monotonic()
    result = _codexgate(
        "--db", url, "--db-connect-timeout", "2", "--port", str(free_port()), cwd=tmp_path
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed >= 2
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "error" in line]
    assert errors, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "s3cret-word" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


async def test_a_wrong_password_fails_at_once(
    tmp_path: Path, postgres_server: PostgresServer, postgres_database: str
) -> None:
    url = _with_password(postgres_database, "not-the-password")
    started = time.monotonic()
    result = _codexgate(
        "--db", url, "--db-connect-timeout", "30", "--port", str(free_port()), cwd=tmp_path
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 20  # not the 30 s of retries
    assert f"127.0.0.1:{postgres_server.port}" in result.stderr
    assert "password authentication failed" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


async def test_libpq_variables_and_a_password_file_are_used(
    tmp_path: Path, postgres_server: PostgresServer, postgres_database: str
) -> None:
    parts = urlsplit(postgres_database)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{parts.port}:*:{parts.username}:{parts.password}\n")
    passfile.chmod(0o600)
    env = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(parts.port),
        "PGUSER": str(parts.username),
        "PGPASSFILE": str(passfile),
    }
    # No host, port, user or password in the URL: libpq's variables and the file give them.
    url = f"postgresql:///{parts.path[1:]}"
    result = await asyncio.to_thread(_codexgate, "migrate", "--db", url, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = await postgres_server.run_sql(postgres_database, "SELECT version FROM codexgate_schema")
    newest = read_migrations(paths.migrations_dir("postgresql"))[-1].number
    assert [row["version"] for row in rows] == [newest]


def test_sslmode_in_the_url_is_honoured(
    tmp_path: Path, postgres_server: PostgresServer, postgres_database: str
) -> None:
    # The test server has no TLS: a URL that requires it must not fall back to plain text.
    result = _codexgate(
        "migrate",
        "--db",
        f"{postgres_database}?sslmode=require",
        "--db-connect-timeout",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "SSL" in result.stderr
    assert _password(postgres_database) not in result.stderr + result.stdout


async def test_the_offline_commands_take_a_url(
    tmp_path: Path, postgres_server: PostgresServer, postgres_database: str
) -> None:
    def run(*args: str) -> str:
        result = _codexgate(*args, "--db", postgres_database, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _password(postgres_database) not in result.stdout + result.stderr
        return result.stdout

    await asyncio.to_thread(run, "migrate")
    added = await asyncio.to_thread(
        run, "accounts", "add", "--name", "Team seat", "--token", "tok-abcdefgh-1234"
    )
    assert "added account 1 (Team seat)" in added
    await asyncio.to_thread(run, "accounts", "rename", "1", "Renamed")
    assert "Renamed" in await asyncio.to_thread(run, "accounts", "list")
    status = orjson.loads(await asyncio.to_thread(run, "status", "--json"))
    assert [account["title"] for account in status["accounts"]] == ["Renamed"]
    assert "no history" in await asyncio.to_thread(run, "history", "1")
    await asyncio.to_thread(run, "accounts", "rm", "1", "--yes")
    rows = await postgres_server.run_sql(postgres_database, "SELECT count(*) AS n FROM accounts")
    assert rows[0]["n"] == 0
