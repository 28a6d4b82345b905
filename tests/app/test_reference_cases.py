"""The Codex CLI's own rate-limit tests, run end to end through the gateway.

Every case of tests/data/reference/cases.json that a gateway can see (its `_about` says how a
case is laid out): the fake upstream answers with the case's input, a real request with
seat_a's token goes through the gateway, and the admin API's answer for the seat must hold every
field the case expects. The cases are the tests; the reference's own terms are in the file too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import pytest
from aiohttp import ClientSession, WSMsgType, web
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.helpers.admin_client import ADMIN, Admin
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, settled, turn
from tests.helpers.paths import DATA
from tests.helpers.tokens import bearer

# The API answers alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")

CASES: Final[list[dict[str, Any]]] = orjson.loads((DATA / "reference" / "cases.json").read_bytes())[
    "cases"
]
SEEN: Final = [case for case in CASES if case["gateway_sees"]]
RESPONSES_PATH: Final = "/backend-api/codex/responses"
SEAT: Final = "seat_a"
# An expect path that reads the limit's newest history row instead of its latest object.
HISTORY: Final = "history."
_MISSING: Final = object()


@dataclass
class ReferenceUpstream(FakeUpstream):
    """The fake backend, its WebSocket turns answered with a case's frames."""

    turn_frames: list[Any] = field(default_factory=list)

    async def _websocket_session(self, ws: web.WebSocketResponse) -> None:
        while True:
            message = await ws.receive()
            if message.type is WSMsgType.TEXT:
                if '"response.create"' in message.data:
                    for frame in self.turn_frames:
                        await ws.send_str(orjson.dumps(frame).decode())
            elif message.type is WSMsgType.CLOSE:
                await ws.close(code=message.data)
                return
            elif message.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return


@pytest.fixture
def fake() -> FakeUpstream:
    return ReferenceUpstream()


def sse_events(events: list[dict[str, Any]]) -> list[bytes]:
    """Events as the reference's sse() test helper writes them: the event line, then its data."""
    written = []
    for event in events:
        text = f"event: {event['type']}\n"
        if len(event) > 1:
            text += f"data: {orjson.dumps(event).decode()}\n"
        written.append(text.encode() + b"\n")
    return written


@contextlib.asynccontextmanager
async def raw_upstream(
    status: int, header_bytes: Mapping[str, str], body: bytes
) -> AsyncIterator[URL]:
    """An upstream that answers every request with these exact bytes: header_bytes' values are
    hex, so a value need not be UTF-8 (aiohttp's server writes only UTF-8 header values)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        lines = [f"HTTP/1.1 {status} Status".encode()]
        lines += [
            name.encode() + b": " + bytes.fromhex(hex_value)
            for name, hex_value in header_bytes.items()
        ]
        lines += [
            b"Content-Type: application/json",
            f"Content-Length: {len(body)}".encode(),
            b"Connection: close",
        ]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield URL(f"http://127.0.0.1:{port}")
    finally:
        server.close()
        await server.wait_closed()


async def through_responses(
    http: ClientSession, gateway: TestServer, fake: ReferenceUpstream, given: Mapping[str, Any]
) -> None:
    """One POST turn, the upstream answering with the case's status, headers and body or stream."""
    fake.status = given.get("status", 200)
    fake.response_headers = dict(given.get("headers") or {})
    if "body" in given:
        fake.error_body = orjson.dumps(given["body"])
    elif "sse" in given:
        fake.events = sse_events(given["sse"])
    assert await turn(http, gateway, bearer(SEAT)) == fake.status


async def through_usage(
    http: ClientSession, gateway: TestServer, fake: ReferenceUpstream, given: Mapping[str, Any]
) -> None:
    """One GET of the usage path, answered with the case's body."""
    fake.usage_body = orjson.dumps(given["body"])
    headers = {
        k: v for k, v in (given.get("request_headers") or {}).items() if k != "authorization"
    }
    async with http.get(
        f"http://127.0.0.1:{gateway.port}{given['path']}",
        headers={**headers, "Authorization": bearer(SEAT)},
    ) as response:
        assert response.status == given["status"]
        await response.read()


async def through_websocket(
    http: ClientSession, gateway: TestServer, fake: ReferenceUpstream, given: Mapping[str, Any]
) -> None:
    """One WebSocket turn: the handshake's headers, then the case's frames for response.create."""
    fake.response_headers = dict(given.get("handshake_headers") or {})
    fake.turn_frames = given["frames"]
    async with http.ws_connect(
        f"http://127.0.0.1:{gateway.port}{RESPONSES_PATH}",
        headers={
            "Authorization": bearer(SEAT),
            "OpenAI-Beta": "responses_websockets=2026-02-06",
        },
    ) as ws:
        await ws.send_str(
            orjson.dumps({"type": "response.create", "model": "gpt-5-codex"}).decode()
        )
        for _ in given["frames"]:
            assert (await ws.receive(timeout=5)).type is WSMsgType.TEXT


def at(document: Any, path: str) -> Any:
    """The value at a dotted path ("spend_control.limits.0.kind"), or _MISSING."""
    value = document
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def same(got: Any, want: Any) -> bool:
    """JSON equality where 42 and 42.0 are one number but true is not 1."""
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return got == want
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(same(got[key], want[key]) for key in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(same(a, b) for a, b in zip(got, want, strict=True))
        )
    return bool(got == want)


async def mismatches(admin: Admin, expect: Mapping[str, Any]) -> list[str]:
    """Every expect field the admin API's answer does not hold, one line each."""
    found: list[str] = []
    accounts = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    assert len(accounts) <= 1, "one seat sent every request"
    account_id = accounts[0]["id"] if accounts else None
    limits = {limit["limit_id"]: limit for limit in accounts[0]["limits"]} if accounts else {}
    if "limit_ids" in expect and list(limits) != expect["limit_ids"]:
        found.append(f"limit ids: got {list(limits)}, want {expect['limit_ids']}")
    for limit_id in expect.get("absent_limits", []):
        if limit_id in limits:
            found.append(f"{limit_id}: has a row, want none")
    for limit_id, fields in expect.get("limits", {}).items():
        limit = limits.get(limit_id)
        if limit is None:
            found.append(f"{limit_id}: no row (the seat has {sorted(limits)})")
            continue
        newest: Any = None
        if any(path.startswith(HISTORY) for path in fields):
            page = await admin.ok(
                "GET", f"api/v1/accounts/{account_id}/history?limit_id={limit_id}&limit=500"
            )
            newest = page["items"][-1]
        for path, want in fields.items():
            read_from, read_path = (
                (newest, path[len(HISTORY) :]) if path.startswith(HISTORY) else (limit, path)
            )
            got = at(read_from, read_path)
            if got is _MISSING:
                found.append(f"{limit_id}: {path}: not in the answer, want {want!r}")
            elif not same(got, want):
                found.append(f"{limit_id}: {path}: got {got!r}, want {want!r}")
    if "request" in expect:
        [request] = (await admin.ok("GET", "api/v1/requests"))["items"]
        for path, want in expect["request"].items():
            got = at(request, path)
            if got is _MISSING or not same(got, want):
                found.append(f"request: {path}: got {got!r}, want {want!r}")
    return found


@pytest.mark.parametrize("case", SEEN, ids=[case["name"] for case in SEEN])
async def test_reference_case(
    case: dict[str, Any], fake: FakeUpstream, start_gateway: StartGateway, http: ClientSession
) -> None:
    assert isinstance(fake, ReferenceUpstream)
    given = case["input"]
    async with contextlib.AsyncExitStack() as stack:
        if "header_bytes" in given:
            upstream = await stack.enter_async_context(
                raw_upstream(given["status"], given["header_bytes"], orjson.dumps(given["body"]))
            )
            gateway = await start_gateway(admin_token=ADMIN, upstream=upstream)
        else:
            gateway = await start_gateway(admin_token=ADMIN)
        exchange = case["exchange"]
        if exchange == "responses":
            await through_responses(http, gateway, fake, given)
        elif exchange == "usage":
            await through_usage(http, gateway, fake, given)
        else:
            assert exchange == "websocket"
            await through_websocket(http, gateway, fake, given)
        # The request's log row is queued after the usage it brought: once it is written, so
        # is the usage.
        await settled(gateway, 1)
        found = await mismatches(Admin(http, gateway), case["expect"])
    assert not found, "\n".join([case["name"], *found])


def test_every_case_says_what_it_is() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert case["source"]["repo"], case["name"]
        assert case["source"]["path"], case["name"]
        if case["gateway_sees"]:
            assert case["exchange"] in ("responses", "usage", "websocket"), case["name"]
            assert case["expect"], case["name"]
        else:
            assert case["why"], case["name"]
