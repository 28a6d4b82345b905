"""Tests for codexgate.bodies: wham/usage answers, quota error bodies and Content-Encoding."""

from __future__ import annotations

import gzip
import json
import os
import sys
import types
import zlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexgate.capture.bodies import (
    decode_body,
    error_code_of_body,
    parse_error_body,
    parse_usage_body,
    plan_type_of_error_body,
)
from codexgate.core.models import (
    Credits,
    LimitHit,
    LimitReport,
    SpendControl,
    SpendLimit,
    UsageReport,
    Window,
)
from tests.helpers.paths import DATA

NOW = 1_800_000_000.0
# No example database: the tests leave no files behind; a failure prints its example.


def usage(name: str) -> UsageReport:
    """The report of one wham-usage sample."""
    report = parse_usage_body((DATA / f"wham-usage-{name}.json").read_bytes(), NOW)
    assert report is not None
    return report


def usage_of(value: object) -> UsageReport | None:
    """The report of a usage body holding `value` (any int, unlike orjson)."""
    return parse_usage_body(json.dumps(value).encode(), NOW)


def error_body(name: str) -> bytes:
    """The 429 body of one headers sample, as the upstream sends it."""
    return orjson.dumps(orjson.loads((DATA / name).read_bytes())["body"])


def windows(report: UsageReport, limit_id: str = "codex") -> dict[str, Window]:
    """The windows of one family by label."""
    [limit] = [item for item in report.limits if item.limit_id == limit_id]
    return {window.label: window for window in limit.windows}


# --- wham/usage samples -----------------------------------------------------------------------


def test_plus_usage_has_5h_and_7d_plan_and_credits() -> None:
    report = usage("plus")
    assert [limit.limit_id for limit in report.limits] == ["codex"]
    assert windows(report) == {
        "5h": Window("primary", "5h", "length", 46.0, 300, 1893456000),
        "7d": Window("secondary", "7d", "length", 15.0, 10080, 1893955000),
    }
    assert report.plan_type == "plus"
    assert report.credits == Credits(False, False, "0")
    assert report.limit_hit is None
    assert report.rate_limit_reached_type is None
    assert report.spend_control == SpendControl(reached=False)


def test_free_monthly_usage_has_only_the_monthly_window() -> None:
    report = usage("free-monthly")
    assert windows(report) == {
        "monthly": Window("primary", "monthly", "length", 62.0, 43200, 1894000000)
    }
    assert report.plan_type == "free"
    assert report.spend_control is None


def test_business_usage_has_spend_control_and_an_extra_family() -> None:
    report = usage("business")
    assert report.limits[0] == LimitReport("codex", None, ())
    assert report.spend_control == SpendControl(
        reached=False,
        limit="15000",
        used="3831.74",
        used_percent=26.0,
        resets_at=1785542400,
        source="workspace_spend_controls",
        limits=(
            SpendLimit(
                "individual",
                limit="15000",
                used="3831.74",
                remaining="11168.26",
                used_percent=26.0,
                remaining_percent=74.0,
                resets_at=1785542400,
            ),
        ),
    )
    [extra] = report.limits[1:]
    assert extra.limit_id == "codex_bengalfox"
    assert extra.limit_name == "gpt-5.2-codex-sonic"
    assert extra.windows == (Window("primary", "5h", "length", 3.0, 300, 1785000000),)
    assert report.credits == Credits(True, False, None)
    assert report.plan_type == "business"


# --- wham/usage details -----------------------------------------------------------------------


def test_usage_limit_reached_is_a_hit_until_the_full_window_resets() -> None:
    report = usage_of(
        {
            "rate_limit": {
                "allowed": False,
                "limit_reached": True,
                "primary_window": {"used_percent": 100, "limit_window_seconds": 18000,
                                   "reset_at": 1893456000},
                "secondary_window": {"used_percent": 60, "limit_window_seconds": 604800,
                                     "reset_at": 1893955000},
            }
        }
    )  # fmt: skip
    assert report is not None
    assert report.limit_hit == LimitHit("usage_limit_reached", 1893456000)


def test_usage_limit_reached_without_a_full_window_waits_for_the_latest_reset() -> None:
    report = usage_of(
        {
            "rate_limit": {
                "limit_reached": True,
                "primary_window": {"used_percent": 90, "reset_after_seconds": 100},
                "secondary_window": {"used_percent": 60, "reset_after_seconds": 1000},
            }
        }
    )
    assert report is not None
    assert report.limit_hit == LimitHit("usage_limit_reached", round(NOW) + 1000)


def test_usage_window_lengths_in_seconds() -> None:
    report = usage_of(
        {
            "rate_limit": {
                "primary_window": {"used_percent": 1, "limit_window_seconds": 86400},
                "secondary_window": {"used_percent": 1, "limit_window_seconds": 100},
            }
        }
    )
    assert report is not None
    assert [(w.label, w.window_minutes) for w in report.limits[0].windows] == [
        ("daily", 1440),
        ("2m", 2),
    ]


def test_usage_empty_window_is_not_reported() -> None:
    report = usage_of(
        {"rate_limit": {"primary_window": {"used_percent": 0, "limit_window_seconds": 0}}}
    )
    assert report is not None
    assert report.limits == (LimitReport("codex", None, ()),)


def test_usage_extra_families_by_feature_or_name() -> None:
    report = usage_of(
        {
            "plan_type": "pro",
            "additional_rate_limits": [
                {"limit_name": "GPT 5.2 Sonic", "rate_limit": None},
                {"metered_feature": "codex-other", "limit_name": "Other"},
                {"metered_feature": "codex_other", "limit_name": "shadowed"},
                {"metered_feature": "codex"},
                {"rate_limit": {}},
                "junk",
            ],
            "code_review_rate_limit": {"primary_window": {"used_percent": 5}},
            "rate_limit_reached_type": {"type": "workspace_member_usage_limit_reached"},
        }
    )
    assert report is not None
    assert [(limit.limit_id, limit.limit_name) for limit in report.limits] == [
        ("codex", None),
        ("code_review", None),
        ("gpt_5_2_sonic", "GPT 5.2 Sonic"),
        ("codex_other", "Other"),
    ]
    assert report.rate_limit_reached_type == "workspace_member_usage_limit_reached"
    assert report.limit_hit is None


def test_usage_reached_type_as_text() -> None:
    report = usage_of({"plan_type": "plus", "rate_limit_reached_type": "rate_limit_reached"})
    assert report is not None
    assert report.rate_limit_reached_type == "rate_limit_reached"


def test_usage_spend_control_with_a_relative_reset() -> None:
    report = usage_of(
        {
            "plan_type": "business",
            "spend_control": {
                "individual_limit": {"reached": True, "limit": 100, "used": 100.5,
                                     "used_percent": 100.5, "reset_after_seconds": 10}
            },
        }
    )  # fmt: skip
    assert report is not None
    resets_at = round(NOW) + 10
    assert report.spend_control == SpendControl(
        reached=True,
        limit="100",
        used="100.5",
        used_percent=100.5,
        resets_at=resets_at,
        limits=(SpendLimit("individual", "100", "100.5", None, 100.5, None, resets_at),),
    )


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"[]", b'"x"', b"{", b'{"detail":"Unauthorized"}', b"\xff", b"1e999"],
)
def test_not_a_usage_body(body: bytes) -> None:
    assert parse_usage_body(body, NOW) is None


# --- error bodies -----------------------------------------------------------------------------


def test_free_429_body_is_a_limit_hit() -> None:
    body = error_body("headers-free-429.json")
    assert parse_error_body(body, NOW) == LimitHit("usage_limit_reached", 1773860656)
    assert error_code_of_body(body) == "usage_limit_reached"
    assert plan_type_of_error_body(body) == "free"


def test_plus_429_body_is_a_limit_hit() -> None:
    body = error_body("headers-plus-429-premium.json")
    assert parse_error_body(body, NOW) == LimitHit("usage_limit_reached", 1777936568)
    assert plan_type_of_error_body(body) == "plus"


def test_limit_hit_with_only_a_relative_reset() -> None:
    body = b'{"error":{"type":"usage_not_included","resets_in_seconds":30}}'
    assert parse_error_body(body, NOW) == LimitHit("usage_not_included", round(NOW) + 30)
    body = b'{"error":{"code":"usage_limit_reached"}}'
    assert parse_error_body(body, NOW) == LimitHit("usage_limit_reached", None)


@pytest.mark.parametrize(
    "body",
    [
        b'{"error":{"type":"invalid_request_error","resets_at":5}}',
        b'{"error":{"type":["usage_limit_reached"]}}',
        b'{"error":"usage_limit_reached"}',
        b'{"type":"usage_limit_reached"}',
        b"[1]",
        b"not json",
    ],
)
def test_other_bodies_are_not_limit_hits(body: bytes) -> None:
    assert parse_error_body(body, NOW) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"error":{"code":"context_length_exceeded","type":"invalid_request_error"}}',
         "context_length_exceeded"),
        (b'{"error":{"type":"server_error","code":null}}', "server_error"),
        (b'{"error":"invalid_token"}', "invalid_token"),
        (b'{"detail":"Unauthorized"}', "Unauthorized"),
        (b'{"detail":{"code":"token_expired"}}', "token_expired"),
        (b'{"code":"deactivated_workspace"}', "deactivated_workspace"),
        (b'{"error":{"code":7}}', None),
        (b'{"message":"no code"}', None),
        (b"<html>", None),
    ],
)  # fmt: skip
def test_error_code_of_body(body: bytes, code: str | None) -> None:
    assert error_code_of_body(body) == code


def test_long_error_codes_are_cut() -> None:
    code = error_code_of_body(orjson.dumps({"detail": "x" * 10_000}))
    assert code is not None
    assert len(code) == 200


def test_plan_type_of_other_bodies() -> None:
    assert plan_type_of_error_body(b'{"error":{"type":"x"}}') is None
    assert plan_type_of_error_body(b'{"plan_type":"plus"}') is None
    assert plan_type_of_error_body(b"junk") is None


# --- Content-Encoding -------------------------------------------------------------------------

PAYLOAD = orjson.dumps({"rate_limit": None, "pad": "usage " * 2000})


def raw_deflate(data: bytes) -> bytes:
    """Deflate without the zlib header, as some servers send "deflate"."""
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZip", lambda data: gzip.compress(data[:100]) + gzip.compress(data[100:])),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("identity", bytes),
        (None, bytes),
        ("", bytes),
        ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),
    ],
)
def test_decode_body_round_trips(encoding: str | None, encode: object) -> None:
    assert callable(encode)
    encoded = encode(PAYLOAD)
    assert decode_body(encoded, encoding, len(PAYLOAD)) == PAYLOAD
    assert decode_body(encoded, encoding, len(PAYLOAD) - 1) is None


def test_decode_body_zstd() -> None:
    zstandard = pytest.importorskip("zstandard")
    encoded = zstandard.ZstdCompressor().compress(PAYLOAD)
    assert decode_body(encoded, "zstd", len(PAYLOAD)) == PAYLOAD
    assert decode_body(encoded, "zstd", len(PAYLOAD) - 1) is None
    # Two frames, and a frame written without its content size.
    streamed = zstandard.ZstdCompressor().compressobj()
    unsized = streamed.compress(PAYLOAD) + streamed.flush()
    assert decode_body(encoded + unsized, "zstd", 2 * len(PAYLOAD)) == PAYLOAD * 2
    assert decode_body(encoded[:-5], "zstd", len(PAYLOAD)) is None
    assert decode_body(b"not zstd", "zstd", 100) is None


class FakeBrotliDecompressor:
    """A stand-in for brotli.Decompressor (1.2 API) that inflates raw deflate."""

    def __init__(self) -> None:
        """Start a raw-deflate inflater."""
        self._inflater = zlib.decompressobj(-15)
        self._tail = b""

    def process(self, data: bytes, output_buffer_limit: int = 0) -> bytes:
        """Inflate `data` (or what is held back), at most output_buffer_limit bytes if set."""
        data = self._tail + data
        out = self._inflater.decompress(data, output_buffer_limit)
        self._tail = self._inflater.unconsumed_tail
        return out

    def can_accept_more_data(self) -> bool:
        """True once all held-back input is inflated."""
        return not self._tail

    def is_finished(self) -> bool:
        """True at the end of the stream."""
        return self._inflater.eof and not self._tail


class OldFakeBrotliDecompressor:
    """A stand-in for brotli.Decompressor before 1.2: no output bound."""

    def __init__(self) -> None:
        """Start a raw-deflate inflater."""
        self._inflater = zlib.decompressobj(-15)

    def process(self, data: bytes) -> bytes:
        """Inflate all of `data`."""
        return self._inflater.decompress(data)

    def is_finished(self) -> bool:
        """True at the end of the stream."""
        return self._inflater.eof


@pytest.mark.parametrize("decompressor", [FakeBrotliDecompressor, OldFakeBrotliDecompressor])
def test_decode_body_br_with_either_brotli_api(
    monkeypatch: pytest.MonkeyPatch, decompressor: type
) -> None:
    fake = types.SimpleNamespace(Decompressor=decompressor, error=zlib.error)
    monkeypatch.setitem(sys.modules, "brotli", fake)
    encoded = raw_deflate(PAYLOAD)
    assert decode_body(encoded, "br", len(PAYLOAD)) == PAYLOAD
    assert decode_body(encoded, "br", len(PAYLOAD) - 1) is None
    assert decode_body(encoded[:-3], "br", len(PAYLOAD)) is None
    assert decode_body(b"\xff" * 10, "br", 100) is None
    assert decode_body(raw_deflate(bytes(50_000_000)), "br", 1_000_000) is None


def test_decode_body_brotli() -> None:
    brotli = pytest.importorskip("brotli")
    encoded = brotli.compress(PAYLOAD)
    assert decode_body(encoded, "br", len(PAYLOAD)) == PAYLOAD
    assert decode_body(encoded, "br", len(PAYLOAD) - 1) is None
    assert decode_body(encoded[:-3], "br", len(PAYLOAD)) is None
    assert decode_body(brotli.compress(bytes(50_000_000)), "br", 1_000_000) is None


def test_decode_body_br_without_brotli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "brotli", None)  # import raises ImportError
    assert decode_body(b"\x0b\x02\x80abc\x03", "br", 100) is None


def test_decode_body_refuses_a_bomb() -> None:
    bomb = gzip.compress(bytes(50_000_000))
    assert len(bomb) < 100_000
    assert decode_body(bomb, "gzip", 1_000_000) is None
    assert decode_body(zlib.compress(bytes(50_000_000)), "deflate", 1_000_000) is None


def test_decode_body_refuses_a_zstd_bomb() -> None:
    zstandard = pytest.importorskip("zstandard")
    bomb = zstandard.ZstdCompressor().compress(bytes(50_000_000))
    assert decode_body(bomb, "zstd", 1_000_000) is None


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"plain", "compress"),
        (b"plain", "gzip"),
        (gzip.compress(PAYLOAD, mtime=0)[:-4], "gzip"),
        (gzip.compress(PAYLOAD, mtime=0) + b"junk", "gzip"),
        (zlib.compress(PAYLOAD) + b"junk", "deflate"),
        (zlib.compress(PAYLOAD)[:-8], "deflate"),
        (b"", "rot13"),
    ],
)
def test_decode_body_refuses_bad_input(body: bytes, encoding: str) -> None:
    assert decode_body(body, encoding, 10**9) is None


def test_decode_body_identity_is_bounded_too() -> None:
    assert decode_body(b"abc", None, 3) == b"abc"
    assert decode_body(b"abc", None, 2) is None
    assert decode_body(b"", None, 0) == b""
    assert decode_body(b"", "gzip, zstd", 0) == b""
    assert decode_body(b"", "gzip", -1) is None


# --- fuzz -------------------------------------------------------------------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["usage_limit_reached", "usage_not_included", "0", "1e999", "NaN", "-3"])
)
FIELDS = st.sampled_from(
    [
        "rate_limit", "primary_window", "secondary_window", "used_percent", "limit_window_seconds",
        "reset_after_seconds", "reset_at", "resets_at", "resets_in_seconds", "allowed",
        "limit_reached", "additional_rate_limits", "metered_feature", "limit_name", "plan_type",
        "credits", "has_credits", "unlimited", "balance", "spend_control", "individual_limit",
        "reached", "limit", "used", "source", "rate_limit_reached_type", "code_review_rate_limit",
        "error", "type", "code", "detail",
    ]
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(FIELDS | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=40,
)


def all_body_parsers(body: bytes) -> None:
    """Run every body parser on `body`; none may raise."""
    parse_usage_body(body, NOW)
    parse_error_body(body, NOW)
    error_code_of_body(body)
    plan_type_of_error_body(body)


@given(value=JSON_VALUES, now=st.floats() | st.just(NOW))
def test_junk_json_never_raises(value: object, now: float) -> None:
    body = json.dumps(value).encode()
    all_body_parsers(body)
    parse_usage_body(body, now)
    wrapped = json.dumps({"rate_limit": value, "error": value, "plan_type": value}).encode()
    all_body_parsers(wrapped)
    parse_usage_body(wrapped, now)
    parse_error_body(wrapped, now)


@given(body=st.binary(max_size=500))
def test_junk_bytes_never_raise(body: bytes) -> None:
    all_body_parsers(body)


@given(
    body=st.binary(max_size=300)
    | st.sampled_from([gzip.compress(b"{}"), zlib.compress(b"{}"), os.urandom(64)]),
    encoding=st.sampled_from(["gzip", "x-gzip", "deflate", "br", "zstd", "identity", "rot13"])
    | st.text(max_size=12)
    | st.none(),
    limit=st.integers(min_value=-1, max_value=1000),
)
def test_decode_body_junk_never_raises(body: bytes, encoding: str | None, limit: int) -> None:
    decoded = decode_body(body, encoding, limit)
    assert decoded is None or len(decoded) <= limit


# --- what the Codex CLI's own tests send (openai/codex, codex-rs/backend-client) ---------------


def test_not_allowed_alone_is_no_limit_hit() -> None:
    # The reference reads neither flag; its own payloads say allowed false far from any limit.
    report = usage_of(
        {
            "rate_limit": {
                "allowed": False,
                "limit_reached": False,
                "primary_window": {
                    "used_percent": 42,
                    "limit_window_seconds": 300,
                    "reset_at": 123,
                },
            }
        }
    )
    assert report is not None
    assert report.limit_hit is None


def test_spend_controls_name_every_limit_and_which_is_reached() -> None:
    report = usage_of(
        {
            "plan_type": "enterprise",
            "spend_control": {
                "reached": True,
                "reached_limit_type": "group_shared",
                "group_shared_limit": {
                    "group_id": "group-1",
                    "group_name": "Engineering",
                    "details": {
                        "limit": "100",
                        "used": "82",
                        "remaining": "18",
                        "used_percent": 82,
                        "remaining_percent": 18,
                        "reset_after_seconds": 60,
                        "reset_at": 120,
                    },
                },
                "workspace_default_limit": {
                    "limit": "50",
                    "used": "10.5",
                    "remaining": "39.5",
                    "used_percent": 21,
                    "remaining_percent": 79,
                    "reset_after_seconds": 600,
                },
            },
        }
    )
    assert report is not None
    spend = report.spend_control
    assert spend is not None
    assert (spend.reached, spend.reached_limit_type) == (True, "group_shared")
    assert spend.limit is None  # no individual limit: the flat fields stay unknown
    assert spend.limits == (
        SpendLimit("workspace_default", "50", "10.5", "39.5", 21.0, 79.0, round(NOW) + 600),
        SpendLimit("group_shared", "100", "82", "18", 82.0, 18.0, 120, "group-1", "Engineering"),
    )


def test_reset_credits_and_promo_are_read() -> None:
    report = usage_of(
        {
            "plan_type": "plus",
            "rate_limit_reset_credits": {"available_count": 3},
            "promo": {"message": " Try the new model "},
        }
    )
    assert report is not None
    assert (report.reset_credits, report.promo_message) == (3, "Try the new model")
    bare = usage_of({"rate_limit_reset_credits": {"available_count": 0}})
    assert bare is not None
    assert bare.reset_credits == 0  # none left is 0, not unknown


@pytest.mark.parametrize("value", ["unknown", "UNKNOWN", {"type": "unknown"}])
def test_an_unknown_reached_type_is_none(value: object) -> None:
    report = usage_of({"plan_type": "plus", "rate_limit_reached_type": value})
    assert report is not None
    assert report.rate_limit_reached_type is None


def test_a_reached_type_not_known_yet_is_kept() -> None:
    report = usage_of({"plan_type": "plus", "rate_limit_reached_type": {"type": "new_kind"}})
    assert report is not None
    assert report.rate_limit_reached_type == "new_kind"


@pytest.mark.parametrize(
    ("reset_at", "expected"),
    [
        ("2030-01-01T00:00:00Z", 1893456000),
        ("2030-01-01T01:00:00+01:00", 1893456000),
        ("2030-01-01T00:00:00.4Z", 1893456000),
        ("2030-01-01T00:00:00", 1893456000),  # no offset: UTC
        (1893456000, 1893456000),
    ],
)
def test_reset_at_as_rfc3339_text_or_seconds(reset_at: object, expected: int) -> None:
    report = usage_of(
        {
            "rate_limit": {
                "primary_window": {
                    "used_percent": 5,
                    "reset_at": reset_at,
                    "reset_after_seconds": 7,
                }
            }
        }
    )
    assert report is not None
    [window] = report.limits[0].windows
    assert window.resets_at == expected


def test_junk_reset_at_text_falls_back_to_reset_after_seconds() -> None:
    report = usage_of(
        {
            "rate_limit": {
                "primary_window": {"used_percent": 5, "reset_at": "soon", "reset_after_seconds": 7}
            }
        }
    )
    assert report is not None
    [window] = report.limits[0].windows
    assert window.resets_at == round(NOW) + 7


def test_a_quota_error_resets_at_may_be_rfc3339() -> None:
    body = orjson.dumps(
        {"error": {"type": "usage_limit_reached", "resets_at": "2030-01-01T00:00:00Z"}}
    )
    assert parse_error_body(body, NOW) == LimitHit("usage_limit_reached", 1893456000)
