"""What the bench sends and its fake upstream answers: Codex-shaped requests and SSE turns."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = REPO_ROOT / "tests" / "data"

RESPONSES_PATH: Final = "/backend-api/codex/responses"
BIG_PATH: Final = "/bench/big"
PING_PATH: Final = "/bench/ping"
CHUNK_SIZE: Final = 64 * 1024
MEGABYTE: Final = 1_000_000  # MB and MB/s are decimal throughout the bench

AUTH_CLAIMS: Final = "https://api.openai.com/auth"
DELTA: Final = "response.output_text.delta"
FILLER: Final = "streamed tokens of a Codex turn "


@dataclass(frozen=True, slots=True)
class TurnShape:
    """How the fake upstream streams one turn: event count, bytes per event, gap between events."""

    events: int
    size: int
    delay_ms: int

    @property
    def duration(self) -> float:
        """Seconds from the first event to the last."""
        return max(0, self.events - 1) * self.delay_ms / 1000

    def path(self) -> str:
        """The request path (with the query the fake upstream reads) for a turn of this shape."""
        return f"{RESPONSES_PATH}?events={self.events}&size={self.size}&delay_ms={self.delay_ms}"


SMALL_TURN: Final = TurnShape(events=20, size=200, delay_ms=0)
SLOW_TURN: Final = TurnShape(events=4, size=200, delay_ms=50)


def load_json(name: str) -> Any:
    """A JSON sample from tests/data."""
    return orjson.loads((DATA / name).read_bytes())


def rate_limit_headers() -> dict[str, str]:
    """The response headers of a streamed 200 on a Plus seat, rate-limit headers included."""
    headers: dict[str, str] = load_json("headers-plus-200.json")["headers"]
    return headers


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


def request_headers(claims: dict[str, Any]) -> dict[str, str]:
    """The headers the Codex CLI sends with a turn, for the seat of `claims`."""
    return {
        "Authorization": f"Bearer {bearer_token(claims)}",
        "ChatGPT-Account-ID": str(claims[AUTH_CLAIMS]["chatgpt_account_id"]),
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "OpenAI-Beta": "responses=experimental",
        "originator": "codex_cli_rs",
        "session_id": "0199a1b2-c3d4-7e5f-8a9b-bench0000001",
        "User-Agent": "codex_cli_rs/0.46.0 (Linux 6.1; x86_64) bench",
    }


def request_body() -> bytes:
    """A small but realistic Responses API request body."""
    body = {
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
        "prompt_cache_key": "0199a1b2-c3d4-7e5f-8a9b-bench0000001",
    }
    return orjson.dumps(body)


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": kind, **payload})
    return b"event: " + kind.encode("ascii") + b"\ndata: " + data + b"\n\n"


def _delta(sequence: int, size: int) -> bytes:
    fields: dict[str, Any] = {
        "sequence_number": sequence,
        "item_id": "msg_bench0001",
        "output_index": 0,
        "content_index": 0,
    }
    bare = len(_event(DELTA, {**fields, "delta": ""}))
    padding = max(0, size - bare)
    text = (FILLER * (padding // len(FILLER) + 1))[:padding]
    return _event(DELTA, {**fields, "delta": text})


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


def _completed(sequence: int) -> bytes:
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 128},
        "total_tokens": 1500,
    }
    response = {"id": "resp_bench0001", "status": "completed", "usage": usage}
    return _event("response.completed", {"sequence_number": sequence, "response": response})


def sse_turn(events: int, size: int) -> list[bytes]:
    """The events of one turn: response.created, text deltas of `size` bytes, completed."""
    if events <= 1:
        return [_completed(0)][:events]
    deltas = [_delta(sequence, size) for sequence in range(1, events - 1)]
    return [_created(), *deltas, _completed(events - 1)]
