"""Limit ids from the upstream: [a-z0-9_]{1,64} or nothing, from headers, bodies and events."""

from __future__ import annotations

import orjson
import pytest

from codexgate.capture.bodies import parse_usage_body
from codexgate.capture.headers import LIMIT_ID, parse_rate_limit_headers
from codexgate.capture.scan import RateLimitsEvent, scan_ws_frame
from codexgate.core.limits import limit_id_of

NOW = 1_800_000_000.0


def _family(prefix: str, used: str = "7") -> dict[str, str]:
    return {f"{prefix}-primary-used-percent": used, f"{prefix}-primary-window-minutes": "300"}


def _header_ids(headers: dict[str, str]) -> list[str]:
    report = parse_rate_limit_headers(headers, NOW)
    return [] if report is None else [limit.limit_id for limit in report.limits]


def test_header_families_of_codex_shape_are_kept() -> None:
    headers = {
        **_family("x-codex", "12"),
        **_family("X-Codex-Bengalfox"),
        **_family("x-codex_other-2"),
    }
    assert _header_ids(headers) == ["codex", "codex_bengalfox", "codex_other_2"]


@pytest.mark.parametrize(
    "prefix",
    [
        "x-=cmd|'calc'!a0",  # would start a formula in a CSV export
        "x-+sum(a1)",
        "x-@sum(a1)",
        "x-codex.beta",
        "x-codex~x",
        "x-" + "a" * 65,  # longer than any id codexgate keeps
        "x-",
        "x-Ä",
    ],
)
def test_other_header_families_are_ignored(prefix: str) -> None:
    assert _header_ids({**_family("x-codex", "12"), **_family(prefix)}) == ["codex"]


@pytest.mark.parametrize(
    ("raw", "limit_id"),
    [
        ("codex_bengalfox", "codex_bengalfox"),
        ("codex-other", "codex_other"),
        ("GPT 5.2 Sonic", "gpt_5_2_sonic"),
        ('=HYPERLINK("http://evil/")', "hyperlink_http_evil"),
        ("+1", "1"),
        ("-@x", "x"),
        ("\x1b]0;x\x07", "0_x"),
        ("a" * 64, "a" * 64),
        ("a" * 65, None),
        ("=+-@", None),
        ("", None),
        (5, None),
    ],
)
def test_body_ids_are_normalised_or_dropped(raw: object, limit_id: str | None) -> None:
    assert limit_id_of(raw) == limit_id
    if limit_id is not None:
        assert LIMIT_ID.fullmatch(limit_id)


def test_usage_body_drops_an_additional_limit_without_a_usable_id() -> None:
    body = {
        "plan_type": "pro",
        "rate_limit": {"primary_window": {"used_percent": 5, "limit_window_seconds": 18000}},
        "additional_rate_limits": [
            {"metered_feature": "=" * 3, "limit_name": "@" * 4, "rate_limit": None},
            {"metered_feature": "x" * 80, "rate_limit": None},
            {"metered_feature": "=cmd|calc", "rate_limit": None},
        ],
    }
    report = parse_usage_body(orjson.dumps(body), NOW)
    assert report is not None
    assert [limit.limit_id for limit in report.limits] == ["codex", "cmd_calc"]


def test_stream_event_ids_follow_the_same_rule() -> None:
    frame = {
        "type": "codex.rate_limits",
        "limit_id": "=1+2",
        "rate_limits": {"primary": {"used_percent": 3, "window_minutes": 300}},
    }
    event = scan_ws_frame(orjson.dumps(frame).decode(), NOW)
    assert isinstance(event, RateLimitsEvent)
    assert [limit.limit_id for limit in event.report.limits] == ["1_2"]
    frame["limit_id"] = "@@@"
    event = scan_ws_frame(orjson.dumps(frame).decode(), NOW)
    assert isinstance(event, RateLimitsEvent)
    assert [limit.limit_id for limit in event.report.limits] == ["codex"]
