"""The real Codex CLI (`codex exec`, pinned in tests/client) through codexgate to a fake backend.

Each test gives the client its own `CODEX_HOME` with a ChatGPT login (`auth.json`) and one of the
configurations the README documents (`config.toml`), starts codexgate as a real process in front
of the fake backend, and checks on the backend's side that every call came through codexgate:
codexgate appends `X-Forwarded-For`, the client never sends it. Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from tests.e2e.fake_backend import ACCOUNT_ID, ANSWER, MODEL, FakeBackend
from tests.helpers.processes import GatewayProcess
from tests.helpers.tokens import claims_of, make_jwt

CLIENT_DIR: Final = Path(__file__).resolve().parents[1] / "client"
CODEX: Final = CLIENT_DIR / "node_modules" / ".bin" / "codex"
RUN_TIMEOUT: Final = 60.0
RESPONSES: Final = "/backend-api/codex/responses"
# The calls `codex exec` cannot do without (seen in every run of 0.171.0).
START_UP: Final = {
    "GET /backend-api/wham/accounts/check",
    "GET /backend-api/codex/models",
    "GET /backend-api/wham/settings/user",
}

StartGateway = Callable[..., Awaitable[GatewayProcess]]


@pytest.fixture(scope="session")
def codex() -> Path:
    """The pinned real Codex CLI; missing means `make test` did not install it: fail, not skip."""
    install = "run `make test` (it runs `npm ci --prefix tests/client`; needs Node.js 20+ and npm)"
    if not CODEX.exists():
        pytest.fail(f"the real Codex CLI is not installed at {CODEX}; {install}", pytrace=False)
    pinned = orjson.loads((CLIENT_DIR / "package.json").read_bytes())["dependencies"]
    installed = orjson.loads(
        (CLIENT_DIR / "node_modules" / "@openai" / "codex" / "package.json").read_bytes()
    )["version"]
    if installed != pinned["@openai/codex"]:
        pytest.fail(
            f"tests/client has @openai/codex {installed}, package.json pins "
            f"{pinned['@openai/codex']}; {install}",
            pytrace=False,
        )
    return CODEX


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def backend_server(aiohttp_server: AiohttpServer, backend: FakeBackend) -> TestServer:
    # The built-in provider sends zstd request bodies; the fake must not try to decode them.
    return await aiohttp_server(backend.app(), auto_decompress=False)


@pytest.fixture
async def start_codexgate(
    tmp_path: Path, backend_server: TestServer
) -> AsyncIterator[StartGateway]:
    """Start `python -m codexgate` in front of the fake backend, with extra flags."""
    started: list[GatewayProcess] = []

    async def start(*flags: str) -> GatewayProcess:
        workdir = tmp_path / "codexgate"
        workdir.mkdir()
        upstream = f"http://127.0.0.1:{backend_server.port}"
        gateway = GatewayProcess(
            ["--upstream", upstream, "--db", str(workdir / "codexgate.db"), *flags], workdir
        )
        started.append(gateway)
        await gateway.wait_ready()
        return gateway

    yield start
    for gateway in started:
        gateway.kill()


# The client's side: CODEX_HOME, config.toml, auth.json and one `codex exec` run.

COMMON_CONFIG: Final = f"""\
cli_auth_credentials_store = "file"
model = "{MODEL}"
"""


def recommended_config(gateway: str) -> str:
    """The README's recommended configuration: a custom provider, both URLs on codexgate."""
    return (
        COMMON_CONFIG
        + f"""\
model_provider = "codexgate"
chatgpt_base_url = "{gateway}/backend-api/"

[model_providers.codexgate]
name = "codexgate"
base_url = "{gateway}/backend-api/codex"
wire_api = "responses"
requires_openai_auth = true
supports_websockets = false
"""
    )


def builtin_config(openai_origin: str, chatgpt_origin: str) -> str:
    """The built-in provider with its two base URLs moved (to one origin or to two)."""
    return (
        COMMON_CONFIG
        + f"""\
openai_base_url = "{openai_origin}/backend-api/codex"
chatgpt_base_url = "{chatgpt_origin}/backend-api/"
"""
    )


def auth_json() -> dict[str, Any]:
    """A ChatGPT login as codex-rs stores it (`AuthDotJson`/`TokenData` in codex-rs/login).

    Fresh `last_refresh` and a far `exp` in the access token: the client never refreshes, so it
    never calls auth.openai.com.
    """
    claims = claims_of("seat_a")
    return {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": make_jwt(claims),
            "access_token": make_jwt(claims),
            "refresh_token": "rt-codexgate-e2e",
            "account_id": ACCOUNT_ID,
        },
        "last_refresh": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
    }


@dataclass(frozen=True)
class CodexRun:
    returncode: int | None  # None: stopped by the test
    stdout: str
    stderr: str
    elapsed: float

    def events(self) -> list[dict[str, Any]]:
        """The JSONL events of `codex exec --json`."""
        events: list[dict[str, Any]] = []
        for line in self.stdout.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def agent_messages(self) -> list[str]:
        return [
            str(event["item"].get("text"))
            for event in self.events()
            if event.get("type") == "item.completed"
            and event.get("item", {}).get("type") == "agent_message"
        ]

    def __str__(self) -> str:
        return (
            f"exit {self.returncode} after {self.elapsed:.2f}s\n"
            f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"
        )


def client_env(home: Path) -> dict[str, str]:
    """The caller's environment without proxies, Codex/OpenAI settings or RUST_LOG."""
    dropped = ("RUST_LOG", "NO_PROXY", "ALL_PROXY")
    env = {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in dropped
        and not name.upper().endswith("_PROXY")
        and not name.upper().startswith(("CODEX_", "OPENAI_"))
    }
    env.update(HOME=str(home), CODEX_HOME=str(home / ".codex"), NO_COLOR="1")
    return env


async def run_codex(
    codex: Path,
    tmp_path: Path,
    config: str,
    *,
    stop_when: asyncio.Event | None = None,
    within: float = RUN_TIMEOUT,
) -> CodexRun:
    """`codex exec --json "say ok"` with its own HOME and CODEX_HOME; never outlives `within`.

    With `stop_when`, the client is killed as soon as the event is set.
    """
    home = tmp_path / "home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(config)
    (codex_home / "auth.json").write_bytes(orjson.dumps(auth_json()))
    workdir = tmp_path / "work"
    workdir.mkdir()
    started = time.monotonic()
    # `codex` is a node launcher that runs the native binary as a child: its own session lets the
    # test kill both. stdin must not be a terminal or pipe, or `codex exec` waits to read it.
    process = await asyncio.create_subprocess_exec(
        str(codex),
        "exec",
        "--skip-git-repo-check",
        "--json",
        "say ok",
        cwd=workdir,
        env=client_env(home),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    communicate = asyncio.ensure_future(process.communicate())
    waiters: set[asyncio.Future[Any]] = {communicate}
    if stop_when is not None:
        waiters.add(asyncio.ensure_future(stop_when.wait()))
    stopped = False
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        stopped = not communicate.done()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for waiter in waiters - {communicate}:
            waiter.cancel()
    stdout, stderr = await asyncio.wait_for(communicate, 10)
    run = CodexRun(
        None if stopped else process.returncode,
        stdout.decode(errors="replace"),
        stderr.decode(errors="replace"),
        time.monotonic() - started,
    )
    if stopped and stop_when is None:
        pytest.fail(f"codex exec did not finish within {within}s:\n{run}")
    return run


def latest_usage(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """codexgate's `latest_usage` view (call after the gateway has stopped and flushed)."""
    db = gateway.log_path.parent / "codexgate.db"
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute("SELECT * FROM latest_usage")]
    finally:
        connection.close()


def report(run: CodexRun, backend: FakeBackend, gateway: GatewayProcess) -> str:
    return (
        f"{run}\n--- the fake backend received\n{backend.describe()}\n"
        f"--- codexgate log\n{gateway.log()[-3000:]}"
    )


def assert_seat_usage_recorded(rows: list[dict[str, Any]]) -> None:
    """seat_a's 5h and 7d windows, from the turn's headers (46 %) or its event (47 %)."""
    codex_rows = [row for row in rows if row["limit_id"] == "codex"]
    assert len(codex_rows) == 1, rows
    row = codex_rows[0]
    assert row["account_key"] == "seat:acct-team-1:user-AAAA"
    assert row["email"] == "alice@example.com"
    assert row["source"] in ("headers", "event")
    assert row["five_hour_used_percent"] in (46.0, 47.0)
    assert row["five_hour_window_minutes"] == 300
    assert row["five_hour_resets_at"] == 1893456000
    assert row["seven_day_used_percent"] == 15.0
    assert row["seven_day_window_minutes"] == 10080
    assert row["seven_day_resets_at"] == 1893955000


# The tests.


async def test_recommended_configuration_sends_every_call_through_codexgate(
    codex: Path, tmp_path: Path, backend: FakeBackend, start_codexgate: StartGateway
) -> None:
    gateway = await start_codexgate()
    run = await run_codex(codex, tmp_path, recommended_config(gateway.base))
    assert await gateway.terminate() == 0
    context = report(run, backend, gateway)

    assert run.returncode == 0, context
    assert ANSWER in run.agent_messages(), context
    assert backend.direct() == [], context  # every single call came through codexgate
    paths = set(backend.paths())
    assert paths >= START_UP, context
    assert f"POST {RESPONSES}" in paths, context
    assert not any(seen.path == RESPONSES and seen.method == "GET" for seen in backend.seen)
    assert_seat_usage_recorded(latest_usage(gateway))


async def test_builtin_provider_on_two_origins_relays_the_websocket_turn(
    codex: Path, tmp_path: Path, backend: FakeBackend, start_codexgate: StartGateway
) -> None:
    gateway = await start_codexgate()
    config = builtin_config(gateway.base, f"http://localhost:{gateway.port}")
    run = await run_codex(codex, tmp_path, config)
    assert await gateway.terminate() == 0
    context = report(run, backend, gateway)

    assert run.returncode == 0, context
    assert ANSWER in run.agent_messages(), context
    assert backend.direct() == [], context
    assert set(backend.paths()) >= START_UP, context
    # The turn went over a WebSocket that codexgate relayed, not over the HTTP fallback.
    handshakes = [seen for seen in backend.seen if seen.websocket]
    assert handshakes, context
    assert all(seen.path == RESPONSES for seen in handshakes)
    assert "responses_websockets" in handshakes[0].headers.get("OpenAI-Beta", ""), context
    turns = [
        frame
        for frame in backend.client_frames("response.create")
        if frame.get("generate") is not False
    ]
    assert len(turns) == 1, backend.frames
    assert turns[0]["model"] == MODEL
    assert f"POST {RESPONSES}" not in backend.paths(), context
    # codexgate read the windows off the relayed handshake or the codex.rate_limits frame.
    assert_seat_usage_recorded(latest_usage(gateway))


async def test_refused_websocket_falls_back_to_http_at_once(
    codex: Path, tmp_path: Path, backend: FakeBackend, start_codexgate: StartGateway
) -> None:
    gateway = await start_codexgate("--websocket", "refuse")
    config = builtin_config(gateway.base, f"http://localhost:{gateway.port}")
    run = await run_codex(codex, tmp_path, config)
    assert await gateway.terminate() == 0
    context = report(run, backend, gateway)

    assert run.returncode == 0, context
    assert ANSWER in run.agent_messages(), context
    assert backend.direct() == [], context
    assert set(backend.paths()) >= START_UP, context
    # codexgate answered the upgrade with 426 itself: the backend saw no handshake, only the POST.
    assert not any(seen.path == RESPONSES and seen.method == "GET" for seen in backend.seen)
    posts = [seen for seen in backend.seen if seen.path == RESPONSES and seen.method == "POST"]
    assert len(posts) == 1, context
    # Any other answer than 426 costs about 7 s of WebSocket retries before the fallback.
    waited = posts[0].at - backend.seen[0].at
    assert waited < 5.0, f"the turn came {waited:.1f}s after the first call\n{context}"
    assert_seat_usage_recorded(latest_usage(gateway))


async def test_builtin_provider_on_one_origin_bypasses_codexgate(
    codex: Path, tmp_path: Path, backend: FakeBackend, start_codexgate: StartGateway
) -> None:
    """The README's warning, observed: workspace routing sends the turn to another origin.

    The fake's `accounts/check` names a loopback "workspace backend" (the real one names
    https://chatgpt.com); a bare TCP listener there records the client's connection attempts.
    """
    connected = asyncio.Event()

    async def trap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        writer.close()

    workspace = await asyncio.start_server(trap, "127.0.0.1", 0)
    try:
        trap_port = workspace.sockets[0].getsockname()[1]
        backend.workspace_backend_origin = f"https://127.0.0.1:{trap_port}"
        gateway = await start_codexgate()
        config = builtin_config(gateway.base, gateway.base)
        # The client retries the workspace backend for ever ("waiting for network"): stop it as
        # soon as it has tried.
        run = await run_codex(codex, tmp_path, config, stop_when=connected, within=30)
    finally:
        workspace.close()
        await workspace.wait_closed()
    assert await gateway.terminate() == 0
    context = report(run, backend, gateway)

    assert connected.is_set(), f"the client never went to the workspace backend\n{context}"
    assert run.returncode != 0, context
    assert ANSWER not in run.agent_messages(), context
    # codexgate saw the start-up calls (all of them relayed) ...
    assert backend.direct() == [], context
    assert "GET /backend-api/wham/accounts/check" in backend.paths(), context
    # ... and not the turn, so it recorded no usage at all.
    assert not any(seen.path == RESPONSES for seen in backend.seen), context
    assert latest_usage(gateway) == []
