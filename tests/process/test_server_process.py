"""`python -m codexgate` as a user runs it: start-up log, traffic, shutdown, refusals."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import GatewayProcess, free_port
from tests.helpers.tokens import bearer


async def test_serves_records_and_shuts_down_cleanly(
    tmp_path: Path, upstream_server: TestServer, fake: FakeUpstream
) -> None:
    upstream = f"http://127.0.0.1:{upstream_server.port}"
    gateway = GatewayProcess(["serve", "--upstream", upstream], tmp_path)
    try:
        await gateway.wait_ready()
        async with (
            ClientSession() as http,
            http.post(
                f"{gateway.base}/backend-api/codex/responses",
                data=b"{}",
                headers={"Authorization": bearer("seat_a")},
            ) as response,
        ):
            assert response.status == 200
            assert b"response.completed" in await response.read()
        assert await gateway.terminate() == 0
    finally:
        gateway.kill()
    log = gateway.log()
    assert f"listening on http://127.0.0.1:{gateway.port}" in log
    assert f"upstream {upstream}" in log
    assert str(tmp_path / "data" / "codexgate.db") in log
    assert f'chatgpt_base_url = "http://127.0.0.1:{gateway.port}/backend-api/"' in log
    assert "Bearer" not in log  # no token in the logs
    assert "eyJ" not in log
    db = tmp_path / "data" / "codexgate.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT email, five_hour_used_percent, seven_day_used_percent FROM latest_usage"
        ).fetchall()
    assert rows == [("alice@example.com", 46.0, 15.0)]


async def test_environment_settings_are_used(tmp_path: Path) -> None:
    env = {"CODEXGATE_DB": str(tmp_path / "env.db"), "CODEXGATE_ADMIN_PREFIX": "api_x1"}
    gateway = GatewayProcess([], tmp_path, env=env, admin_prefix="api_x1")
    try:
        await gateway.wait_ready()
        assert (tmp_path / "env.db").exists()
        assert await gateway.terminate() == 0
    finally:
        gateway.kill()


def test_a_newer_database_is_refused_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA user_version = 999")
    result = subprocess.run(
        [sys.executable, "-m", "codexgate", "--db", str(db), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "newer than this codexgate supports" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
