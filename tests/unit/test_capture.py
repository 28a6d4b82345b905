"""Tests for the pure parsers in codexgate.capture: rate-limit headers, windows, identities."""

from __future__ import annotations

import hashlib
import math
import random

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from codexgate.capture.headers import (
    IdentityCache,
    RateLimitHeaderParser,
    classify_window,
    header_text,
    identity_from_token,
    parse_rate_limit_headers,
)
from codexgate.core.models import Credits, Identity, LimitReport, Slot, UsageReport, Window
from tests.helpers.paths import DATA
from tests.helpers.tokens import claims_of, make_jwt

NOW = 1_800_000_000.0


def load_headers(name: str) -> dict[str, str]:
    """The response headers of one sample in tests/data."""
    sample = orjson.loads((DATA / f"headers-{name}.json").read_bytes())
    headers: dict[str, str] = sample["headers"]
    return headers


def parse(headers: dict[str, str], now: float = NOW) -> UsageReport:
    """Parse headers that are known to carry a family."""
    report = parse_rate_limit_headers(headers, now)
    assert report is not None
    return report


def limit(report: UsageReport, limit_id: str = "codex") -> LimitReport:
    """The limit family `limit_id` of a report."""
    found = [item for item in report.limits if item.limit_id == limit_id]
    assert len(found) == 1, report.limits
    return found[0]


def window(report: UsageReport, label: str, limit_id: str = "codex") -> Window:
    """The window labelled `label` of one family."""
    found = [item for item in limit(report, limit_id).windows if item.label == label]
    assert len(found) == 1, limit(report, limit_id).windows
    return found[0]


def labels(report: UsageReport, limit_id: str = "codex") -> list[str]:
    """The labels of one family's reported windows, in slot order."""
    return [item.label for item in limit(report, limit_id).windows]


# --- samples ----------------------------------------------------------------------------------


def test_plus_200_has_5h_and_7d_plan_and_credits() -> None:
    report = parse(load_headers("plus-200"))
    assert [item.limit_id for item in report.limits] == ["codex"]
    assert window(report, "5h") == Window("primary", "5h", "length", 46.0, 300, 1893456000)
    assert window(report, "7d") == Window("secondary", "7d", "length", 15.0, 10080, 1893955000)
    assert limit(report).over_secondary_limit_percent == 0.0
    assert limit(report).limit_name is None
    assert report.plan_type == "plus"
    assert report.active_limit == "codex"
    assert report.credits is not None
    assert report.credits.has_credits is False
    assert report.credits.unlimited is False
    assert report.credits.balance == "0"


def test_weekly_only_is_a_7d_window_in_the_primary_slot() -> None:
    report = parse(load_headers("weekly-only"))
    assert labels(report) == ["7d"]
    assert window(report, "7d") == Window("primary", "7d", "length", 31.5, 10080, 1893800000)
    assert all(item.label != "5h" for item in limit(report).windows)
    assert report.credits is not None
    assert report.credits.has_credits is True
    assert report.credits.balance == "120.50"


def test_free_429_reports_only_the_weekly_window() -> None:
    report = parse(load_headers("free-429"))
    assert labels(report) == ["7d"]
    weekly = window(report, "7d")
    assert weekly.slot == "primary"
    assert weekly.used_percent == 100.0
    assert weekly.window_minutes == 10080
    assert weekly.resets_at == 1773860656
    assert all(item.slot != "secondary" for item in limit(report).windows)
    assert report.plan_type == "free"
    assert report.active_limit == "codex"
    assert report.promo_message == "Upgrade to Plus to keep using Codex."
    assert report.credits is not None
    assert report.credits.balance is None
    assert report.credits.has_credits is False


def test_plus_429_premium_keeps_active_limit_raw() -> None:
    report = parse(load_headers("plus-429-premium"))
    assert report.active_limit == "premium"
    assert [item.limit_id for item in report.limits] == ["codex"]
    assert window(report, "5h").used_percent == 100.0
    assert window(report, "5h").resets_at == 1777936568
    assert window(report, "7d").used_percent == 80.0


def test_extra_family_is_its_own_limit() -> None:
    report = parse(load_headers("extra-family"))
    assert [item.limit_id for item in report.limits] == ["codex", "codex_bengalfox"]
    assert limit(report, "codex").limit_name is None
    assert limit(report, "codex_bengalfox").limit_name == "gpt-5.2-codex-sonic"
    assert labels(report, "codex") == ["5h", "7d"]
    sonic = window(report, "5h", "codex_bengalfox")
    assert sonic == Window("primary", "5h", "length", 3.0, 300, 1893456100)
    assert window(report, "5h").used_percent == 12.5


def test_malformed_values_skip_only_their_field() -> None:
    report = parse(load_headers("malformed"))
    primary, secondary = limit(report).windows
    assert primary == Window("primary", "5h", "length", None, 300, None)
    assert secondary == Window("secondary", "7d", "length", None, 10080, None)
    assert report.credits is not None
    assert report.credits.has_credits is None
    assert report.credits.unlimited is None
    assert report.credits.balance is None


# --- field rules ------------------------------------------------------------------------------


def test_reset_after_seconds_only_when_reset_at_is_missing() -> None:
    both = {
        "x-codex-primary-used-percent": "10",
        "x-codex-primary-reset-at": "1800009999",
        "x-codex-primary-reset-after-seconds": "100",
    }
    assert limit(parse(both)).windows[0].resets_at == 1800009999

    only_after = {
        "x-codex-primary-used-percent": "10",
        "x-codex-primary-reset-after-seconds": "100.6",
    }
    assert limit(parse(only_after, now=NOW + 0.2)).windows[0].resets_at == 1800000101

    bad_at = {
        "x-codex-primary-used-percent": "10",
        "x-codex-primary-reset-at": "",
        "x-codex-primary-reset-after-seconds": "60",
    }
    assert limit(parse(bad_at)).windows[0].resets_at == 1800000060

    junk_after = {
        "x-codex-primary-used-percent": "10",
        "x-codex-primary-reset-after-seconds": "-60",
    }
    assert limit(parse(junk_after)).windows[0].resets_at is None


def test_header_names_are_case_insensitive() -> None:
    upper = {name.upper(): value for name, value in load_headers("plus-200").items()}
    mixed = {name.title(): value for name, value in load_headers("plus-200").items()}
    expected = parse(load_headers("plus-200"))
    assert parse(upper) == expected
    assert parse(mixed) == expected


def test_multidict_proxy_is_accepted() -> None:
    headers = CIMultiDictProxy(CIMultiDict(load_headers("extra-family")))
    assert parse_rate_limit_headers(headers, NOW) == parse(load_headers("extra-family"))


def test_repeated_header_first_value_counts() -> None:
    headers = CIMultiDict([("x-codex-primary-used-percent", "5")])
    headers.add("X-Codex-Primary-Used-Percent", "99")
    report = parse_rate_limit_headers(CIMultiDictProxy(headers), NOW)
    assert report is not None
    assert limit(report).windows[0].used_percent == 5.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": "text/event-stream", "x-oai-request-id": "req_1"},
        # codex-wide fields that say nothing once read
        {"x-codex-plan-type": " ", "x-codex-promo-message": ""},
        {"x-codex-primary-over-secondary-limit-percent": "10"},
        {"x-codex-primary-window-minutes": "300", "x-codex-primary-reset-at": "1893456000"},
        {"x--primary-used-percent": "10", "x-primary-used-percent": "10"},
    ],
)
def test_no_family_gives_none(headers: dict[str, str]) -> None:
    assert parse_rate_limit_headers(headers, NOW) is None


def test_a_name_with_a_line_end_inside_starts_no_family() -> None:
    # Wrapped error frames bring their headers as JSON, whose names may hold anything.
    assert parse_rate_limit_headers({"a\nx-fake-primary-used-percent": "9"}, NOW) is None
    report = parse({"x-codex-primary-used-percent": "1", "b\nx-fake-primary-used-percent": "9"})
    assert [item.limit_id for item in report.limits] == ["codex"]


@pytest.mark.parametrize("name", ["plus-200", "extra-family", "free-429", "malformed"])
def test_the_memo_gives_what_the_parser_gives(name: str) -> None:
    parser = RateLimitHeaderParser()
    headers = CIMultiDictProxy(CIMultiDict(load_headers(name)))
    first = parser.parse(headers, NOW)
    assert first == parse_rate_limit_headers(headers, NOW)
    assert parser.parse(headers, NOW + 30) == first


def test_the_memo_never_keeps_a_reset_time_read_from_the_clock() -> None:
    parser = RateLimitHeaderParser()
    relative = {
        "x-codex-primary-used-percent": "10",
        "x-codex-primary-reset-after-seconds": "100",
    }
    first = parser.parse(relative, NOW)
    later = parser.parse(relative, NOW + 30)
    assert first is not None
    assert later is not None
    first_reset = limit(first).windows[0].resets_at
    assert first_reset is not None
    assert limit(later).windows[0].resets_at == first_reset + 30
    assert len(parser) == 0
    absolute = {**relative, "x-codex-primary-reset-at": "1800009999"}
    assert parser.parse(absolute, NOW) == parser.parse(absolute, NOW + 30)
    assert len(parser) == 1


def test_the_memo_is_bounded_and_a_changed_value_is_read_afresh() -> None:
    parser = RateLimitHeaderParser(maxsize=3)
    for used in range(10):
        headers = {"x-codex-primary-used-percent": str(used), "x-codex-primary-reset-at": "9"}
        report = parser.parse(headers, NOW)
        assert report is not None
        assert limit(report).windows[0].used_percent == used
        assert len(parser) <= 3


def test_only_used_percent_suffixes_start_families() -> None:
    headers = {
        "x-codex-primary-used-percent": "1",
        "x-codex-primary-over-secondary-limit-percent": "12.5",
        "x-codex-credits-has-credits": "1",
        "x-codex-credits-unlimited": "0",
        "x-codex-credits-balance": " 3.25 ",
        # the upstream client's own test: this prefix is the family "codex_secondary"
        "x-codex-secondary-primary-used-percent": "80",
        "x-codex-secondary-primary-window-minutes": "1440",
        # a family reported only through its secondary slot
        "x-zeta-secondary-used-percent": "7",
        "x-alpha-primary-used-percent": "2",
    }
    report = parse(headers)
    ids = [item.limit_id for item in report.limits]
    assert ids == ["codex", "alpha", "codex_secondary", "zeta"]
    assert limit(report).over_secondary_limit_percent == 12.5
    assert window(report, "daily", "codex_secondary").used_percent == 80.0
    assert limit(report, "zeta").windows == (Window("secondary", "7d", "slot", 7.0, None, None),)
    assert report.credits is not None
    assert report.credits.has_credits is True
    assert report.credits.unlimited is False
    assert report.credits.balance == "3.25"


def test_codex_comes_first_even_when_sent_last() -> None:
    headers = {
        "x-aaa-primary-used-percent": "1",
        "x-codex-primary-used-percent": "2",
    }
    assert [item.limit_id for item in parse(headers).limits] == ["codex", "aaa"]


def test_codex_wide_fields_only_from_codex_names() -> None:
    headers = {
        "x-other-primary-used-percent": "1",
        "x-other-plan-type": "pro",
        "x-other-credits-balance": "5",
        "x-codex-rate-limit-reached-type": "  primary  ",
        "x-codex-promo-message": "   ",
    }
    report = parse(headers)
    assert [item.limit_id for item in report.limits] == ["other"]
    assert report.plan_type is None
    assert report.credits is None
    assert report.rate_limit_reached_type == "primary"
    assert report.promo_message is None


def test_slot_fallback_without_window_minutes() -> None:
    headers = {
        "x-codex-primary-used-percent": "20",
        "x-codex-primary-reset-at": "1893456000",
        "x-codex-secondary-used-percent": "30",
        "x-codex-secondary-window-minutes": "0",
    }
    primary, secondary = limit(parse(headers)).windows
    assert primary == Window("primary", "5h", "slot", 20.0, None, 1893456000)
    assert secondary == Window("secondary", "7d", "slot", 30.0, None, None)


@pytest.mark.parametrize(
    ("raw", "minutes"),
    [
        ("300", 300),
        ("300.0", 300),
        (" 10080 ", 10080),
        ("1e3", 1000),
        ("300.5", None),
        ("-300", None),
        ("five", None),
        ("", None),
        ("inf", None),
        ("nan", None),
        ("99999999999999999999999", None),  # beyond 64 bits
        ("0", None),  # no length
    ],
)
def test_window_minutes_parsing(raw: str, minutes: int | None) -> None:
    headers = {"x-codex-primary-used-percent": "1", "x-codex-primary-window-minutes": raw}
    assert limit(parse(headers)).windows[0].window_minutes == minutes


@pytest.mark.parametrize(
    ("raw", "used"),
    [("46", 46.0), ("12.5", 12.5), ("-0", 0.0), ("150", 150.0), ("-1", None), ("NaN", None)],
)
def test_used_percent_parsing(raw: str, used: float | None) -> None:
    headers = {"x-codex-primary-used-percent": raw, "x-codex-primary-window-minutes": "300"}
    got = limit(parse(headers)).windows[0].used_percent
    assert got == used
    if got is not None:
        assert math.copysign(1.0, got) == 1.0


@pytest.mark.parametrize(
    ("raw", "resets_at"),
    [("1893456000", 1893456000), ("1893456000.0", 1893456000), ("0", None), ("-5", None)],
)
def test_reset_at_parsing(raw: str, resets_at: int | None) -> None:
    headers = {"x-codex-primary-used-percent": "1", "x-codex-primary-reset-at": raw}
    assert limit(parse(headers)).windows[0].resets_at == resets_at


def test_not_reported_slot_rules() -> None:
    zero = {
        "x-codex-primary-used-percent": "0",
        "x-codex-primary-window-minutes": "0",
        "x-codex-primary-reset-at": "",
        "x-codex-primary-reset-after-seconds": "0",
    }
    assert limit(parse(zero)).windows == ()
    unknown_used = {**zero, "x-codex-primary-used-percent": "junk"}
    assert limit(parse(unknown_used)).windows == ()
    # 0% used is still a report when the window has a reset time
    with_reset = {**zero, "x-codex-primary-reset-at": "1893456000"}
    assert limit(parse(with_reset)).windows == (
        Window("primary", "5h", "slot", 0.0, None, 1893456000),
    )
    with_after = {**zero, "x-codex-primary-reset-after-seconds": "30"}
    assert limit(parse(with_after)).windows[0].resets_at == 1800000030


@pytest.mark.parametrize(
    ("raw", "value"),
    [("True", True), ("FALSE", False), ("1", True), ("0", False), ("yes", None), ("", None)],
)
def test_credit_booleans(raw: str, value: bool | None) -> None:
    headers = {"x-codex-primary-used-percent": "1", "x-codex-credits-unlimited": raw}
    credits = parse(headers).credits
    assert credits is not None
    assert credits.unlimited is value
    assert credits.has_credits is None
    assert credits.balance is None


@pytest.mark.parametrize(
    ("raw", "balance"),
    [
        ("0", "0"),
        (" 120.50 ", "120.50"),
        ("-3", "-3"),
        ("1e400", "1e400"),
        ("NaN", None),
        ("Infinity", None),
        ("12,5", None),
        ("", None),
    ],
)
def test_credit_balance(raw: str, balance: str | None) -> None:
    headers = {"x-codex-primary-used-percent": "1", "x-codex-credits-balance": raw}
    credits = parse(headers).credits
    assert credits is not None
    assert credits.balance == balance


@pytest.mark.parametrize(
    ("minutes", "slot", "expected"),
    [
        (300, "primary", ("5h", "length")),
        (285, "secondary", ("5h", "length")),
        (315, "primary", ("5h", "length")),
        (284, "primary", ("284m", "length")),
        (316, "primary", ("316m", "length")),
        (1440, "secondary", ("daily", "length")),
        (10080, "primary", ("7d", "length")),
        (9576, "primary", ("7d", "length")),
        (10584, "primary", ("7d", "length")),
        (10585, "primary", ("10585m", "length")),
        (43200, "primary", ("monthly", "length")),
        (60, "secondary", ("60m", "length")),
        (None, "primary", ("5h", "slot")),
        (None, "secondary", ("7d", "slot")),
        (0, "primary", ("5h", "slot")),
    ],
)
def test_classify_window(minutes: int | None, slot: Slot, expected: tuple[str, str]) -> None:
    assert classify_window(minutes, slot) == expected


# --- fuzz -------------------------------------------------------------------------------------

_FUZZ_NAMES = sorted(
    {
        *(name for sample in DATA.glob("headers-*.json") for name in load_headers(sample.stem[8:])),
        "x-codex-primary-reset-after-seconds",
        "x-codex-secondary-reset-after-seconds",
        "x-codex-rate-limit-reached-type",
        "x-codex-limit-name",
        "x-codex-bengalfox-secondary-used-percent",
        "x-codex-bengalfox-secondary-window-minutes",
        "x-codex-bengalfox-secondary-reset-at",
        "x-codex-bengalfox-secondary-reset-after-seconds",
        "x-codex-bengalfox-primary-reset-after-seconds",
        "x-codex-bengalfox-primary-over-secondary-limit-percent",
    }
)
_FUZZ_ATOMS = [
    "",
    " ",
    "0",
    "-0",
    "1",
    "-1",
    "300",
    "300.0",
    "300.5",
    "1e309",
    "-1e309",
    "1e-320",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "True",
    "false",
    "0x1F",
    "1_000",
    "9" * 30,
    "9" * 5000,
    "٣٠٠",
    "\x00",
    "\ud800",
    "é",
    ".",
    "e",
    "+",
    "--",
    "1.7976931348623157e308",
]


def _junk(rng: random.Random) -> str:
    """A random header value: a few atoms or random characters glued together."""
    if rng.random() < 0.3:
        return "".join(rng.choice("0123456789.-+eE_ xnaif") for _ in range(rng.randint(0, 12)))
    return "".join(rng.choice(_FUZZ_ATOMS) for _ in range(rng.randint(1, 3)))


def test_fuzz_junk_values_never_raise() -> None:
    rng = random.Random(20260509)
    for _ in range(3000):
        names = rng.sample(_FUZZ_NAMES, rng.randint(1, len(_FUZZ_NAMES)))
        headers = {(name.upper() if rng.random() < 0.2 else name): _junk(rng) for name in names}
        now = rng.choice([NOW, 0.0, 1e18])
        report = parse_rate_limit_headers(headers, now)
        if report is None:
            continue
        # A report has a family, or one of the codex-wide fields.
        assert report.limits or any(
            field is not None
            for field in (
                report.plan_type,
                report.active_limit,
                report.credits,
                report.rate_limit_reached_type,
                report.promo_message,
            )
        )
        for family in report.limits:
            over = family.over_secondary_limit_percent
            assert over is None or (math.isfinite(over) and over >= 0)
            for item in family.windows:
                used = item.used_percent
                assert used is None or (math.isfinite(used) and used >= 0)
                assert item.window_minutes is None or 0 < item.window_minutes < 2**63
                assert item.resets_at is None or 0 < item.resets_at < 2**63
                assert item.label


def test_fuzz_authorization_never_raises() -> None:
    rng = random.Random(7)
    pieces = ["Bearer ", "bearer ", "Basic ", ".", "..", "eyJ", "=", "\ud800", "é", "{}", "%%"]
    for _ in range(2000):
        authorization = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        identity = identity_from_token(authorization, rng.choice([None, "", "ws", "\ud800"]))
        assert identity is None or identity.account_key.startswith(("seat:", "token:"))


# --- identity ---------------------------------------------------------------------------------


def identity_of(name: str, account_header: str | None = None) -> Identity:
    """The identity of a bearer JWT built from a named sample."""
    identity = identity_from_token(f"Bearer {make_jwt(claims_of(name))}", account_header)
    assert identity is not None
    return identity


def test_seats_of_one_workspace_are_different_accounts() -> None:
    seat_a, seat_b = identity_of("seat_a"), identity_of("seat_b")
    assert seat_a.account_key == "seat:acct-team-1:user-AAAA"
    assert seat_b.account_key == "seat:acct-team-1:user-BBBB"
    assert seat_a.chatgpt_account_id == seat_b.chatgpt_account_id == "acct-team-1"
    assert seat_a.email == "alice@example.com"
    assert seat_a.plan_type == "team"
    assert seat_a.chatgpt_user_id == "user-AAAA"


def test_refreshed_token_is_the_same_account() -> None:
    seat_a, refreshed = identity_of("seat_a"), identity_of("seat_a_refreshed")
    assert refreshed.account_key == seat_a.account_key
    assert refreshed.token_fingerprint != seat_a.token_fingerprint


def test_personal_account_differs() -> None:
    personal = identity_of("personal")
    assert personal.account_key == "seat:user-CCCC:user-CCCC"
    assert personal.account_key not in {identity_of(n).account_key for n in ("seat_a", "seat_b")}
    assert personal.plan_type == "plus"


def test_fingerprint_is_sha256_of_the_token() -> None:
    token = make_jwt(claims_of("seat_a"))
    identity = identity_from_token(f"bEaReR   {token}  ", None)
    assert identity is not None
    assert identity.token_fingerprint == hashlib.sha256(token.encode()).hexdigest()


def test_jwts_sharing_their_header_part_differ_by_seat() -> None:
    token_a, token_b = make_jwt(claims_of("seat_a")), make_jwt(claims_of("seat_b"))
    assert token_a.split(".")[0] == token_b.split(".")[0]
    assert identity_of("seat_a").account_key != identity_of("seat_b").account_key


def test_opaque_tokens_sharing_a_prefix_are_different_accounts() -> None:
    prefix = "sk-opaque-0123456789"
    assert len(prefix) == 20
    first = identity_from_token(f"Bearer {prefix}AAAA", None)
    second = identity_from_token(f"Bearer {prefix}BBBB", None)
    assert first is not None
    assert second is not None
    assert first.account_key != second.account_key
    assert first.account_key == f"token:{first.token_fingerprint}"
    assert first.chatgpt_user_id is None


@pytest.mark.parametrize(
    "token",
    [
        "abc.def.ghi",
        "a.b",
        "e30.e30.e30",  # "{}" everywhere: a JSON object without ids
        "x.W10.y",  # payload "[]": not an object
        "x.é.y",
        "x.a.y",  # a length that no base64 has
        "x.!!!!.y",
    ],
)
def test_undecodable_or_id_less_token_gives_token_key(token: str) -> None:
    identity = identity_from_token(f"Bearer {token}", None)
    assert identity is not None
    assert identity.account_key == f"token:{hashlib.sha256(token.encode()).hexdigest()}"


def test_jwt_without_user_id_falls_back_to_sub_then_token() -> None:
    claims = claims_of("seat_a")
    auth = claims["https://api.openai.com/auth"]
    del auth["chatgpt_user_id"]
    by_user_id = identity_from_token(f"Bearer {make_jwt(claims)}", None)
    assert by_user_id is not None
    assert by_user_id.account_key == identity_of("seat_a").account_key
    del auth["user_id"]
    by_sub = identity_from_token(f"Bearer {make_jwt(claims)}", None)
    assert by_sub is not None
    assert by_sub.account_key == "seat:acct-team-1:auth0|aaaa"
    del claims["sub"]
    no_user = identity_from_token(f"Bearer {make_jwt(claims)}", None)
    assert no_user is not None
    assert no_user.account_key.startswith("token:")
    assert no_user.email == "alice@example.com"


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwdw=="])
def test_no_bearer_token_gives_none(authorization: str | None) -> None:
    assert identity_from_token(authorization, "acct-team-1") is None


def test_account_id_header_overrides_the_claim() -> None:
    identity = identity_of("seat_a", "acct-other")
    assert identity.account_key == "seat:acct-other:user-AAAA"
    assert identity.chatgpt_account_id == "acct-other"
    assert identity_of("seat_a", "  ").account_key == "seat:acct-team-1:user-AAAA"


def test_identity_cache_returns_equal_results() -> None:
    cache = IdentityCache()
    authorization = f"Bearer {make_jwt(claims_of('seat_b'))}"
    first = cache.resolve(authorization, None)
    assert first == identity_from_token(authorization, None)
    assert cache.resolve(authorization, None) is first
    assert cache.resolve(authorization, "acct-x") != first
    assert cache.resolve(None, None) is None
    assert len(cache) == 2


def test_identity_cache_evicts_the_least_recently_used() -> None:
    cache = IdentityCache(maxsize=2)
    one, two, three = (f"Bearer opaque-{n}" for n in (1, 2, 3))
    first = cache.resolve(one, None)
    cache.resolve(two, None)
    assert cache.resolve(one, None) is first  # "one" is now the most recent
    cache.resolve(three, None)  # evicts "two"
    assert len(cache) == 2
    assert cache.resolve(one, None) is first
    again = cache.resolve(two, None)  # a miss: recomputed, evicts "three"
    assert again == identity_from_token(two, None)
    assert len(cache) == 2


def test_identity_cache_rejects_a_zero_size() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        IdentityCache(maxsize=0)


def test_header_text_is_clean_capped_and_valid_unicode() -> None:
    assert header_text(" \x1b[31mplus\u202e\x07\u200b ") == "[31mplus"
    assert header_text("\x1b\u2066 ") is None
    assert header_text("p" * 1000) == "p" * 256
    # Bytes that were not UTF-8 (aiohttp's surrogateescape) become U+FFFD, as before.
    assert header_text("pro\udcff") == "pro\ufffd"
    assert header_text("caf\udcc3\udca9") == "caf\u00e9"


def test_claims_are_stored_clean_and_capped() -> None:
    claims = claims_of("seat_a")
    claims["https://api.openai.com/auth"] = {
        "chatgpt_account_id": "acct\u202e-1",
        "chatgpt_user_id": "user-\x1b]0;x\x07A",
        "chatgpt_plan_type": "\u2067team\n" + "t" * 500,
    }
    claims["https://api.openai.com/profile"] = {"email": "\x1b[2Jeve@example.com\u200b"}
    identity = identity_from_token(f"Bearer {make_jwt(claims)}", "ws\x1b[1m")
    assert identity is not None
    assert identity.account_key == "seat:ws[1m:user-]0;xA"
    assert identity.email == "[2Jeve@example.com"
    assert identity.plan_type == ("team" + "t" * 500)[:256]
    blank = claims_of("seat_a")
    blank["https://api.openai.com/profile"] = {"email": "\u202e\x1b "}
    nothing_left = identity_from_token(f"Bearer {make_jwt(blank)}", None)
    assert nothing_left is not None
    assert nothing_left.email is None


# --- headers without a window (a bare 429), as the Codex CLI reads them -----------------------


def test_a_bare_429_names_its_limit_and_keeps_every_codex_wide_field() -> None:
    # codex-api's map_api_error tests: no used-percent header at all.
    report = parse(
        {
            "x-codex-active-limit": "codex_other",
            "x-codex-other-limit-name": "gpt-5.2-codex-sonic",
            "x-codex-credits-has-credits": "true",
            "x-codex-credits-unlimited": "false",
            "x-codex-credits-balance": "12.5",
            "x-codex-plan-type": "pro",
            "x-codex-rate-limit-reached-type": "workspace_member_usage_limit_reached",
            "x-codex-promo-message": "Upgrade for more",
        }
    )
    assert report.limits == (LimitReport("codex_other", "gpt-5.2-codex-sonic", ()),)
    assert report.active_limit == "codex_other"
    assert report.credits == Credits(True, False, "12.5")
    assert report.plan_type == "pro"
    assert report.rate_limit_reached_type == "workspace_member_usage_limit_reached"
    assert report.promo_message == "Upgrade for more"


def test_the_active_limit_without_headers_of_its_own_adds_no_family() -> None:
    # Recording adds its windowless row when a quota error is filed under it.
    report = parse({"x-codex-active-limit": "codex-other", "x-codex-plan-type": "plus"})
    assert (report.limits, report.active_limit) == ((), "codex-other")


def test_the_active_limit_with_only_its_name_is_a_windowless_family() -> None:
    report = parse(
        {
            "x-codex-primary-used-percent": "20",
            "x-codex-active-limit": "codex_other",
            "x-codex-other-limit-name": "gpt-5.2-codex-sonic",
        }
    )
    assert [limit.limit_id for limit in report.limits] == ["codex", "codex_other"]
    assert report.limits[1] == LimitReport("codex_other", "gpt-5.2-codex-sonic", ())


def test_no_rate_limit_header_is_no_report() -> None:
    assert parse_rate_limit_headers({"content-type": "text/event-stream"}, NOW) is None
    assert parse_rate_limit_headers({"x-codex-turn-state": "abc"}, NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        "unknown",
        " Unknown ",
        "\udcff",  # the byte 0xff, as aiohttp decodes a header that is not UTF-8
        "two words",
        "<script>",
    ],
)
def test_an_unknown_or_unreadable_reached_type_header_is_none(value: str) -> None:
    report = parse({"x-codex-primary-used-percent": "5", "x-codex-rate-limit-reached-type": value})
    assert report.rate_limit_reached_type is None


def test_a_reset_at_header_may_be_rfc3339() -> None:
    report = parse(
        {
            "x-codex-primary-used-percent": "5",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": "2030-01-01T00:00:00Z",
            "x-codex-primary-reset-after-seconds": "7",
        }
    )
    [window] = report.limits[0].windows
    assert window.resets_at == 1893456000


def test_the_memo_gives_bare_reports_like_the_parser() -> None:
    parser = RateLimitHeaderParser()
    headers = {"x-codex-active-limit": "codex_other", "x-codex-plan-type": "pro"}
    first = parser.parse(headers, NOW)
    assert first == parse_rate_limit_headers(headers, NOW)
    assert parser.parse(dict(headers), NOW) is first


def test_a_reached_type_not_known_yet_is_kept_as_sent() -> None:
    report = parse(
        {
            "x-codex-primary-used-percent": "5",
            "x-codex-rate-limit-reached-type": "future_rate_limit_reached_type",
        }
    )
    assert report.rate_limit_reached_type == "future_rate_limit_reached_type"


@pytest.mark.parametrize("active", ["codex_other", "codex-other", " Codex-Other "])
def test_the_active_limit_is_one_family_however_it_is_spelt(active: str) -> None:
    bare = parse({"x-codex-active-limit": active, "x-codex-other-limit-name": "sonic"})
    assert bare.limits == (LimitReport("codex_other", "sonic", ()),)
    windowed = parse({"x-codex-active-limit": active, "x-codex-other-primary-used-percent": "5"})
    assert [limit.limit_id for limit in windowed.limits] == ["codex_other"]
    assert windowed.active_limit == active.strip()
