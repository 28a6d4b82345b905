"""Bad input: oversized and malformed requests, targets naming other hosts, fuzzed usage reports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import http.client
import json
import math
import socket
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from codexgate.capture.bodies import error_code_of_body, parse_error_body, parse_usage_body
from codexgate.capture.headers import identity_from_token, parse_rate_limit_headers
from codexgate.capture.scan import SseScanner, scan_ws_frame
from tests.helpers.admin_client import ADMIN
from tests.helpers.fake_upstream import FakeUpstream, sample_headers, sse_events
from tests.helpers.paths import DATA
from tests.helpers.processes import GatewayProcess, StartGatewayProcess, health
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

TURN: Final = "/backend-api/codex/responses"
STREAM: Final = b"".join(sse_events("stream-basic.sse"))
NOW: Final = 1_800_000_000.0
# No example database: the tests leave no files behind; a failure prints its example.
INT64: Final = 2**63


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes on a new connection; the head of the answer (or what came before a close)."""
    loop = asyncio.get_running_loop()
    answer = b""
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        # It may answer and close before it has read everything; the answer still came.
        with contextlib.suppress(ConnectionError):
            await loop.sock_sendall(sock, request)
        # A plain socket hands out what arrived before a reset; a StreamReader would not.
        while b"\r\n\r\n" not in answer:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout=10)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer."""
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


async def assert_turn_works(gateway: GatewayProcess) -> None:
    """A normal streamed turn through the gateway arrives whole."""
    async with (
        ClientSession() as http,
        http.post(
            f"{gateway.base}{TURN}", data=b"{}", headers={"Authorization": bearer("seat_a")}
        ) as response,
    ):
        assert response.status == 200
        assert await response.read() == STREAM


@pytest.fixture
async def gateway(
    tmp_path: Path, start_gateway_process: StartGatewayProcess, upstream_server: TestServer
) -> GatewayProcess:
    """The real codexgate process in front of the in-process fake upstream."""
    return await start_gateway_process(
        "--upstream",
        f"http://127.0.0.1:{upstream_server.port}",
        "--db",
        str(tmp_path / "codexgate.db"),
        "--admin-token",
        ADMIN,
    )


# --- oversized and malformed requests ---------------------------------------------------------

MALFORMED: Final = {
    "a 64 KiB header": b"GET /backend-api/echo/x HTTP/1.1\r\nHost: a\r\nX-Big: "
    + b"a" * 65536
    + b"\r\n\r\n",
    "a 1 MiB header": b"GET /backend-api/echo/x HTTP/1.1\r\nHost: a\r\nX-Big: "
    + b"a" * 2**20
    + b"\r\n\r\n",
    "2,000 headers": b"GET /backend-api/echo/x HTTP/1.1\r\nHost: a\r\n"
    + b"".join(b"X-%d: 1\r\n" % n for n in range(2000))
    + b"\r\n",
    "a 100 KB target": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "a bad chunk size": b"POST /backend-api/echo/x HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST /backend-api/echo/x HTTP/1.1\r\nHost: a\r\n"
    b"Content-Length: 5\r\nContent-Length: 7\r\n\r\nabcde",
    "a header without a colon": b"GET /backend-api/echo/x HTTP/1.1\r\nHost: a\r\n"
    b"No colon here\r\n\r\n",
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64 + b"\r\n\r\n",
}


async def test_oversized_and_malformed_requests_get_400_and_the_gateway_stays_up(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    for name, request in MALFORMED.items():
        answer = await raw_exchange(gateway.port, request)
        assert status_of(answer) == 400, name
        await assert_turn_works(gateway)
    # None of them went upstream: only the turns did.
    assert [received.path_qs for received in fake.received] == [TURN] * len(MALFORMED)


async def chunks(size: int) -> AsyncIterator[bytes]:
    """`size` bytes of body, a MiB at a time."""
    for start in range(0, size, 2**20):
        yield b"x" * min(2**20, size - start)


async def test_oversized_bodies_get_413_and_the_gateway_stays_up(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    async with ClientSession() as http:
        # Proxied bodies stream up as they come: the upstream's own limit (64 MiB here) answers.
        async with http.post(f"{gateway.base}{TURN}", data=chunks(66 * 2**20)) as response:
            assert response.status == 413
            assert b"Maximum request body size" in await response.read()
        await assert_turn_works(gateway)
        # codexgate's own API reads at most 1 MiB.
        async with http.post(
            f"{gateway.base}/codexgate/api/v1/accounts",
            data=chunks(2 * 2**20),
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        ) as response:
            assert response.status == 413
            assert (await response.json())["error"]["type"] == "request_too_large"
        await assert_turn_works(gateway)
    assert (await health(gateway))["status"] == "ok"


# --- request targets naming another host ------------------------------------------------------


@pytest.fixture
async def evil() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A second listener on loopback ("host:port", what reached it): nothing ever may."""
    reached: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(await reader.read(1000) or b"(connected)")
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}", reached
    server.close()
    await server.wait_closed()


async def test_no_request_target_or_host_header_reaches_another_host(
    gateway: GatewayProcess,
    upstream_server: TestServer,
    fake: FakeUpstream,
    evil: tuple[str, list[bytes]],
) -> None:
    other, reached = evil
    # Request target, then the path the upstream must see (a status: refused, nothing forwarded).
    cases: list[tuple[str, str | int]] = [
        # A path, not a network-path reference.
        (f"/backend-api//{other}/steal", f"/backend-api//{other}/steal"),
        # Absolute form: only its path counts.
        (f"http://{other}/backend-api/steal?q=1", "/backend-api/steal?q=1"),
        (f"/backend-api/\\\\{other}/steal", f"/backend-api/\\\\{other}/steal"),
        # Not a Codex path as sent, or not once dot segments are resolved.
        (f"//{other}/steal", 404),
        (f"/backend-api/..//{other}/steal", 404),
        ("/backend-api/../../steal", 404),
        ("/backend-api/%2e%2e/%2e%2e/steal", 404),
        (f"@{other}/steal", 400),
        ("*", 400),
    ]
    host = f"127.0.0.1:{upstream_server.port}"
    for target, seen in cases:
        before = len(fake.received)
        answer = await raw_exchange(
            gateway.port,
            f"GET {target} HTTP/1.1\r\nHost: {other}\r\n\r\n".encode(),
        )
        forwarded = [(r.host, r.path_qs) for r in fake.received[before:]]
        if isinstance(seen, int):
            assert status_of(answer) == seen, target
            assert forwarded == [], target
        else:
            assert status_of(answer) == 200, target  # the fake upstream's echo
            assert forwarded == [(host, seen)], target
    # Authority form (a forward proxy's CONNECT) and a WebSocket upgrade to a foreign path.
    before = len(fake.received)
    answer = await raw_exchange(
        gateway.port, f"CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n".encode()
    )
    assert 400 <= status_of(answer) < 500
    assert fake.received[before:] == []
    answer = await raw_exchange(
        gateway.port,
        f"GET /backend-api//{other}/ws HTTP/1.1\r\nHost: {other}\r\nConnection: Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode(),
    )
    forwarded = [(r.host, r.path_qs) for r in fake.received[before:]]
    assert forwarded == [(host, f"/backend-api//{other}/ws")]
    # A Host header naming the other host changes nothing either.
    async with (
        ClientSession() as http,
        http.get(f"{gateway.base}/backend-api/codex/models", headers={"Host": other}) as response,
    ):
        assert response.status == 200
    assert fake.received[-1].host == host
    assert fake.received[-1].headers["Host"] == host
    assert reached == []
    await assert_turn_works(gateway)


# --- malformed usage reports, fuzzed ----------------------------------------------------------


def assert_storable(value: object, where: str = "report", *, numbers: bool = True) -> None:
    """Every value of a parsed report fits its SQLite column.

    Numbers finite, 64-bit and not negative; text valid Unicode (a lone surrogate fails the
    whole batch it is written in).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            assert_storable(getattr(value, item.name), f"{where}.{item.name}", numbers=numbers)
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            assert_storable(item, f"{where}[{index}]", numbers=numbers)
    elif isinstance(value, str):
        value.encode()
    elif not numbers:
        return
    elif isinstance(value, float):
        assert math.isfinite(value), where
        assert value >= 0, where
    elif isinstance(value, int) and not isinstance(value, bool):
        assert 0 <= value < INT64, where


FAMILY: Final = st.sampled_from(["codex", "codex-bengalfox", "codex_other"]) | st.text(
    "abcdefghijklmnopqrstuvwxyzABC0123456789-_", min_size=1, max_size=10
)
SLOT_FIELD: Final = st.sampled_from(
    ["used-percent", "window-minutes", "reset-at", "reset-after-seconds"]
)
HEADER_NAMES: Final = (
    st.builds(
        "x-{}-{}-{}".format, FAMILY, st.sampled_from(["primary", "secondary"]), SLOT_FIELD
    )
    | st.builds("x-{}-{}".format, FAMILY, st.sampled_from(["limit-name", "used-percent"]))
    | st.builds(
        "x-{}-primary-over-secondary-limit-percent".format, FAMILY
    )
    | st.sampled_from(
        [
            "x-codex-plan-type", "x-codex-active-limit", "x-codex-credits-has-credits",
            "x-codex-credits-unlimited", "x-codex-credits-balance", "x-codex-promo-message",
            "x-codex-rate-limit-reached-type", "X-Codex-Primary-Used-Percent",
        ]
    )
)  # fmt: skip
NUMBERISH: Final = st.sampled_from(
    [
        "", " ", "-1", "-0", "0", "46", "46.5", "1e3", "1e999", "-1e999", "NaN", "nan", "inf",
        "-inf", "Infinity", "0x1F", "1_000", "46%", " 46 ", "+46", "9" * 30, "1e309", "True",
        "false", "null", "\uff11\uff12", "\u0663", "4\u00a06", "46;q=1", "1893456000.5",
    ]
)  # fmt: skip
# What a header value may be on the wire: no control characters (aiohttp refuses them).
WIRE_TEXT: Final = st.text(
    st.characters(min_codepoint=0x20, exclude_characters="\x7f", exclude_categories=["Cs"]),
    max_size=24,
)
# What parse_rate_limit_headers may be given: aiohttp decodes bytes with surrogateescape.
ANY_TEXT: Final = st.text(st.characters(exclude_categories=[]), max_size=24)
WIRE_HEADERS: Final = st.dictionaries(HEADER_NAMES, NUMBERISH | WIRE_TEXT, max_size=12)
ANY_NOW: Final = st.just(NOW) | st.floats() | st.sampled_from([0.0, -1.0, 1e300, 2.0**63])


@given(
    headers=st.dictionaries(HEADER_NAMES | ANY_TEXT, NUMBERISH | ANY_TEXT, max_size=12),
    now=ANY_NOW,
)
@example(headers={"x-codex-primary-used-percent": "1", "x-codex-plan-type": "pl\udcffus"}, now=NOW)
def test_arbitrary_rate_limit_headers_never_raise(headers: dict[str, str], now: float) -> None:
    # An absurd clock may make reset times absurd, never text unstorable.
    sane_clock = math.isfinite(now) and 0 <= now < 2**62
    assert_storable(parse_rate_limit_headers(headers, now), numbers=sane_clock)


def _mutations(value: Any, junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`value` with any of its parts replaced by junk or left out (dicts) at any depth."""
    if isinstance(value, dict):
        return st.fixed_dictionaries(
            {}, optional={key: _mutations(item, junk) | junk for key, item in value.items()}
        )
    if isinstance(value, list):
        return st.tuples(*(_mutations(item, junk) | junk for item in value)).map(list)
    return st.just(value) | junk


JSON_LEAF: Final = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | NUMBERISH
    | st.text(max_size=6)
)
JSON_JUNK: Final = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)  # fmt: skip


@given(headers=_mutations(sample_headers("headers-plus-200.json"), NUMBERISH | ANY_TEXT))
def test_the_real_header_set_with_any_value_broken_never_raises(headers: dict[str, Any]) -> None:
    assert_storable(parse_rate_limit_headers(headers, NOW))


@given(
    authorization=ANY_TEXT | st.builds("Bearer {}".format, ANY_TEXT), account=st.none() | ANY_TEXT
)
@example(authorization=bearer("seat_a"), account="acct-\udcff")
def test_arbitrary_credentials_never_raise(authorization: str, account: str | None) -> None:
    identity = identity_from_token(authorization, account)
    assert identity is None or identity.account_key.startswith(("seat:", "token:"))
    assert_storable(identity)


def _sample_events() -> list[dict[str, Any]]:
    """Every JSON event of the SSE and WebSocket samples that scanning looks at."""
    events: list[dict[str, Any]] = []
    for name in ("stream-with-rate-limits.sse", "stream-basic.sse", "stream-failed.sse"):
        for event in sse_events(name):
            for line in event.splitlines():
                if line.startswith(b"data: {"):
                    events.append(orjson.loads(line[len(b"data: ") :]))
    for line in (DATA / "ws-frames.jsonl").read_bytes().splitlines():
        frame = orjson.loads(line).get("frame")
        if isinstance(frame, dict):
            events.append(frame)
    return events


SAMPLE_EVENTS: Final = _sample_events()


def _scan_sse(data: bytes, now: float) -> None:
    scanner = SseScanner()
    for cut in range(0, len(data), 7):
        scanner.feed(data[cut : cut + 7], now)
    scanner.close(now)


@given(
    event=st.sampled_from(SAMPLE_EVENTS).flatmap(lambda event: _mutations(event, JSON_JUNK)),
    now=ANY_NOW,
)
def test_sample_events_with_any_part_broken_never_raise(event: dict[str, Any], now: float) -> None:
    text = json.dumps(event)
    found = scan_ws_frame(text, now)
    _scan_sse(b"data: " + text.encode() + b"\n\n", now)
    if found is not None and math.isfinite(now) and 0 <= now < 2**62:
        assert_storable(found)


@given(value=JSON_JUNK, now=ANY_NOW)
def test_arbitrary_json_frames_never_raise(value: object, now: float) -> None:
    text = json.dumps(value)
    scan_ws_frame(text, now)
    _scan_sse(b"data: " + text.encode() + b"\n\n", now)


def _sample_bodies() -> list[Any]:
    bodies: list[Any] = [
        orjson.loads((DATA / f"wham-usage-{name}.json").read_bytes())
        for name in ("plus", "free-monthly", "business")
    ]
    for name in ("headers-free-429.json", "headers-plus-429-premium.json"):
        bodies.append(orjson.loads((DATA / name).read_bytes())["body"])
    return bodies


@given(
    body=st.sampled_from(_sample_bodies()).flatmap(lambda body: _mutations(body, JSON_JUNK)),
    now=ANY_NOW,
)
def test_sample_bodies_with_any_part_broken_never_raise(body: Any, now: float) -> None:
    raw = json.dumps(body).encode()
    report = parse_usage_body(raw, now)
    hit = parse_error_body(raw, now)
    error_code_of_body(raw)
    if math.isfinite(now) and 0 <= now < 2**62:
        assert_storable(report)
        assert_storable(hit)


# --- end to end: malformed headers through the real gateway -----------------------------------


def _turn_over(connection: http.client.HTTPConnection) -> tuple[int, bytes]:
    connection.request("POST", TURN, body=b"{}", headers={"Authorization": bearer("seat_a")})
    response = connection.getresponse()
    return response.status, response.read()


def _stored_junk(db: Path) -> list[tuple[str, Any]]:
    """(column, value) of every number in usage_snapshots that no report should have stored.

    Negative, infinite or beyond 64 bits; a huge but finite used percent is a number as sent.
    """
    columns = [
        f"{slot}_{field}"
        for slot in ("five_hour", "seven_day", "monthly", "primary", "secondary")
        for field in ("used_percent", "window_minutes", "resets_at")
    ]
    junk: list[tuple[str, Any]] = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        for column in columns:
            limit = 1e308 if column.endswith("percent") else 9.2e18
            rows = connection.execute(
                f"SELECT {column} FROM usage_snapshots WHERE {column} < 0 OR abs({column}) > ?",
                (limit,),
            ).fetchall()
            junk.extend((column, value) for (value,) in rows)
    connection.close()
    return junk


async def test_malformed_rate_limit_headers_through_the_real_gateway(
    tmp_path: Path, gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    base = sample_headers("headers-plus-200.json")
    sent: list[Mapping[str, str]] = []

    def fuzz() -> None:  # in a thread: the fake upstream answers on this test's event loop
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)

        @settings(max_examples=120)  # each example is a real request through the gateway
        @given(
            headers=WIRE_HEADERS | _mutations(base, NUMBERISH | WIRE_TEXT),
        )
        def turn(headers: dict[str, str]) -> None:
            fake.response_headers = {"content-type": "text/event-stream", **headers}
            sent.append(headers)
            status, body = _turn_over(connection)
            assert status == 200, headers
            assert body == STREAM, headers

        try:
            turn()
        finally:
            connection.close()

    await asyncio.to_thread(fuzz)
    state = await eventually(
        functools.partial(health, gateway),
        accept=lambda h: h["requests"]["logged"] + h["requests"]["dropped"] >= len(sent),
        timeout=10,
        interval=0.2,
    )
    assert state["status"] == "ok"
    assert state["snapshots"]["dropped"] == 0  # a parser that raised would count one here
    assert state["snapshots"]["recorded"] > 0  # and the well-formed parts were recorded
    assert state["requests"]["logged"] + state["requests"]["dropped"] >= len(sent)
    log = gateway.log()
    assert "Traceback" not in log
    assert "could not capture" not in log
    assert await asyncio.to_thread(_stored_junk, tmp_path / "codexgate.db") == []


# Bytes that are not UTF-8 in header values, which aiohttp's own server cannot send.
_NOT_UTF8_ANSWER: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"x-codex-plan-type: pl\xffus\r\nopenai-model: gpt-\xe9\r\nx-oai-request-id: req-\xfe\r\n"
    b"x-codex-primary-used-percent: 5\r\nx-codex-primary-window-minutes: 300\r\n"
    b"Content-Length: %d\r\n\r\n" % len(STREAM)
) + STREAM


@pytest.fixture
async def not_utf8_upstream() -> AsyncIterator[int]:
    """An upstream that answers every request with header bytes that are not UTF-8; its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(_NOT_UTF8_ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _stored_text(db: Path) -> tuple[list[Any], list[Any], list[Any]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        seats = connection.execute("SELECT chatgpt_account_id FROM accounts ORDER BY id").fetchall()
        plans = connection.execute("SELECT DISTINCT plan_type FROM usage_snapshots").fetchall()
        requests = connection.execute(
            "SELECT DISTINCT model, upstream_request_id FROM requests"
        ).fetchall()
    connection.close()
    return seats, plans, requests


async def test_header_bytes_that_are_not_utf8_cost_no_snapshot(
    tmp_path: Path, start_gateway_process: StartGatewayProcess, not_utf8_upstream: int
) -> None:
    db = tmp_path / "codexgate.db"
    gateway = await start_gateway_process(
        "--upstream", f"http://127.0.0.1:{not_utf8_upstream}", "--db", str(db)
    )
    # A client's ChatGPT-Account-ID that is not UTF-8 either: aiohttp's client could not forward
    # its bytes, so it is refused (nothing recorded); then another seat's plain turn.
    answer = await raw_exchange(
        gateway.port,
        f"POST {TURN} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer('seat_a')}\r\n".encode()
        + b"ChatGPT-Account-ID: acct-\xff\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert status_of(answer) == 400
    async with (
        ClientSession() as http,
        http.post(
            f"{gateway.base}{TURN}", data=b"{}", headers={"Authorization": bearer("seat_b")}
        ) as response,
    ):
        assert response.status == 200
        assert await response.read() == STREAM
    state = await eventually(
        functools.partial(health, gateway),
        accept=lambda h: h["requests"]["logged"] + h["requests"]["dropped"] >= 1,
        timeout=10,
        interval=0.2,
    )
    assert state["db"]["state"] == "ok", state
    assert state["snapshots"] == {
        "recorded": 1,
        "dropped": 0,
        "coalesced": 0,
        "unattributed": 0,
    }
    assert state["requests"] == {"logged": 1, "dropped": 0}
    seats, plans, requests = await asyncio.to_thread(_stored_text, db)
    assert seats == [("acct-team-1",)]
    assert plans == [("pl\ufffdus",)]
    assert requests == [("gpt-5-codex", "req-\ufffd")]  # the stream's model wins
