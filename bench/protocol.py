"""What the bench sends and its fake upstream answers: Codex requests, SSE and WebSocket turns."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = REPO_ROOT / "tests" / "data"

RESPONSES_PATH: Final = "/backend-api/codex/responses"
USAGE_PATH: Final = "/backend-api/wham/usage"
BIG_PATH: Final = "/backend-api/bench/big"  # under /backend-api/: codexgate relays only Codex paths
PING_PATH: Final = "/backend-api/bench/ping"
PRIMARY_USED_HEADER: Final = "x-codex-primary-used-percent"
CHUNK_SIZE: Final = 64 * 1024
MEGABYTE: Final = 1_000_000  # MB and MB/s are decimal throughout the bench

AUTH_CLAIMS: Final = "https://api.openai.com/auth"
DELTA: Final = "response.output_text.delta"
CREATE: Final = "response.create"
COMPLETED: Final = "response.completed"
RATE_LIMITS: Final = "codex.rate_limits"
FILLER: Final = "streamed tokens of a Codex turn "
WS_BETA: Final = "responses_websockets=2026-02-06"
SESSION_ID: Final = "0199a1b2-c3d4-7e5f-8a9b-bench0000001"
USER_AGENT: Final = "codex_cli_rs/0.46.0 (Linux 6.1; x86_64) bench"


@dataclass(frozen=True, slots=True)
class TurnShape:
    """How the fake upstream streams one turn: event count, bytes per event, gap between events."""

    events: int
    size: int
    delay_ms: int
    hold_ms: int = 0  # silence after the first event (an idle stream), ended by a hang-up

    @property
    def duration(self) -> float:
        """Seconds from the first event to the last."""
        return (max(0, self.events - 1) * self.delay_ms + self.hold_ms) / 1000

    def path(self) -> str:
        """The request path (with the query the fake upstream reads) for a turn of this shape."""
        hold = f"&hold_ms={self.hold_ms}" if self.hold_ms else ""
        return (
            f"{RESPONSES_PATH}?events={self.events}&size={self.size}&delay_ms={self.delay_ms}"
            + hold
        )


SMALL_TURN: Final = TurnShape(events=20, size=200, delay_ms=0)
SLOW_TURN: Final = TurnShape(events=4, size=200, delay_ms=50)
# Headers and response.created, then silence for up to 10 minutes until the client hangs up.
IDLE_TURN: Final = TurnShape(events=2, size=200, delay_ms=0, hold_ms=600_000)


@dataclass(frozen=True, slots=True)
class WsTurnShape:
    """How the fake upstream answers a response.create: rate limits, text deltas, completed."""

    deltas: int
    size: int

    @property
    def frames(self) -> int:
        """Frames per turn: the codex.rate_limits frame, the deltas and response.completed."""
        return self.deltas + 2


WS_TURN: Final = WsTurnShape(deltas=20, size=200)


def load_json(name: str) -> Any:
    """A JSON sample from tests/data."""
    return orjson.loads((DATA / name).read_bytes())


def rate_limit_headers() -> dict[str, str]:
    """The response headers of a streamed 200 on a Plus seat, rate-limit headers included."""
    headers: dict[str, str] = load_json("headers-plus-200.json")["headers"]
    return headers


def handshake_headers() -> dict[str, str]:
    """The headers of a WebSocket handshake's 101: the same rate-limit headers, no body type."""
    return {
        name: value
        for name, value in rate_limit_headers().items()
        if name.lower() != "content-type"
    }


def usage_body() -> bytes:
    """The JSON a Plus seat's GET /backend-api/wham/usage answers, byte for byte."""
    return (DATA / "wham-usage-plus.json").read_bytes()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seat_claims(seat: str = "seat_a") -> dict[str, Any]:
    """The JWT claims of one seat from tests/data/jwt-claims.json."""
    claims: dict[str, Any] = load_json("jwt-claims.json")[seat]
    return claims


def bearer_token(claims: dict[str, Any]) -> str:
    """A ChatGPT-style access token for `claims`; the signature is filler, nobody checks it."""
    header = _b64url(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}))
    payload = _b64url(orjson.dumps(claims))
    signature = _b64url(b"bench-signature-not-checked-by-a-gateway" * 6)
    return f"{header}.{payload}.{signature}"


def _seat_headers(claims: dict[str, Any]) -> dict[str, str]:
    """The headers that name the seat: its bearer token and workspace."""
    return {
        "Authorization": f"Bearer {bearer_token(claims)}",
        "ChatGPT-Account-ID": str(claims[AUTH_CLAIMS]["chatgpt_account_id"]),
    }


def request_headers(claims: dict[str, Any]) -> dict[str, str]:
    """The headers the Codex CLI sends with a turn, for the seat of `claims`."""
    return {
        **_seat_headers(claims),
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "OpenAI-Beta": "responses=experimental",
        "originator": "codex_cli_rs",
        "session_id": SESSION_ID,
        "User-Agent": USER_AGENT,
    }


def websocket_headers(claims: dict[str, Any]) -> dict[str, str]:
    """The handshake headers of the Codex CLI's WebSocket transport, for the seat of `claims`."""
    return {
        **_seat_headers(claims),
        "OpenAI-Beta": WS_BETA,
        "originator": "codex_cli_rs",
        "session_id": SESSION_ID,
        "User-Agent": USER_AGENT,
    }


def usage_headers(claims: dict[str, Any]) -> dict[str, str]:
    """The headers of the Codex CLI's usage query (GET /backend-api/wham/usage)."""
    return {
        **_seat_headers(claims),
        "Accept": "application/json",
        "originator": "codex_cli_rs",
        "User-Agent": USER_AGENT,
    }


def _request_fields() -> dict[str, Any]:
    return {
        "model": "gpt-5-codex",
        "instructions": "You are Codex, a coding agent running in a terminal. " * 16,
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Summarise the failing test."}],
            }
        ],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": SESSION_ID,
    }


def request_body() -> bytes:
    """A small but realistic Responses API request body."""
    return orjson.dumps(_request_fields())


def create_frame() -> str:
    """The client's WebSocket text frame that starts a turn: response.create and the body."""
    return orjson.dumps({"type": CREATE, **_request_fields()}).decode()


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": kind, **payload})
    return b"event: " + kind.encode("ascii") + b"\ndata: " + data + b"\n\n"


def _filler(length: int) -> str:
    return (FILLER * (max(0, length) // len(FILLER) + 1))[: max(0, length)]


def _delta_fields(sequence: int) -> dict[str, Any]:
    return {
        "sequence_number": sequence,
        "item_id": "msg_bench0001",
        "output_index": 0,
        "content_index": 0,
    }


def _delta(sequence: int, size: int) -> bytes:
    fields = _delta_fields(sequence)
    bare = len(_event(DELTA, {**fields, "delta": ""}))
    return _event(DELTA, {**fields, "delta": _filler(size - bare)})


def _created() -> bytes:
    response = {
        "id": "resp_bench0001",
        "object": "response",
        "created_at": 1893400000,
        "status": "in_progress",
        "model": "gpt-5-codex",
        "output": [],
    }
    return _event("response.created", {"sequence_number": 0, "response": response})


def _completed_fields(sequence: int) -> dict[str, Any]:
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 128},
        "total_tokens": 1500,
    }
    response = {"id": "resp_bench0001", "status": "completed", "usage": usage}
    return {"sequence_number": sequence, "response": response}


def _completed(sequence: int) -> bytes:
    return _event(COMPLETED, _completed_fields(sequence))


def sse_turn(events: int, size: int) -> list[bytes]:
    """The events of one turn: response.created, text deltas of `size` bytes, completed."""
    if events <= 1:
        return [_completed(0)][:events]
    deltas = [_delta(sequence, size) for sequence in range(1, events - 1)]
    return [_created(), *deltas, _completed(events - 1)]


def _frame(kind: str, payload: dict[str, Any]) -> str:
    """A WebSocket text frame: the event's JSON with its type first, as the upstream sends it."""
    return orjson.dumps({"type": kind, **payload}).decode()


def _rate_limits_frame() -> str:
    """The codex.rate_limits frame of tests/data/ws-frames.jsonl."""
    for line in (DATA / "ws-frames.jsonl").read_bytes().splitlines():
        entry = orjson.loads(line)
        frame = entry.get("frame")
        if entry.get("dir") == "server" and frame.get("type") == RATE_LIMITS:
            payload = {key: value for key, value in frame.items() if key != "type"}
            return _frame(RATE_LIMITS, payload)
    raise ValueError("tests/data/ws-frames.jsonl has no codex.rate_limits frame")


def _ws_delta(sequence: int, size: int) -> str:
    fields = _delta_fields(sequence)
    bare = len(_frame(DELTA, {**fields, "delta": ""}))
    return _frame(DELTA, {**fields, "delta": _filler(size - bare)})


def ws_turn(shape: WsTurnShape) -> list[str]:
    """The server frames of one WebSocket turn: rate limits, text deltas, completed with usage."""
    deltas = [_ws_delta(sequence, shape.size) for sequence in range(1, shape.deltas + 1)]
    completed = _frame(COMPLETED, _completed_fields(shape.deltas + 1))
    return [_rate_limits_frame(), *deltas, completed]


def frame_type_prefix(kind: str) -> str:
    """How a frame of type `kind` starts, as ws_turn writes it."""
    return _frame(kind, {})[:-1]
