"""Tests for codexgate.scan: events inside SSE streams and WebSocket frames, under any chunking."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from codexgate.core.models import Credits, LimitHit, LimitReport, TokenUsage, UsageReport, Window
from tests.helpers.paths import DATA

NOW = 1_800_000_000.0
# No example database: the tests leave no files behind; a failure prints its example.


def sample(name: str) -> bytes:
    """The bytes of one sample in tests/data."""
    return (DATA / name).read_bytes()


def ws_frames(direction: str) -> list[str]:
    """The frames of ws-frames.jsonl sent by `direction`, as the text each frame carries."""
    frames: list[str] = []
    for line in sample("ws-frames.jsonl").splitlines():
        record = orjson.loads(line)
        if record.get("dir") == direction:
            frames.append(orjson.dumps(record["frame"]).decode())
    return frames


def scan_chunks(chunks: Sequence[bytes], max_event_bytes: int | None = None) -> list[StreamEvent]:
    """Feed `chunks` to a fresh scanner, then close it; every event, in order."""
    scanner = SseScanner() if max_event_bytes is None else SseScanner(max_event_bytes)
    events: list[StreamEvent] = []
    for chunk in chunks:
        events.extend(scanner.feed(chunk, NOW))
    events.extend(scanner.close(NOW))
    return events


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """Cut `data` at the given offsets (any order, repeats allowed; empty chunks included)."""
    points = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(points)]


def crlf(data: bytes) -> bytes:
    """The same stream with CRLF line ends."""
    return data.replace(b"\n", b"\r\n")


def cr(data: bytes) -> bytes:
    """The same stream with CR line ends."""
    return data.replace(b"\n", b"\r")


def delta(text: str, index: int = 0) -> bytes:
    """One response.output_text.delta event as the upstream frames it."""
    payload = orjson.dumps(
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": text,
            "sequence_number": index,
        }
    )
    return b"event: response.output_text.delta\ndata: " + payload + b"\n\n"


def compact(value: object) -> str:
    """`value` as compact JSON, as the upstream writes it (any int, unlike orjson)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sse(value: object, event: str = "message") -> bytes:
    """One SSE event carrying `value` as JSON."""
    return f"event: {event}\ndata: {compact(value)}\n\n".encode()


BASIC = sample("stream-basic.sse")
WITH_LIMITS = sample("stream-with-rate-limits.sse")
FAILED = sample("stream-failed.sse")
# Non-ASCII text in both interesting and uninteresting events: chunks split inside characters.
UNICODE = (
    delta('héllo ✓ 🎉 "type":"response.completed"')
    + sse({"type": "response.created", "response": {"id": "resp_ü", "model": "modèle-✓"}})
    + delta("ünïcödé")
)
STREAMS = {
    "basic": BASIC,
    "with-limits": WITH_LIMITS,
    "failed": FAILED,
    "unicode": UNICODE,
    "all": WITH_LIMITS + BASIC + UNICODE + FAILED,
}
LINE_ENDS: dict[str, Callable[[bytes], bytes]] = {"lf": bytes, "crlf": crlf, "cr": cr}


# --- samples ----------------------------------------------------------------------------------


def test_rate_limits_event_gives_both_windows_plan_and_credits() -> None:
    events = scan_chunks([WITH_LIMITS])
    assert isinstance(events[0], RateLimitsEvent)
    report = events[0].report
    assert report.limits == (
        LimitReport(
            "codex",
            None,
            (
                Window("primary", "5h", "length", 47.0, 300, 1893456000),
                Window("secondary", "7d", "length", 15.0, 10080, 1893955000),
            ),
        ),
    )
    assert report.plan_type == "plus"
    assert report.credits == Credits(False, False, "0")
    assert report.limit_hit is None


def test_rate_limits_stream_gives_turn_events_in_order() -> None:
    events = scan_chunks([WITH_LIMITS])
    assert [type(event) for event in events] == [RateLimitsEvent, TurnStarted, TurnCompleted]
    assert events[1] == TurnStarted("resp_2", None)
    assert events[2] == TurnCompleted("resp_2", None, TokenUsage(10, 0, 2, 0, 12))


def test_basic_stream_gives_started_and_completed_with_tokens() -> None:
    assert scan_chunks([BASIC]) == [
        TurnStarted("resp_1", "gpt-5-codex"),
        TurnCompleted("resp_1", "gpt-5-codex", TokenUsage(1200, 1024, 36, 20, 1236)),
    ]


def test_failed_stream_gives_the_error_code() -> None:
    assert scan_chunks([FAILED]) == [
        TurnStarted("resp_3", None),
        TurnFailed("resp_3", "server_is_overloaded"),
    ]


def test_non_ascii_events_decode() -> None:
    assert scan_chunks([UNICODE]) == [TurnStarted("resp_ü", "modèle-✓")]


# --- chunking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", LINE_ENDS)
@pytest.mark.parametrize("name", STREAMS)
def test_every_two_chunk_split_gives_the_same_events(name: str, ending: str) -> None:
    data = LINE_ENDS[ending](STREAMS[name])
    expected = scan_chunks([data])
    assert expected
    for cut in range(len(data) + 1):
        assert scan_chunks([data[:cut], data[cut:]]) == expected, cut


@pytest.mark.parametrize("ending", LINE_ENDS)
@pytest.mark.parametrize("name", STREAMS)
def test_one_byte_chunks_give_the_same_events(name: str, ending: str) -> None:
    data = LINE_ENDS[ending](STREAMS[name])
    chunks = [data[index : index + 1] for index in range(len(data))]
    assert scan_chunks(chunks) == scan_chunks([data])


@given(
    name=st.sampled_from(sorted(STREAMS)),
    ending=st.sampled_from(sorted(LINE_ENDS)),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=60),
)
def test_any_split_gives_the_same_events(name: str, ending: str, cuts: list[int]) -> None:
    data = LINE_ENDS[ending](STREAMS[name])
    assert scan_chunks(split(data, cuts)) == scan_chunks([data])


def test_event_without_a_final_blank_line_is_flushed_on_close() -> None:
    data = BASIC.rstrip(b"\n")
    scanner = SseScanner()
    events = scanner.feed(data, NOW)
    assert events == [TurnStarted("resp_1", "gpt-5-codex")]
    assert scanner.pending_bytes > 0
    last = scanner.close(NOW)
    assert [type(event) for event in last] == [TurnCompleted]
    assert scanner.pending_bytes == 0
    assert scanner.close(NOW) == []


def test_a_chunk_of_whole_events_leaves_nothing_buffered() -> None:
    scanner = SseScanner()
    for index in range(5):
        assert scanner.feed(delta("x", index), NOW) == []
        assert scanner.pending_bytes == 0


def test_multi_line_data_is_joined_with_newlines() -> None:
    data = (
        b": a comment\nevent: response.created\nid: 7\n"
        b'data:{"type":"response.created",\ndata:  "response":\ndata: {"id": "r"}}\n\n'
    )
    assert scan_chunks([data]) == [TurnStarted("r", None)]


def test_byte_order_mark_and_blank_lines_are_tolerated() -> None:
    data = b"\xef\xbb\xbf" + b"\n\n\n" + sse({"type": "response.created", "response": {}})
    assert scan_chunks([data]) == [TurnStarted(None, None)]


def test_json_with_spaces_is_recognised() -> None:
    data = b'data: {"type": "response.failed", "response": {"error": {"type": "x"}}}\n\n'
    assert scan_chunks([data]) == [TurnFailed(None, "x")]


# --- cost: what is and is not decoded ---------------------------------------------------------


def test_deltas_are_never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes | str] = []
    real_loads = orjson.loads

    def spy(data: bytes | str) -> object:
        decoded.append(data)
        return real_loads(data)

    monkeypatch.setattr(orjson, "loads", spy)
    broken = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",\n\n'
    stream = broken + delta('he said "type":"error"') + BASIC + broken
    scanner = SseScanner()
    events = [event for chunk in split(stream, [50, 51, 300]) for event in scanner.feed(chunk, NOW)]
    assert len(events) == 2
    assert scanner.decode_errors == 0
    # Only response.created and response.completed were decoded.
    assert len(decoded) == 2
    assert all(b'"response.c' in bytes(item) for item in decoded if isinstance(item, bytes))


def test_broken_interesting_event_counts_as_decode_error() -> None:
    scanner = SseScanner()
    data = b'data: {"type":"response.completed","response":{\n\n' + BASIC
    events = scanner.feed(data, NOW)
    assert len(events) == 2
    assert scanner.decode_errors == 1


def test_invalid_utf8_in_an_interesting_event_counts_as_decode_error() -> None:
    scanner = SseScanner()
    data = b'data: {"type":"response.created","response":{"id":"\xff\xfe"}}\n\n'
    assert scanner.feed(data, NOW) == []
    assert scanner.decode_errors == 1


# --- bounded carry ----------------------------------------------------------------------------

LIMIT = 1024
HUGE_ITEM = sse(
    {"type": "response.output_item.done", "item": {"text": "y" * 5000}},
    "response.output_item.done",
)
HUGE_COMPLETED = sse({"type": "response.completed", "response": {"id": "big", "pad": "z" * 5000}})
BOUNDED = WITH_LIMITS + HUGE_ITEM + HUGE_COMPLETED + BASIC


def test_an_oversized_event_is_dropped_and_scanning_resumes() -> None:
    scanner = SseScanner(LIMIT)
    events: list[StreamEvent] = []
    for chunk in split(BOUNDED, range(0, len(BOUNDED), 100)):
        events.extend(scanner.feed(chunk, NOW))
        assert scanner.pending_bytes <= LIMIT + 100 + 4
    events.extend(scanner.close(NOW))
    assert [type(event) for event in events] == [
        RateLimitsEvent,
        TurnStarted,
        TurnCompleted,
        TurnStarted,
        TurnCompleted,
    ]
    assert events[2] == TurnCompleted("resp_2", None, TokenUsage(10, 0, 2, 0, 12))
    assert events[4] == TurnCompleted("resp_1", "gpt-5-codex", TokenUsage(1200, 1024, 36, 20, 1236))
    assert scanner.dropped_events == 2
    assert scanner.decode_errors == 0


def test_an_oversized_event_in_one_chunk_is_dropped_too() -> None:
    assert scan_chunks(split(BOUNDED, range(0, len(BOUNDED), 100)), LIMIT) == scan_chunks(
        [BOUNDED], LIMIT
    )


def test_an_oversized_stream_without_blank_lines_stays_bounded() -> None:
    scanner = SseScanner(LIMIT)
    for _ in range(200):
        assert scanner.feed(b"data: " + b"q" * 500 + b"\n", NOW) == []
        assert scanner.pending_bytes <= LIMIT + 1000
    events = scanner.feed(b"\n" + BASIC, NOW)
    assert events[1] == TurnCompleted("resp_1", "gpt-5-codex", TokenUsage(1200, 1024, 36, 20, 1236))
    assert scanner.dropped_events == 1


@given(
    ending=st.sampled_from(sorted(LINE_ENDS)),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=40),
    limit=st.sampled_from([200, 300, 1024, 4000, 6000]),
)
def test_dropping_oversized_events_does_not_depend_on_chunking(
    ending: str, cuts: list[int], limit: int
) -> None:
    data = LINE_ENDS[ending](BOUNDED)
    assert scan_chunks(split(data, cuts), limit) == scan_chunks([data], limit)


# --- rate-limit events ------------------------------------------------------------------------


def one_event(value: object) -> StreamEvent:
    """The single event that one SSE event carrying `value` gives."""
    events = scan_chunks([sse(value)])
    assert len(events) == 1, events
    return events[0]


def limits_report(value: dict[str, object]) -> UsageReport:
    """The report of a codex.rate_limits event with these members."""
    event = one_event({"type": "codex.rate_limits", **value})
    assert isinstance(event, RateLimitsEvent)
    return event.report


def test_rate_limits_without_windows_reports_the_family_with_none() -> None:
    report = limits_report({"rate_limits": {"primary": None}})
    assert report == UsageReport(limits=(LimitReport("codex", None, ()),))


def test_rate_limits_empty_window_is_not_reported() -> None:
    report = limits_report(
        {"rate_limits": {"primary": {"used_percent": 0}, "secondary": {"used_percent": 0.0}}}
    )
    assert report.limits[0].windows == ()


def test_rate_limits_window_without_length_is_classified_by_slot() -> None:
    report = limits_report({"rate_limits": {"secondary": {"used_percent": 5}}})
    assert report.limits[0].windows == (Window("secondary", "7d", "slot", 5.0, None, None),)


def test_rate_limits_relative_reset_needs_now() -> None:
    report = limits_report(
        {"rate_limits": {"primary": {"used_percent": 1, "reset_after_seconds": 60}}}
    )
    assert report.limits[0].windows[0].resets_at == round(NOW) + 60
    report = limits_report(
        {"rate_limits": {"primary": {"used_percent": 1, "resets_in_seconds": 5}}}
    )
    assert report.limits[0].windows[0].resets_at == round(NOW) + 5
    report = limits_report(
        {"rate_limits": {"primary": {"resets_at": 1893456000, "reset_after_seconds": 60}}}
    )
    assert report.limits[0].windows[0].resets_at == 1893456000


def test_rate_limits_names_its_family() -> None:
    report = limits_report(
        {
            "metered_limit_name": "codex-bengalfox",
            "limit_name": "gpt-5.2-codex-sonic",
            "rate_limits": {"primary": {"used_percent": 3, "window_minutes": 300}},
        }
    )
    assert report.limits[0].limit_id == "codex_bengalfox"
    assert report.limits[0].limit_name == "gpt-5.2-codex-sonic"
    assert limits_report({"limit_id": "Codex-Other"}).limits[0].limit_id == "codex_other"
    assert limits_report({"limit_name": "codex-other"}).limits[0].limit_id == "codex_other"


def test_rate_limits_code_review_is_its_own_family() -> None:
    report = limits_report(
        {
            "rate_limits": {"primary": {"used_percent": 10, "window_minutes": 300}},
            "code_review_rate_limits": {
                "primary": {"used_percent": 20, "window_minutes": 10080, "reset_at": 1893955000}
            },
        }
    )
    assert [limit.limit_id for limit in report.limits] == ["codex", "code_review"]
    assert report.limits[1].windows == (Window("primary", "7d", "length", 20.0, 10080, 1893955000),)


@pytest.mark.parametrize("bad", [-1, "47", True, None, [], {}, 2**63, 1e300, -0.5])
def test_rate_limits_bad_numbers_are_unknown(bad: object) -> None:
    report = limits_report(
        {
            "rate_limits": {
                "primary": {"used_percent": 47, "window_minutes": bad, "reset_at": bad},
                "secondary": {"used_percent": bad, "window_minutes": 10080},
            },
        }
    )
    primary, secondary = report.limits[0].windows
    assert primary == Window("primary", "5h", "slot", 47.0, None, None)
    assert secondary.used_percent is None
    assert secondary.window_minutes == 10080


@pytest.mark.parametrize("bad", ["true", None, [], {}, "", "  ", "NaN", "inf", "1e999x"])
def test_rate_limits_bad_credits_and_plan_are_unknown(bad: object) -> None:
    report = limits_report(
        {"credits": {"has_credits": bad, "unlimited": bad, "balance": bad}, "plan_type": bad}
    )
    assert report.credits == Credits(None, None, None)
    assert report.plan_type == (bad.strip() or None if isinstance(bad, str) else None)


def test_rate_limits_numeric_balance_becomes_text() -> None:
    assert limits_report({"credits": {"balance": 12.5}}).credits == Credits(None, None, "12.5")
    assert limits_report({"credits": {"balance": 7}}).credits == Credits(None, None, "7")
    assert limits_report({"credits": {"balance": " 3.10 "}}).credits == Credits(None, None, "3.10")
    assert limits_report({"credits": {"balance": "lots"}}).credits == Credits(None, None, None)


# --- turn events ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, 2**64, None])
def test_bad_token_counts_are_unknown(bad: object) -> None:
    event = one_event(
        {
            "type": "response.completed",
            "response": {
                "id": "r",
                "usage": {
                    "input_tokens": bad,
                    "input_tokens_details": {"cached_tokens": bad},
                    "output_tokens": 3,
                    "output_tokens_details": bad,
                    "total_tokens": 10.0,
                },
            },
        }
    )
    assert event == TurnCompleted("r", None, TokenUsage(None, None, 3, None, 10))


def test_completed_without_usage_has_unknown_tokens() -> None:
    assert one_event({"type": "response.completed"}) == TurnCompleted(None, None, TokenUsage())


def test_failed_falls_back_to_the_error_type() -> None:
    event = one_event(
        {"type": "response.failed", "response": {"id": "r", "error": {"type": "server_error"}}}
    )
    assert event == TurnFailed("r", "server_error")


def test_other_types_and_values_give_nothing() -> None:
    assert scan_chunks([sse(["type", "response.completed"])]) == []
    assert scan_chunks([sse({"type": "response.in_progress", "x": '"type":"error"'})]) == []
    assert scan_chunks([sse({"kind": "x", "nested": {"type": "error"}})]) == []


# --- errors -----------------------------------------------------------------------------------


def test_sse_error_event_with_a_quota_error_reports_the_hit() -> None:
    event = one_event(
        {
            "type": "error",
            "error": {"type": "usage_not_included", "plan_type": "free", "resets_in_seconds": 60},
        }
    )
    assert event == ErrorFrame(
        None,
        "usage_not_included",
        UsageReport(
            limits=(),
            plan_type="free",
            limit_hit=LimitHit("usage_not_included", round(NOW) + 60),
        ),
    )


def test_sse_error_event_with_top_level_code() -> None:
    event = one_event({"type": "error", "code": "server_error", "message": "boom"})
    assert event == ErrorFrame(None, "server_error", None)


def test_wrapped_error_keeps_the_header_plan_type() -> None:
    frame = {
        "type": "error",
        "status_code": 429,
        "error": {"code": "usage_limit_reached", "type": "usage_limit_reached", "plan_type": "x"},
        "headers": {
            "x-codex-plan-type": "plus",
            "x-codex-primary-used-percent": 100,
            "x-codex-primary-window-minutes": "300",
            "x-ignored": {"a": 1},
        },
    }
    event = scan_ws_frame(compact(frame), NOW)
    assert isinstance(event, ErrorFrame)
    assert event.status == 429
    assert event.report is not None
    assert event.report.plan_type == "plus"
    assert event.report.limits[0].windows[0].used_percent == 100.0
    assert event.report.limit_hit == LimitHit("usage_limit_reached", None)


def test_error_that_is_not_a_quota_error_has_no_hit() -> None:
    frame = {"type": "error", "status": 700, "error": {"type": "invalid_request_error"}}
    event = scan_ws_frame(compact(frame), NOW)
    assert event == ErrorFrame(None, "invalid_request_error", None)


# --- WebSocket frames -------------------------------------------------------------------------


def test_server_frames_of_the_sample() -> None:
    events = [scan_ws_frame(frame, NOW) for frame in ws_frames("server")]
    assert [type(event).__name__ for event in events] == [
        "RateLimitsEvent",
        "TurnStarted",
        "NoneType",
        "TurnCompleted",
        "ErrorFrame",
    ]
    limits, started, _, completed, error = events
    assert isinstance(limits, RateLimitsEvent)
    assert [window.used_percent for window in limits.report.limits[0].windows] == [48.0, 16.0]
    assert started == TurnStarted("resp_ws1", None)
    assert completed == TurnCompleted("resp_ws1", None, TokenUsage(10, 0, 1, 0, 11))
    assert isinstance(error, ErrorFrame)
    assert (error.status, error.error_code) == (429, "usage_limit_reached")
    assert error.report is not None
    windows = {window.label: window for window in error.report.limits[0].windows}
    assert windows["5h"].used_percent == 100.0
    assert windows["7d"].used_percent == 17.0
    assert error.report.limit_hit == LimitHit("usage_limit_reached", 1893456000)
    assert error.report.plan_type == "plus"


def test_server_frames_scan_like_the_same_events_in_sse() -> None:
    frames = ws_frames("server")
    stream = b"".join(b"data: " + frame.encode() + b"\n\n" for frame in frames)
    expected = [event for frame in frames if (event := scan_ws_frame(frame, NOW)) is not None]
    assert scan_chunks([stream]) == expected


def test_client_frames_give_the_model() -> None:
    first, second = ws_frames("client")
    assert parse_client_ws_frame(first) == "gpt-5-codex"
    assert parse_client_ws_frame(second) == ""
    assert parse_client_ws_frame('{"type":"response.cancel"}') is None
    assert parse_client_ws_frame('{"type":"other","text":"response.create"}') is None
    assert parse_client_ws_frame('{"type":"response.create","model":7}') == ""
    assert parse_client_ws_frame('{"type":"response.create",') is None
    assert parse_client_ws_frame('["response.create"]') is None


def test_bad_server_frames_give_nothing() -> None:
    assert scan_ws_frame('{"type":"response.completed",', NOW) is None
    assert scan_ws_frame('{"type":"response.output_text.delta","delta":"x"}', NOW) is None
    assert scan_ws_frame('"type":"error"', NOW) is None
    assert scan_ws_frame('{"type":"error","x":"\ud800"}', NOW) is None


# --- fuzz -------------------------------------------------------------------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["usage_limit_reached", "usage_not_included", "0", "1e999", "NaN"])
)
FIELDS = st.sampled_from(
    [
        "type", "response", "usage", "id", "model", "error", "code", "status", "headers",
        "rate_limits", "primary", "secondary", "used_percent", "window_minutes", "reset_at",
        "resets_at", "reset_after_seconds", "resets_in_seconds", "credits", "balance",
        "has_credits", "plan_type", "code_review_rate_limits", "limit_name", "limit_id",
        "metered_limit_name", "input_tokens", "input_tokens_details", "cached_tokens",
        "x-codex-primary-used-percent", "x-codex-plan-type",
    ]
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(FIELDS | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=30,
)
TYPES = st.sampled_from(
    ["codex.rate_limits", "response.created", "response.completed", "response.failed", "error"]
)


@given(kind=TYPES, members=st.dictionaries(FIELDS, JSON_VALUES, max_size=8))
def test_junk_members_never_raise(kind: str, members: dict[str, object]) -> None:
    text = compact({**members, "type": kind})
    event = scan_ws_frame(text, NOW)
    assert event is not None
    assert scan_chunks([b"data: " + text.encode() + b"\n\n"]) == [event]


# Pieces that make random bytes look like a stream: line ends, fields, markers, broken UTF-8.
STREAM_BITS = (
    b"\n", b"\r", b"\r\n", b"data:", b"data: ", b"\xff", b"\xc3", b'{"type":"error"}',
    b'{"type":"response.completed","response":{}}', b'"type": "codex.rate_limits"',
)  # fmt: skip


@given(
    data=st.binary(max_size=2000)
    | st.lists(
        st.sampled_from(STREAM_BITS) | st.binary(max_size=20),
        max_size=50,
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
    limit=st.sampled_from([16, 64, 1024]),
)
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int], limit: int) -> None:
    assert scan_chunks(split(data, cuts), limit) == scan_chunks([data], limit)


@given(text=st.text(max_size=300))
def test_arbitrary_frames_never_raise(text: str) -> None:
    scan_ws_frame(text, NOW)
    scan_ws_frame('{"type":"error",' + text, NOW)
    parse_client_ws_frame(text)
    parse_client_ws_frame('{"type":"response.create",' + text)
