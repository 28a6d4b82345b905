"""A fake ChatGPT backend that answers every call the real Codex CLI makes for `codex exec`.

The calls and their shapes were taken from runs of codex-cli 0.171.0 against a logging catch-all
server and from the openai/codex source (`codex-rs/`):

- `GET /backend-api/wham/accounts/check`: `AccountsResponse` in `codex-rs/backend-client`
  (`accounts: [{id, plan_type, workspace_backend_origin, account_routing_override, ...}]`);
  `workspace_backend_origin` decides "workspace routing" (`resolve_routing` in the app-server's
  workspace routing module): an `https://` origin the client may send turns to.
- `GET /backend-api/codex/models?client_version=...`: `ModelsResponse {models: [ModelInfo]}` in
  `codex-rs/protocol/src/openai_models.rs`, in the shape of the catalog bundled in the binary.
- `GET /backend-api/wham/settings/user`: `{"commit_attribution_enabled": bool}`.
- `POST /backend-api/codex/responses`: the turn, answered as SSE with rate-limit headers.
- `GET /backend-api/codex/responses` with `Upgrade: websocket`: the same turn over WebSocket.
- `GET /backend-api/wham/usage`: the `/status` numbers.

Everything else (plugins, `ps/mcp`, analytics) is recorded and answered 404, which the client
tolerates. Every request is recorded with its headers, so a test can tell whether it came through
codexgate (which appends `X-Forwarded-For`) or straight from the client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.helpers.fake_upstream import load_sample, sample_headers, sse_events

ACCOUNT_ID: Final = "acct-team-1"  # chatgpt_account_id of the seat_a sample claims
MODEL: Final = "gpt-5-codex"  # matches the `openai-model` header of the header sample
ANSWER: Final = "ok"  # the assistant text of stream-with-rate-limits.sse
MODELS_ETAG: Final = 'W/"3f2a"'  # the `x-models-etag` of headers-plus-200.json

# The real backend answers with chatgpt.com; a harmless loopback origin instead means a client
# that wrongly applied workspace routing fails at once on this machine rather than leaving it.
DEFAULT_WORKSPACE_ORIGIN: Final = "https://127.0.0.1:1"


def model_info(slug: str = MODEL) -> dict[str, Any]:
    """One entry of the `/models` catalog, in the shape of the catalog bundled with 0.171.0."""
    return {
        "slug": slug,
        "display_name": slug,
        "description": "Fake model served by the codexgate end-to-end tests.",
        "prefer_websockets": True,
        "support_verbosity": False,
        "default_verbosity": None,
        "apply_patch_tool_type": "freeform",
        "input_modalities": ["text"],
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": False,
        "context_window": 200000,
        "auto_compact_token_limit": None,
        "default_reasoning_summary": "none",
        "default_reasoning_level": "low",
        "supported_reasoning_levels": [{"effort": "low", "description": "Fast"}],
        "shell_type": "shell_command",
        "visibility": "list",
        "minimal_client_version": "0.100.0",
        "supported_in_api": True,
        "upgrade": None,
        "priority": 1,
        "base_instructions": "You are a test model.",
        "model_messages": None,
        "experimental_supported_tools": [],
        "supports_reasoning_summaries": False,
        "supports_reasoning_summary_parameter": False,
    }


def turn_events(*, generate: bool = True) -> list[bytes]:
    """The SSE events of one turn: codex.rate_limits, response.created, "ok", completed.

    A prewarm request (`"generate": false`, sent first on a new WebSocket) gets no output item.
    """
    events = sse_events("stream-with-rate-limits.sse")
    if generate:
        return events
    return [event for event in events if b"response.output_item" not in event]


def sse_data(event: bytes) -> bytes:
    """The JSON payload of one SSE event (its `data:` line)."""
    for line in event.splitlines():
        if line.startswith(b"data:"):
            return line[len(b"data:") :].strip()
    raise ValueError(f"no data line in {event!r}")


@dataclass(frozen=True)
class Seen:
    """One request as the fake backend saw it."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    websocket: bool  # a WebSocket handshake that was accepted
    at: float  # time.monotonic() on arrival

    @property
    def path(self) -> str:
        return self.path_qs.partition("?")[0]

    @property
    def forwarded(self) -> bool:
        """Whether codexgate relayed it (codexgate appends X-Forwarded-For; the CLI never does)."""
        return "X-Forwarded-For" in self.headers

    def __str__(self) -> str:
        kind = " (websocket)" if self.websocket else ""
        via = "via codexgate" if self.forwarded else "DIRECT"
        return f"{self.method} {self.path_qs}{kind} [{via}]"


@dataclass(frozen=True)
class Frame:
    """One WebSocket text frame; `sender` is "client" or "server"."""

    sender: str
    message: dict[str, Any]


@dataclass
class FakeBackend:
    """Behaviour of the fake backend and everything it received."""

    account_id: str = ACCOUNT_ID
    workspace_backend_origin: str = DEFAULT_WORKSPACE_ORIGIN
    response_headers: dict[str, str] = field(
        default_factory=lambda: sample_headers("headers-plus-200.json")
    )
    seen: list[Seen] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        router = app.router
        router.add_get("/backend-api/wham/accounts/check", self._accounts_check)
        router.add_get("/backend-api/wham/settings/user", self._settings_user)
        router.add_get("/backend-api/wham/usage", self._usage)
        router.add_get("/backend-api/codex/models", self._models)
        router.add_post("/backend-api/codex/responses", self._responses_sse)
        router.add_get("/backend-api/codex/responses", self._responses_websocket)
        router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    # What the tests ask about.

    def paths(self) -> list[str]:
        return [f"{seen.method} {seen.path}" for seen in self.seen]

    def direct(self) -> list[Seen]:
        """Requests that did not come through codexgate."""
        return [seen for seen in self.seen if not seen.forwarded]

    def turns(self) -> list[Seen]:
        """Turn requests: POSTs to responses and accepted WebSocket handshakes."""
        return [
            seen
            for seen in self.seen
            if seen.path == "/backend-api/codex/responses"
            and (seen.method == "POST" or seen.websocket)
        ]

    def client_frames(self, kind: str) -> list[dict[str, Any]]:
        return [
            frame.message
            for frame in self.frames
            if frame.sender == "client" and frame.message.get("type") == kind
        ]

    def describe(self) -> str:
        return "\n".join(str(seen) for seen in self.seen) or "(no requests)"

    # Handlers.

    async def _record(self, request: web.Request, *, websocket: bool = False) -> Seen:
        await request.read()
        seen = Seen(request.method, request.raw_path, request.headers, websocket, time.monotonic())
        self.seen.append(seen)
        return seen

    def _json(self, body: object, status: int = 200, **headers: str) -> web.Response:
        return web.Response(
            body=orjson.dumps(body),
            status=status,
            headers={"Content-Type": "application/json", **headers},
        )

    async def _accounts_check(self, request: web.Request) -> web.Response:
        await self._record(request)
        account = {
            "id": self.account_id,
            "name": "Test workspace",
            "plan_type": "team",
            "structure": "workspace",
            "workspace_backend_origin": self.workspace_backend_origin,
            "account_routing_override": "NO_CONSTRAINT",
            "profile_picture_url": None,
        }
        return self._json(
            {
                "accounts": [account],
                "account_ordering": [self.account_id],
                "default_account_id": self.account_id,
            }
        )

    async def _settings_user(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._json({"commit_attribution_enabled": False})

    async def _usage(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._json(load_sample("wham-usage-plus.json"))

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._json({"models": [model_info()]}, ETag=MODELS_ETAG)

    async def _responses_sse(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        headers = CIMultiDict(self.response_headers)
        headers["Content-Type"] = "text/event-stream"
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        for event in turn_events():
            await response.write(event)
        await response.write_eof()
        return response

    async def _responses_websocket(self, request: web.Request) -> web.StreamResponse:
        websocket = web.WebSocketResponse()
        if not websocket.can_prepare(request).ok:
            # What a gateway that does not relay upgrades makes of the handshake: a plain GET.
            await self._record(request)
            return self._json({"detail": "Method Not Allowed"}, status=405)
        await self._record(request, websocket=True)
        # The rate-limit headers ride on the handshake answer too.
        websocket.headers.update(
            (name, value) for name, value in self.response_headers.items() if name.startswith("x-")
        )
        await websocket.prepare(request)
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            frame: dict[str, Any] = orjson.loads(message.data)
            self.frames.append(Frame("client", frame))
            if frame.get("type") != "response.create":
                continue
            for event in turn_events(generate=frame.get("generate") is not False):
                data = sse_data(event)
                self.frames.append(Frame("server", orjson.loads(data)))
                await websocket.send_str(data.decode())
        return websocket

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._json({"detail": "Not Found"}, status=404)
