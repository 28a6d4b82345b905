"""Recognise the few events that matter inside SSE streams and WebSocket frames, cheaply."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson

from codexgate.capture.bodies import (
    credits_from_json,
    json_int,
    json_text,
    limit_from_json,
    limit_hit_from_error,
    reached_type_from_json,
)
from codexgate.capture.headers import parse_rate_limit_headers
from codexgate.core.limits import limit_id_of
from codexgate.core.models import LimitReport, TokenUsage, UsageReport

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "ErrorFrame",
    "RateLimitsEvent",
    "SseScanner",
    "StreamEvent",
    "TurnCompleted",
    "TurnFailed",
    "TurnStarted",
    "parse_client_ws_frame",
    "scan_ws_frame",
]


@dataclass(frozen=True, slots=True)
class RateLimitsEvent:
    """A codex.rate_limits event: the windows as the stream reports them."""

    report: UsageReport


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """A response.created event."""

    response_id: str | None
    model: str | None


@dataclass(frozen=True, slots=True)
class TurnCompleted:
    """A response.completed event with the turn's token counts."""

    response_id: str | None
    model: str | None
    tokens: TokenUsage


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """A response.failed event."""

    response_id: str | None
    error_code: str | None


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """An error event or wrapped WebSocket error frame, with the usage it reports if any."""

    status: int | None
    error_code: str | None
    report: UsageReport | None


StreamEvent: TypeAlias = RateLimitsEvent | TurnStarted | TurnCompleted | TurnFailed | ErrorFrame

# An event (or an incomplete one) larger than this is dropped, not buffered.
DEFAULT_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024

# The pre-filter: the "type" member of one of the five events that matter. Nothing else is
# decoded, and a region of the stream without a match is not even split into events. Inside
# a JSON string a quote is escaped, so text that merely mentions these names cannot match.
_TYPES: Final = (
    r'"type":[ \t]*"(?:response\.(?:c(?:reated|ompleted)|failed)|codex\.rate_limits|error)"'
)
_MARKER: Final = re.compile(_TYPES.encode())
_MARKER_TEXT: Final = re.compile(_TYPES)

# A blank line ends an event: two line ends in a row. "\r\n" is one line end, so two line
# ends in a row always show one of these pairs (a "\r\n" contributes only its "\n" on the
# left side, its "\r" on the right side): the pairs are where events end.
_PAIRS: Final = (b"\n\n", b"\r\r", b"\n\r")
# An incomplete tail may carry this many framing bytes (a line end on each side) that the
# event itself will not count: the bound is checked with this slack, so that dropping an
# incomplete event never drops one that one-chunk feeding would keep.
_SLACK: Final = 4
_BOM: Final = b"\xef\xbb\xbf"
_CLIENT_CREATE: Final = "response.create"


class SseScanner:
    """Incremental scanner of one SSE body: feed it chunks, get back the events that matter."""

    __slots__ = (
        "_edge",
        "_limit",
        "_parts",
        "_pending",
        "_skipping",
        "decode_errors",
        "dropped_events",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        """Drop any event larger than `max_event_bytes` instead of buffering it."""
        self._limit = max_event_bytes
        self._parts: list[bytes] = []  # the incomplete tail, in the chunks it came in
        self._pending = 0  # total length of _parts
        self._skipping = False  # inside an oversized event: discard up to its end
        self._edge = b""  # while skipping, the last byte seen (a blank line may span chunks)
        self.decode_errors = 0  # events that passed the pre-filter but were not valid JSON
        self.dropped_events = 0  # oversized events dropped

    @property
    def pending_bytes(self) -> int:
        """Bytes held back for an event that has not ended yet."""
        return self._pending

    def feed(self, chunk: bytes, now: float) -> list[StreamEvent]:
        """Scan the next chunk; return the events it completed, in stream order."""
        if self._skipping:
            chunk = self._skip(chunk)
        size = len(chunk)
        if not size:
            return []
        parts = self._parts
        # Where the last complete event ends. The usual chunk is whole events ending in a
        # blank line ("\n\n", or "\n\r\n" for CRLF): then the whole chunk is complete.
        if (
            chunk[-1] == 10
            and size > 1
            and (chunk[-2] == 10 or (chunk[-2] == 13 and size > 2 and chunk[-3] == 10))
        ):
            cut = size
        else:
            cut = max(chunk.rfind(b"\n\n"), chunk.rfind(b"\r\r"), chunk.rfind(b"\n\r")) + 2
            if cut < 2:
                # The blank line may span the chunk boundary; the pairs are two bytes long.
                if not parts or parts[-1][-1:] + chunk[:1] not in _PAIRS:
                    parts.append(chunk)  # no copy: joined once the event completes
                    self._pending += size
                    self._bound()
                    return []
                cut = 1
        if parts:
            parts.append(chunk)
            buf = b"".join(parts)
            cut += self._pending
            parts.clear()
            self._pending = 0
        else:
            buf = chunk
        if cut < len(buf):
            tail = buf[cut:]
            parts.append(tail)
            self._pending = len(tail)
            self._bound()
        if _MARKER.search(buf, 0, cut) is None:
            return []
        return self._scan(buf, cut, now)

    def close(self, now: float) -> list[StreamEvent]:
        """End of stream: scan a last event that had no blank line after it, then reset."""
        parts = self._parts
        buf = b"".join(parts)
        parts.clear()
        self._pending = 0
        self._skipping = False
        self._edge = b""
        if _MARKER.search(buf) is None:
            return []
        return self._scan(buf, len(buf), now)

    def _bound(self) -> None:
        """Drop the incomplete tail once it outgrows the limit, and skip to its end."""
        if self._pending <= self._limit + _SLACK:
            return
        self._edge = self._parts[-1][-1:]
        self._parts.clear()
        self._pending = 0
        self._skipping = True
        self.dropped_events += 1

    def _skip(self, chunk: bytes) -> bytes:
        """Discard the rest of an oversized event; return what follows its blank line."""
        if not chunk:
            return chunk
        if self._edge + chunk[:1] in _PAIRS:
            start = 1
        else:
            found = [at for at in map(chunk.find, _PAIRS) if at >= 0]
            if not found:
                self._edge = chunk[-1:]
                return b""
            start = min(found) + 2
        self._skipping = False
        self._edge = b""
        return chunk[start:]

    def _scan(self, buf: bytes, end: int, now: float) -> list[StreamEvent]:
        """Decode the matching events of buf[:end], a region of complete events only."""
        events: list[StreamEvent] = []
        done = 0  # the events before this offset are handled
        # Streams end their lines with "\n" alone (the usual) or with a "\r" somewhere: without
        # one, "\n\n" is the only pair, and one search each way finds an event's edges.
        lf_only = buf.find(b"\r", 0, end) < 0
        for match in _MARKER.finditer(buf, 0, end):
            at = match.start()
            if at < done:
                continue  # a second match inside an event already decoded
            # The event around the match: from the last blank line before it to the next one.
            # Only this event is cut out; its neighbours (the deltas) are never split out.
            if lf_only:
                last = buf.rfind(b"\n\n", done, at)
                stop = buf.find(b"\n\n", at, end)
            else:
                last = max(buf.rfind(b"\n\n", done, at), buf.rfind(b"\r\r", done, at))
                last = max(last, buf.rfind(b"\n\r", done, at))
                stops = [buf.find(pair, at, end) for pair in _PAIRS]
                stop = min((found for found in stops if found >= 0), default=-1)
            start = last + 2 if last >= 0 else done
            done = stop if stop >= 0 else end
            # Line ends at either edge of the event do not count, so any chunking agrees.
            if done - start > self._limit and len(buf[start:done].strip(b"\r\n")) > self._limit:
                self.dropped_events += 1
                continue
            data = _event_data(buf[start:done])
            if data is None:
                continue
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                self.decode_errors += 1
                continue
            event = _event_of(value, now)
            if event is not None:
                events.append(event)
        return events


def _event_data(piece: bytes) -> bytes | None:
    """The data of one SSE event: its data lines joined with "\\n"; None if it has none."""
    found: list[bytes] = []
    for line in piece.splitlines():
        if line[:3] == _BOM:
            line = line[3:]  # a stream may start with a byte order mark
        if line[:4] != b"data":
            continue  # event:, id:, retry:, comments and other fields
        if len(line) == 4:
            found.append(b"")  # "data" alone is an empty data line
        elif line[4] == 58:  # ":"
            found.append(line[6:] if line[5:6] == b" " else line[5:])
    if not found:
        return None
    return found[0] if len(found) == 1 else b"\n".join(found)


def scan_ws_frame(text: str, now: float) -> StreamEvent | None:
    """Recognise one server WebSocket text frame (one JSON object), or None."""
    if _MARKER_TEXT.search(text) is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return _event_of(value, now)


def parse_client_ws_frame(text: str) -> str | None:
    """The model of a client response.create frame ("" without one); None for other frames."""
    if _CLIENT_CREATE not in text:
        return None  # most frames are skipped without decoding; they can be large
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("type") != _CLIENT_CREATE:
        return None
    model = value.get("model")
    return model if isinstance(model, str) else ""


# ---------------------------------------------------------------------------------------------
# Decoded events
# ---------------------------------------------------------------------------------------------


def _object(value: object) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def _event_of(value: object, now: float) -> StreamEvent | None:
    """The event a decoded JSON value stands for, or None."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "response.completed":
        response = _object(value.get("response"))
        return TurnCompleted(
            json_text(response.get("id")),
            json_text(response.get("model")),
            _tokens(response.get("usage")),
        )
    if kind == "response.created":
        response = _object(value.get("response"))
        return TurnStarted(json_text(response.get("id")), json_text(response.get("model")))
    if kind == "codex.rate_limits":
        return RateLimitsEvent(_rate_limits_report(value, now))
    if kind == "response.failed":
        response = _object(value.get("response"))
        return TurnFailed(json_text(response.get("id")), _error_code(response.get("error")))
    if kind == "error":
        return _error_frame(value, now)
    return None


def _tokens(value: object) -> TokenUsage:
    """response.usage as token counts; each one is None unless it is an int >= 0."""
    usage = _object(value)
    return TokenUsage(
        input_tokens=json_int(usage.get("input_tokens")),
        cached_input_tokens=json_int(
            _object(usage.get("input_tokens_details")).get("cached_tokens")
        ),
        output_tokens=json_int(usage.get("output_tokens")),
        reasoning_tokens=json_int(
            _object(usage.get("output_tokens_details")).get("reasoning_tokens")
        ),
        total_tokens=json_int(usage.get("total_tokens")),
    )


def _rate_limits_report(value: Mapping[str, Any], now: float) -> UsageReport:
    """A codex.rate_limits event as a report: its family, code review, plan and credits."""
    name = json_text(value.get("limit_name"))
    # The official client files the event under metered_limit_name, else limit_name.
    limit_id = (
        limit_id_of(value.get("limit_id"))
        or limit_id_of(value.get("metered_limit_name"))
        or limit_id_of(name)
        or "codex"
    )
    limits: list[LimitReport] = [limit_from_json(limit_id, name, value.get("rate_limits"), now)]
    review = value.get("code_review_rate_limits")
    if isinstance(review, dict) and limit_id != "code_review":
        limits.append(limit_from_json("code_review", None, review, now))
    return UsageReport(
        limits=tuple(limits),
        plan_type=json_text(value.get("plan_type")),
        credits=credits_from_json(value.get("credits")),
        rate_limit_reached_type=reached_type_from_json(value.get("rate_limit_reached_type")),
    )


def _error_code(error: object) -> str | None:
    """error.code, else error.type."""
    fields = _object(error)
    return json_text(fields.get("code")) or json_text(fields.get("type"))


def _status(value: Mapping[str, Any]) -> int | None:
    """The HTTP status a wrapped error stands for (status, or status_code), or None."""
    status = json_int(value.get("status"))
    if status is None:
        status = json_int(value.get("status_code"))
    return status if status is not None and 100 <= status <= 599 else None


def _headers(value: object) -> dict[str, str]:
    """The wrapped headers with text values; numbers are written out, anything else skipped."""
    headers: dict[str, str] = {}
    for name, item in _object(value).items():
        if isinstance(item, str):
            headers[name] = item
        elif isinstance(item, int | float) and not isinstance(item, bool):
            headers[name] = str(item)
    return headers


def _error_frame(value: Mapping[str, Any], now: float) -> ErrorFrame:
    """An error event: its status and code, and the usage its headers and quota error report."""
    error = value.get("error")
    # An SSE error event may carry its code at the top level instead.
    code = _error_code(error) or json_text(value.get("code"))
    headers = _headers(value.get("headers"))
    report = parse_rate_limit_headers(headers, now) if headers else None
    hit = limit_hit_from_error(error, now)
    if hit is not None:
        plan_type = json_text(_object(error).get("plan_type"))
        if report is None:
            report = UsageReport(limits=(), plan_type=plan_type, limit_hit=hit)
        else:
            report = dataclasses.replace(
                report, plan_type=report.plan_type or plan_type, limit_hit=hit
            )
    return ErrorFrame(_status(value), code, report)
