"""The command line as people type it: settings on either side of the command, help that fits
each command, `accounts add --from-codex-auth`, and one clear line for every --url failure.
Real `python -m codexgate` processes, and a real gateway process for --url."""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from codexgate.core.models import TOKEN_KEY_PREFIX
from tests.helpers.admin_client import JWTS, OPAQUE
from tests.helpers.processes import GatewayProcess, free_port
from tests.helpers.tokens import claims_of


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`python -m codexgate ...` with no CODEXGATE_ or CODEX_HOME from the test's environment."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CODEXGATE_") and k not in ("CODEX_HOME", "NO_COLOR")
    }
    return subprocess.run(
        [sys.executable, "-m", "codexgate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**base, "HOME": str(cwd), **(env or {})},
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (no traceback, no second line)."""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A migrated database in an empty working folder."""
    assert cli("migrate", "--db", "usage.db", cwd=tmp_path).returncode == 0
    return tmp_path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str]]:
    """A running codexgate that generated its own admin token: (process, that token)."""
    folder = tmp_path_factory.mktemp("gateway")
    env = {k: "" for k in os.environ if k.startswith("CODEXGATE_")}
    process = GatewayProcess(["--db", str(folder / "live.db")], folder, env=env)
    try:
        asyncio.run(process.wait_ready())
        found = re.search(r"login\?token=(\S+)", process.log())
        assert found is not None, process.log()
        yield process, found.group(1)
    finally:
        process.kill()


# -- settings before or after the command ---------------------------------------------------------


def test_settings_go_before_or_after_the_command(workdir: Path) -> None:
    cli("accounts", "add", "--db", "usage.db", "--token", OPAQUE, "--name", "ci", cwd=workdir)
    after = cli("status", "--db", "usage.db", cwd=workdir)
    before = cli("--db", "usage.db", "status", cwd=workdir)
    assert (after.returncode, before.returncode) == (0, 0)
    assert "ci" in after.stdout
    assert before.stdout == after.stdout
    between = cli("accounts", "--db", "usage.db", "list", cwd=workdir)
    assert between.returncode == 0
    assert "ci" in between.stdout
    # After the command wins over before it.
    assert cli("--db", "other.db", "status", "--db", "usage.db", cwd=workdir).stdout == after.stdout


def test_a_setting_the_command_does_not_use_is_refused_either_side(workdir: Path) -> None:
    result = cli("--port", "9000", "status", "--db", "usage.db", cwd=workdir)
    assert result.returncode == 2
    assert one_line(result) == (
        "codexgate: invalid --port (CODEXGATE_PORT): `codexgate status` does not use it "
        "(see codexgate status --help)\n"
    )
    result = cli("status", "--port", "9000", cwd=workdir)
    assert result.returncode == 2
    assert "unrecognized arguments: --port 9000" in result.stderr


def test_each_help_lists_what_its_command_uses(tmp_path: Path) -> None:
    def flags(*args: str) -> set[str]:
        result = cli(*args, "--help", cwd=tmp_path)
        assert result.returncode == 0
        return set(re.findall(r"--[a-z][a-z-]+", result.stdout))

    serve = flags("serve")
    assert {"--port", "--upstream", "--db", "--admin-token", "--idle-timeout"} <= serve
    assert {"--port", "--upstream", "--idle-timeout"} <= flags()  # no command is serve
    status = flags("status")
    assert {"--config", "--db", "--url", "--token", "--admin-prefix", "--warn-percent"} <= status
    assert not {"--port", "--upstream", "--idle-timeout", "--host"} & status
    migrate = flags("migrate")
    assert {"--config", "--db", "--check"} <= migrate
    assert {"--db-pool-size", "--db-connect-timeout"} <= migrate & status & serve
    assert not {"--url", "--port", "--admin-prefix"} & migrate
    add = flags("accounts", "add")
    assert {"--db", "--url", "--admin-token", "--token", "--from-codex-auth", "--name"} <= add
    assert "--warn-percent" not in add
    codex = flags("codex-config")
    assert {"--host", "--port", "--write", "--transport"} <= codex
    assert not {"--db", "--upstream"} & codex
    assert {"--port", "--upstream", "--idle-timeout"} <= flags("check-config")


# -- accounts add --from-codex-auth ---------------------------------------------------------------


def _write_login(folder: Path, body: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "auth.json"
    path.write_bytes(orjson.dumps(body))
    return path


def _login(token: str, account_id: str | None) -> dict[str, object]:
    """The shape the Codex CLI writes after a ChatGPT sign-in (tokens shortened)."""
    return {
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": token,
            "access_token": token,
            "refresh_token": "rt-never-read-0123456789",
            "account_id": account_id,
        },
        "last_refresh": "2026-01-02T03:04:05Z",
    }


def test_from_codex_auth_reads_codex_home_then_home(workdir: Path) -> None:
    token = JWTS["seat_a"]
    workspace = claims_of("seat_a")["https://api.openai.com/auth"]["chatgpt_account_id"]
    _write_login(workdir / ".codex", _login(token, workspace))  # HOME is workdir
    result = cli("accounts", "add", "--db", "usage.db", "--from-codex-auth", cwd=workdir)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "added account 1 (alice@example.com)\n"
    # $CODEX_HOME wins over ~/.codex; the same seat is found again.
    _write_login(workdir / "elsewhere", _login(token, workspace))
    result = cli(
        "accounts", "add", "--db", "usage.db", "--from-codex-auth", "--name", "work",
        cwd=workdir, env={"CODEX_HOME": str(workdir / "elsewhere")},
    )  # fmt: skip
    assert result.stdout == "updated existing account 1 (work)\n"
    listed = orjson.loads(cli("accounts", "list", "--json", "--db", "usage.db", cwd=workdir).stdout)
    [account] = listed["accounts"]
    assert account["account_key"].startswith("seat:")
    assert token not in str(listed)


def test_from_codex_auth_takes_the_account_id_as_the_cli_sends_it(workdir: Path) -> None:
    # An opaque token: only the file's account_id says which workspace it bills.
    path = _write_login(workdir / "login", _login(OPAQUE, "acct-from-file"))
    result = cli("accounts", "add", "--db", "usage.db", "--from-codex-auth", str(path), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "added account 1 (Account 1)\n"
    with sqlite3.connect(workdir / "usage.db") as db:
        [(key, workspace)] = db.execute("SELECT account_key, chatgpt_account_id FROM accounts")
    assert key.startswith(TOKEN_KEY_PREFIX)
    assert workspace == "acct-from-file"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no Codex login at {path}: sign in with `codex login` first"),
        (b"{not json sk-secret-in-file", "{path} is not valid JSON, so not a Codex auth.json"),
        (b"[1, 2]", "{path} is not a Codex auth.json (no JSON object)"),
        (
            b'{"OPENAI_API_KEY": "sk-secret-in-file", "tokens": null}',
            "{path} holds an API-key login, not a ChatGPT one: usage windows need a ChatGPT login",
        ),
        (
            b'{"tokens": {"access_token": "", "refresh_token": "sk-secret-in-file"}}',
            "{path} has no ChatGPT access token (tokens.access_token)",
        ),
    ],
    ids=["missing", "not-json", "not-an-object", "api-key-only", "no-access-token"],
)
def test_from_codex_auth_errors_are_one_line_without_the_file(
    workdir: Path, content: bytes | None, message: str
) -> None:
    path = workdir / "login" / "auth.json"
    if content is not None:
        path.parent.mkdir()
        path.write_bytes(content)
    result = cli("accounts", "add", "--db", "usage.db", "--from-codex-auth", str(path), cwd=workdir)
    assert result.returncode == 1
    assert one_line(result).startswith("codexgate: " + message.format(path=path))
    assert "sk-secret" not in result.stderr + result.stdout
    assert cli("accounts", "list", "--db", "usage.db", cwd=workdir).stdout == "no accounts yet\n"


def test_from_codex_auth_and_token_are_one_or_the_other(workdir: Path) -> None:
    result = cli(
        "accounts", "add", "--db", "usage.db", "--token", OPAQUE, "--from-codex-auth", cwd=workdir
    )
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
    result = cli("accounts", "add", "--db", "usage.db", cwd=workdir)
    assert result.returncode == 2
    assert "one of the arguments --token --from-codex-auth is required" in result.stderr


# -- a running gateway: --url, and the admin token it generated ------------------------------


def test_from_codex_auth_through_a_running_gateway(
    gateway: tuple[GatewayProcess, str], tmp_path: Path
) -> None:
    process, admin = gateway
    _write_login(tmp_path / ".codex", _login(JWTS["personal"], "user-CCCC"))
    result = cli(
        "accounts", "add", "--from-codex-auth", "--name", "carol", "--url", process.base,
        cwd=tmp_path, env={"CODEXGATE_ADMIN_TOKEN": admin},
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert re.fullmatch(r"(added|updated existing) account \d+ \(carol\)\n", result.stdout)
    listed = cli(
        "accounts", "list", "--json", "--url", process.base, "--token", admin, cwd=tmp_path
    )
    accounts = orjson.loads(listed.stdout)["accounts"]
    assert [a["title"] for a in accounts if a["email"] == "carol@example.com"] == ["carol"]
    assert JWTS["personal"] not in process.log()


def test_check_config_says_a_generated_admin_token_is_in_use(
    gateway: tuple[GatewayProcess, str], tmp_path: Path
) -> None:
    process, _ = gateway
    db = str(process.log_path.parent / "live.db")
    result = cli("check-config", "--db", db, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("admin_token "))
    assert re.split(r"\s{2,}", row) == [
        "admin_token",
        "generated on the first start (the database keeps only its hash)",
        "database",
    ]
    result = cli("check-config", "--db", str(tmp_path / "new.db"), cwd=tmp_path)
    assert "none yet: the first start generates one and logs it once" in result.stdout
    assert not (tmp_path / "new.db").exists()
    result = cli(
        "check-config", "--db", db, cwd=tmp_path,
        env={"CODEXGATE_ADMIN_TOKEN": "set-by-env-Zq81xv3KpL0w"},
    )  # fmt: skip
    assert re.search(r"^admin_token\s+\*\*\*set\*\*\*\s+env$", result.stdout, re.MULTILINE)


def test_url_failures_are_one_clear_line(
    gateway: tuple[GatewayProcess, str], tmp_path: Path
) -> None:
    process, admin = gateway
    closed = f"http://127.0.0.1:{free_port()}"
    result = cli("status", "--url", closed, "--token", admin, cwd=tmp_path)
    assert result.returncode == 1
    assert one_line(result) == (
        f"codexgate: cannot reach codexgate at {closed}: connection refused "
        "(is it running, on this port?)\n"
    )
    result = cli("status", "--url", "http://no-such-host.invalid:8787", cwd=tmp_path)
    assert result.returncode == 1
    assert one_line(result) == (
        "codexgate: cannot reach codexgate at http://no-such-host.invalid:8787: "
        "cannot resolve the host name 'no-such-host.invalid'\n"
    )
    result = cli("status", "--url", process.base, "--token", "wrong-token-0123456789", cwd=tmp_path)
    assert result.returncode == 1
    assert one_line(result).startswith(f"codexgate: {process.base} refused the admin token (")
    assert "give it with --token or CODEXGATE_ADMIN_TOKEN" in result.stderr
    result = cli(
        "accounts", "add", "--token", OPAQUE, "--url", process.base, cwd=tmp_path,
        env={"CODEXGATE_ADMIN_TOKEN": "wrong-token-0123456789"},
    )  # fmt: skip
    assert "give it with --admin-token or CODEXGATE_ADMIN_TOKEN" in one_line(result)
    result = cli("status", "--url", process.base, "--admin-prefix", "other", cwd=tmp_path)
    assert result.returncode == 1
    assert "with this --admin-prefix?" in one_line(result)


def test_a_web_server_that_is_not_codexgate_is_named_as_such(tmp_path: Path) -> None:
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli("status", "--url", url, "--token", "x" * 20, cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert one_line(result) == (
        f"codexgate: {url} answered 200 without JSON at /codexgate/api/v1: is codexgate there, "
        "with this --admin-prefix?\n"
    )


# -- the database as a PostgreSQL URL: its password never shows ---------------------------------

DB_PASSWORD = "pg-sekrit-pw"


def _database_url(port: int) -> tuple[str, str]:
    """A URL with a password for a PostgreSQL server on port, and the same URL as shown."""
    url = f"postgresql://codexgate:{DB_PASSWORD}@127.0.0.1:{port}/codexgate?sslmode=disable"
    return url, url.replace(DB_PASSWORD, "***")


def test_check_config_shows_a_database_url_without_its_password(tmp_path: Path) -> None:
    url, masked = _database_url(5432)
    token = {"CODEXGATE_ADMIN_TOKEN": "set-by-env-Zq81xv3KpL0w"}  # so the database is not asked
    by_env = cli("check-config", cwd=tmp_path, env={"CODEXGATE_DB": url, **token})
    (tmp_path / "codexgate.toml").write_text(f'db = "{url}"\ndb_connect_timeout = 5\n')
    by_file = cli("check-config", "--db-pool-size", "3", cwd=tmp_path, env=token)
    for result, source in ((by_env, "env"), (by_file, "file")):
        assert result.returncode == 0, result.stderr
        assert DB_PASSWORD not in result.stdout + result.stderr
        assert re.search(rf"^db\s+{re.escape(masked)}\s+{source}$", result.stdout, re.MULTILINE)
    assert re.search(r"^db_pool_size\s+3\s+flag$", by_file.stdout, re.MULTILINE)
    assert re.search(r"^db_connect_timeout\s+5\s+file$", by_file.stdout, re.MULTILINE)
    assert re.search(r"^db_pool_size\s+10\s+default$", by_env.stdout, re.MULTILINE)


def test_a_bad_database_url_is_one_line_without_its_password(tmp_path: Path) -> None:
    bad = f"postgresql://codexgate:{DB_PASSWORD}@db.internal:99999/codexgate"
    for args in (("--db", bad, "status"), ("migrate", "--db", bad), ("--db", bad)):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert one_line(result) == (
            "codexgate: invalid --db (CODEXGATE_DB): a port must be a number from 1 to 65535 "
            "(a user name or password needs '@', '/', '?' and '#' percent-encoded "
            "(%40, %2F, %3F, %23))\n"
        )
    result = cli("check-config", cwd=tmp_path, env={"CODEXGATE_DB": "mysql://u:pw@h/db"})
    assert one_line(result) == (
        "codexgate: invalid --db (CODEXGATE_DB): mysql:// is not a database codexgate supports; "
        "use a file path or a postgresql:// URL\n"
    )


def test_a_database_server_that_refuses_never_shows_the_password(tmp_path: Path) -> None:
    url, masked = _database_url(free_port())
    quick = ("--db", url, "--db-connect-timeout", "1")
    for args in (("migrate", *quick), ("migrate", "--check", *quick), ("status", *quick)):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert DB_PASSWORD not in result.stdout + result.stderr
        one_line(result)
    result = cli("check-config", *quick, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert DB_PASSWORD not in result.stdout + result.stderr
    assert re.search(r"^admin_token\s+unknown: ", result.stdout, re.MULTILINE)
    served = cli(*quick, "--port", str(free_port()), cwd=tmp_path)
    assert served.returncode == 1
    assert DB_PASSWORD not in served.stdout + served.stderr
    assert f"cannot open the database {masked}: " in served.stderr
