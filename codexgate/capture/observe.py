"""What codexgate learns from each relayed exchange: usage snapshots and request-log rows.

The proxy calls these hooks and stays ignorant of what they mean; nothing here awaits.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Concatenate, Final, ParamSpec, Protocol, TypeVar

from aiohttp import hdrs, web
from multidict import CIMultiDictProxy

from codexgate.capture.bodies import (
    decode_body,
    error_code_of_body,
    parse_error_body,
    parse_usage_body,
    plan_type_of_error_body,
)
from codexgate.capture.headers import IdentityCache, RateLimitHeaderParser, header_text
from codexgate.capture.scan import (
    ErrorFrame,
    RateLimitsEvent,
    SseScanner,
    StreamEvent,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    parse_client_ws_frame,
    scan_ws_frame,
)
from codexgate.core.models import (
    Identity,
    RequestRecord,
    Snapshot,
    Source,
    TokenUsage,
    Transport,
    UsageReport,
)
from codexgate.services.recorder import Recorder

ACCOUNT_ID_HEADER: Final = "ChatGPT-Account-ID"
# Paths whose JSON answers are usage reports (the second when chatgpt_base_url lacks /backend-api).
USAGE_PATHS: Final = frozenset({"/backend-api/wham/usage", "/api/codex/usage"})
# A JSON body bigger than this is not a usage report or an error; it passes unread.
MAX_COLLECTED_BODY: Final = 1 << 20
UPSTREAM_REQUEST_ID_HEADERS: Final = ("x-oai-request-id", "x-request-id")
# Answers that say the credential is no good: nothing of such an exchange reaches an account.
REFUSED_STATUSES: Final = frozenset({401, 403})


class TokenKeeper(Protocol):
    """Who keeps the credentials the upstream accepted (the idle refresh); O(1), never raises."""

    def offer(self, identity: Identity, authorization: str, account_id_header: str | None) -> None:
        """Take the credential of an exchange the upstream accepted."""
        ...

    def refused(self, identity: Identity) -> None:
        """Hear that the upstream refused this credential."""
        ...


class _Watcher(Protocol):
    _sink: _Sink


_W = TypeVar("_W", bound=_Watcher)
_P = ParamSpec("_P")


def _guarded(hook: Callable[Concatenate[_W, _P], None]) -> Callable[Concatenate[_W, _P], None]:
    """Make a hook that the proxy calls unable to raise: a bug costs a snapshot, not traffic."""

    @functools.wraps(hook)
    def guarded(self: _W, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - counted and logged by the recorder
            self._sink.recorder.capture_failed(hook.__qualname__, exc)

    return guarded


def _elapsed_ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000.0, 3)


class _Sink:
    """Attributes what an exchange learns to its seat and hands it to the recorder.

    A token's claims are unverified: only an exchange whose answer proves the credential (a 2xx,
    a handshake's 101, or any rate-limit data) may create or update its account; a 401 or 403
    detaches the exchange from the seat altogether. The 2xx counts because the proxy relays only
    the backend's paths (proxy_paths), where the upstream authenticates every call.
    """

    def __init__(
        self,
        recorder: Recorder,
        identity: Identity | None,
        request: web.BaseRequest,
        keeper: TokenKeeper | None,
    ) -> None:
        self.recorder = recorder
        self.identity = identity
        self.proven = False
        self._request = request
        self._keeper = keeper

    def answered(self, status: int, *, accepted: bool) -> None:
        """Weigh the upstream's status: a refusal forgets the seat, an acceptance proves it."""
        keeper = self._keeper
        if status in REFUSED_STATUSES:
            if keeper is not None and self.identity is not None:
                keeper.refused(self.identity)
            self.identity = None
        elif accepted:
            self.proven = True
            if keeper is not None and self.identity is not None:
                # The accepted credential, as sent: the idle refresh may ask with it later.
                headers = self._request.headers
                authorization = headers.get(hdrs.AUTHORIZATION)
                if authorization is not None:
                    keeper.offer(self.identity, authorization, headers.get(ACCOUNT_ID_HEADER))

    def snapshot(self, report: UsageReport | None, source: Source, status: int | None) -> None:
        if report is None:
            return
        if self.identity is None:
            self.recorder.count_unattributed()
            return
        self.proven = True  # only the upstream reports usage, and only to a valid credential
        self.recorder.offer(
            Snapshot(
                identity=self.identity,
                captured_at=time.time(),
                source=source,
                report=report,
                http_status=status,
            )
        )


def _identity(request: web.BaseRequest, identities: IdentityCache) -> Identity | None:
    return identities.resolve(
        request.headers.get(hdrs.AUTHORIZATION), request.headers.get(ACCOUNT_ID_HEADER)
    )


def _upstream_request_id(headers: CIMultiDictProxy[str]) -> str | None:
    for name in UPSTREAM_REQUEST_ID_HEADERS:
        value = header_text(headers.get(name))
        if value:
            return value
    return None


class HttpExchange:
    """One relayed HTTP request: its headers, stream events or JSON body, and its log row."""

    def __init__(
        self,
        request: web.Request,
        recorder: Recorder,
        identities: IdentityCache,
        rate_limit_headers: RateLimitHeaderParser,
        keeper: TokenKeeper | None = None,
    ) -> None:
        self._request = request
        self._sink = _Sink(recorder, _identity(request, identities), request, keeper)
        self._rate_limit_headers = rate_limit_headers
        self._started_at = time.time()
        self._started = time.monotonic()
        self._status: int | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self._ttfb_ms: float | None = None
        self._bytes_out = 0
        self._scanner: SseScanner | None = None
        self._body: list[bytes] | None = None
        self._body_size = 0
        self._pending_headers: UsageReport | None = None  # a 429's, merged with its body
        self._model: str | None = None
        self._response_id: str | None = None
        self._tokens: TokenUsage | None = None
        self._error_code: str | None = None

    @_guarded
    def response_prepared(self, response: web.StreamResponse) -> None:
        """Capture the rate-limit headers and decide how to watch the body."""
        self._status = response.status
        self._sink.answered(response.status, accepted=200 <= response.status < 300)
        headers = CIMultiDictProxy(response.headers)
        self._headers = headers
        self._model = header_text(headers.get("openai-model"))
        report = self._rate_limit_headers.parse(headers, time.time())
        if response.status == 429:
            self._pending_headers = report  # the body says whether it is a quota error
        else:
            self._sink.snapshot(report, "headers", response.status)
        encoded = headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity"
        content_type = headers.get(hdrs.CONTENT_TYPE, "").lower()
        if content_type.startswith("text/event-stream") and not encoded:
            self._scanner = SseScanner()
        elif "json" in content_type and (
            response.status >= 400 or self._request.path in USAGE_PATHS
        ):
            self._body = []

    @_guarded
    def body_chunk(self, chunk: bytes) -> None:
        """Watch one chunk on its way to the client."""
        if self._ttfb_ms is None:
            self._ttfb_ms = _elapsed_ms(self._started)
        self._bytes_out += len(chunk)
        if self._scanner is not None:
            for event in self._scanner.feed(chunk, time.time()):
                self._on_event(event)
        elif self._body is not None:
            self._body_size += len(chunk)
            if self._body_size > MAX_COLLECTED_BODY:
                self._body = None
            else:
                self._body.append(chunk)

    @_guarded
    def finish(self, *, status: int | None = None, error_code: str | None = None) -> None:
        """Account for the exchange once it is over, however it ended."""
        if status is not None:
            self._status = status
        if self._scanner is not None:
            for event in self._scanner.close(time.time()):
                self._on_event(event)
        self._read_body()
        if self._pending_headers is not None:
            self._sink.snapshot(self._pending_headers, "headers", self._status)
        self._error_code = error_code or self._error_code
        if self._ttfb_ms is None and self._status is not None:
            self._ttfb_ms = _elapsed_ms(self._started)
        self._sink.recorder.offer(self._record())

    def _read_body(self) -> None:
        if not self._body or self._headers is None:
            return
        body = decode_body(
            b"".join(self._body), self._headers.get(hdrs.CONTENT_ENCODING), MAX_COLLECTED_BODY
        )
        if body is None:
            return
        now = time.time()
        status = self._status or 0
        if status >= 400:
            self._error_code = error_code_of_body(body)
            hit = parse_error_body(body, now)
            if hit is not None:
                base = self._pending_headers or UsageReport(limits=())
                self._pending_headers = None
                plan_type = base.plan_type or plan_type_of_error_body(body)
                report = dataclasses.replace(base, limit_hit=hit, plan_type=plan_type)
                self._sink.snapshot(report, "error", status)
        elif status == 200:
            self._sink.snapshot(parse_usage_body(body, now), "usage_body", status)

    def _on_event(self, event: StreamEvent) -> None:
        match event:
            case RateLimitsEvent(report=report):
                self._sink.snapshot(report, "event", self._status)
            case TurnStarted(response_id=response_id, model=model):
                self._response_id = response_id or self._response_id
                self._model = model or self._model
            case TurnCompleted(response_id=response_id, model=model, tokens=tokens):
                self._response_id = response_id or self._response_id
                self._model = model or self._model
                self._tokens = tokens
            case TurnFailed(error_code=code):
                self._error_code = code or "response_failed"
            case ErrorFrame(status=status, error_code=code, report=report):
                self._error_code = code or "error"
                self._sink.snapshot(report, "error", status)

    def _record(self) -> RequestRecord:
        transport: Transport = "sse" if self._scanner is not None else "http"
        return RequestRecord(
            started_at=self._started_at,
            identity=self._sink.identity,
            method=self._request.method,
            path=self._request.path,
            transport=transport,
            status=self._status,
            model=self._model,
            upstream_request_id=(
                _upstream_request_id(self._headers) if self._headers is not None else None
            ),
            response_id=self._response_id,
            ttfb_ms=self._ttfb_ms,
            duration_ms=_elapsed_ms(self._started),
            bytes_in=self._request.content.total_bytes,
            bytes_out=self._bytes_out,
            tokens=self._tokens,
            error_code=self._error_code,
            proven=self._sink.proven,
        )


@dataclasses.dataclass(slots=True)
class _Turn:
    """One response.create and what came back for it."""

    started_at: float
    started: float
    model: str | None
    bytes_in: int
    ttfb_ms: float | None = None
    bytes_out: int = 0
    response_id: str | None = None
    tokens: TokenUsage | None = None


class WebSocketExchange:
    """One relayed WebSocket: the handshake's headers, then a log row per turn."""

    def __init__(
        self,
        request: web.Request,
        recorder: Recorder,
        identities: IdentityCache,
        rate_limit_headers: RateLimitHeaderParser,
        keeper: TokenKeeper | None = None,
    ) -> None:
        self._request = request
        self._sink = _Sink(recorder, _identity(request, identities), request, keeper)
        self._rate_limit_headers = rate_limit_headers
        self._upstream_request_id: str | None = None
        self._turn: _Turn | None = None

    @_guarded
    def response_prepared(self, response: web.StreamResponse) -> None:
        """Capture the handshake's rate-limit headers (a failed handshake's too)."""
        self._sink.answered(response.status, accepted=response.status == 101)
        headers = CIMultiDictProxy(response.headers)
        self._upstream_request_id = _upstream_request_id(headers)
        report = self._rate_limit_headers.parse(headers, time.time())
        self._sink.snapshot(report, "headers", response.status)
        if response.status != 101:
            self._sink.recorder.offer(self._failed_handshake(response.status))

    @_guarded
    def client_text(self, text: str) -> None:
        """Watch a client frame: a response.create starts a turn."""
        model = parse_client_ws_frame(text)
        if model is None:
            if self._turn is not None:
                self._turn.bytes_in += len(text)
            return
        self._end_turn(None, "superseded")  # a new turn before the last one ended
        self._turn = _Turn(time.time(), time.monotonic(), model or None, len(text))

    @_guarded
    def server_text(self, text: str) -> None:
        """Watch a server frame: usage, the end of a turn, or a wrapped error."""
        turn = self._turn
        if turn is not None:
            if turn.ttfb_ms is None:
                turn.ttfb_ms = _elapsed_ms(turn.started)
            turn.bytes_out += len(text)
        event = scan_ws_frame(text, time.time())
        match event:
            case RateLimitsEvent(report=report):
                self._sink.snapshot(report, "event", 101)
            case TurnStarted(response_id=response_id, model=model) if turn is not None:
                turn.response_id = response_id or turn.response_id
                turn.model = model or turn.model
            case TurnCompleted(response_id=response_id, model=model, tokens=tokens) if (
                turn is not None
            ):
                turn.response_id = response_id or turn.response_id
                turn.model = model or turn.model
                turn.tokens = tokens
                self._end_turn(200, None)
            case TurnFailed(error_code=code):
                self._end_turn(200, code or "response_failed")
            case ErrorFrame(status=status, error_code=code, report=report):
                self._sink.snapshot(report, "error", status)
                self._end_turn(status, code or "error")

    @_guarded
    def binary(self, size: int, *, from_client: bool) -> None:
        """Count a binary frame into the open turn."""
        if self._turn is not None:
            if from_client:
                self._turn.bytes_in += size
            else:
                self._turn.bytes_out += size

    @_guarded
    def closed(self) -> None:
        """The socket is gone: a turn still open never completed."""
        self._end_turn(None, "closed_before_completion")

    def _end_turn(self, status: int | None, error_code: str | None) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        self._sink.recorder.offer(
            RequestRecord(
                started_at=turn.started_at,
                identity=self._sink.identity,
                method=self._request.method,
                path=self._request.path,
                transport="websocket",
                status=status,
                model=turn.model,
                upstream_request_id=self._upstream_request_id,
                response_id=turn.response_id,
                ttfb_ms=turn.ttfb_ms,
                duration_ms=_elapsed_ms(turn.started),
                bytes_in=turn.bytes_in,
                bytes_out=turn.bytes_out,
                tokens=turn.tokens,
                error_code=error_code,
                proven=self._sink.proven,
            )
        )

    def _failed_handshake(self, status: int) -> RequestRecord:
        return RequestRecord(
            started_at=time.time(),
            identity=self._sink.identity,
            method=self._request.method,
            path=self._request.path,
            transport="websocket",
            status=status,
            upstream_request_id=self._upstream_request_id,
            error_code="handshake_refused",
            proven=self._sink.proven,
        )


Exchange = HttpExchange | WebSocketExchange
