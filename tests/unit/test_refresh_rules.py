"""The idle refresh's rules (core/refresh.py), the token expiry it reads, and its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexgate.capture.headers import token_expiry
from codexgate.config import ConfigError, from_argv, load
from codexgate.core.refresh import (
    EXPIRY_MARGIN_SECONDS,
    JITTER,
    MAX_RETRY_DELAY_SECONDS,
    jitter_factor,
    next_refresh_at,
    retry_delay,
    stop_reason,
    usable,
    verdict,
)
from tests.helpers.tokens import claims_of, make_jwt

INTERVAL = 900.0
T0 = 1_900_000_000.0
FAR = T0 + 10 * 86_400.0  # a token that expires in ten days


def due(**overrides: float | None) -> float | None:
    arguments: dict[str, float | None] = {
        "newest_data_at": T0,
        "tracked_since": T0 - 3600.0,
        "last_attempt_at": None,
        "interval": INTERVAL,
        "factor": 1.0,
        "retry_at": None,
        "expires_at": FAR,
    }
    arguments.update(overrides)
    return next_refresh_at(**arguments)  # type: ignore[arg-type]


def test_the_jitter_spans_twenty_percent_either_way() -> None:
    assert jitter_factor(0.0) == pytest.approx(1 - JITTER)
    assert jitter_factor(0.5) == pytest.approx(1.0)
    assert jitter_factor(0.999999) == pytest.approx(1 + JITTER, abs=1e-5)
    assert JITTER == 0.2


def test_an_account_is_due_an_interval_after_its_newest_data() -> None:
    assert due() == T0 + INTERVAL
    assert due(factor=0.8) == T0 + 0.8 * INTERVAL


def test_traffic_that_keeps_the_data_fresh_keeps_moving_the_refresh_away() -> None:
    later = T0 + 600.0
    assert due(newest_data_at=later) == later + INTERVAL


def test_an_account_without_data_waits_from_when_its_token_was_kept() -> None:
    assert due(newest_data_at=None, tracked_since=T0) == T0 + INTERVAL


def test_an_attempt_starts_the_wait_again_even_before_its_data_is_written() -> None:
    assert due(last_attempt_at=T0 + 100.0) == T0 + 100.0 + INTERVAL


def test_a_retry_time_after_a_failure_wins_when_later() -> None:
    assert due(retry_at=T0 + 5000.0) == T0 + 5000.0
    assert due(retry_at=T0 + 10.0) == T0 + INTERVAL


def test_a_token_that_expires_before_the_refresh_is_never_used() -> None:
    assert due(expires_at=T0 + INTERVAL - 1.0) is None
    assert due(expires_at=T0 + INTERVAL + EXPIRY_MARGIN_SECONDS - 1.0) is None
    assert due(expires_at=None) is None  # an opaque token: its expiry is unknown


def test_usable_means_unexpired_by_at_least_the_margin() -> None:
    assert usable(T0 + EXPIRY_MARGIN_SECONDS + 1.0, T0)
    assert not usable(T0 + EXPIRY_MARGIN_SECONDS, T0)
    assert not usable(T0 - 1.0, T0)
    assert not usable(None, T0)


@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        (200, "ok", None),
        (401, "stop", "unauthorized"),
        (403, "stop", "forbidden"),
        (429, "stop", "rate_limited"),
        (404, "stop", "rejected"),
        (408, "retry", None),
        (500, "retry", None),
        (502, "retry", None),
        (503, "retry", None),
        (302, "retry", None),
    ],
)
def test_what_an_answer_means(status: int, expected: str, reason: str | None) -> None:
    assert verdict(status) == expected
    if reason is not None:
        assert stop_reason(status) == reason


def test_failures_back_off_doubling_up_to_a_cap() -> None:
    assert retry_delay(1, INTERVAL) == INTERVAL
    assert retry_delay(2, INTERVAL) == 2 * INTERVAL
    assert retry_delay(3, INTERVAL) == 4 * INTERVAL
    assert retry_delay(40, INTERVAL) == MAX_RETRY_DELAY_SECONDS


def test_the_expiry_is_the_jwt_exp_claim() -> None:
    claims = claims_of("seat_a")
    assert token_expiry(make_jwt(claims)) == float(claims["exp"])
    assert token_expiry(make_jwt({**claims, "exp": 1.9e9})) == 1.9e9


@pytest.mark.parametrize(
    "token",
    [
        "sk-opaque-token-without-dots",
        "a.b",
        "not.base64!.sig",
        make_jwt({"sub": "no-exp"}),
        make_jwt({"exp": True}),
        make_jwt({"exp": "1894264000"}),
        make_jwt({"exp": -5}),
        make_jwt({"exp": 1e300}),
    ],
)
def test_a_token_without_a_readable_expiry_has_none(token: str) -> None:
    assert token_expiry(token) is None


def test_the_refresh_is_off_by_default_and_waits_fifteen_minutes() -> None:
    config = from_argv([], {})
    assert config.refresh_idle is False
    assert config.refresh_after == 15.0


def test_the_refresh_settings_come_from_flags_environment_and_file(tmp_path: Path) -> None:
    assert from_argv(["--refresh-idle", "on", "--refresh-after", "5"], {}).refresh_idle
    env = {"CODEXGATE_REFRESH_IDLE": "on", "CODEXGATE_REFRESH_AFTER": "30"}
    config = load({}, env)
    assert (config.refresh_idle, config.refresh_after) == (True, 30.0)
    settings = tmp_path / "codexgate.toml"
    settings.write_text("refresh_idle = true\nrefresh_after = 20\n")
    config = from_argv(["--config", str(settings)], {})
    assert (config.refresh_idle, config.refresh_after) == (True, 20.0)


def test_the_interval_is_at_least_five_minutes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--refresh-after .* at least 5"):
        from_argv(["--refresh-after", "4.9"], {})
    settings = tmp_path / "codexgate.toml"
    settings.write_text("refresh_after = 1\n")
    with pytest.raises(ConfigError, match="at least 5"):
        from_argv(["--config", str(settings)], {})
    with pytest.raises(ConfigError, match="on or off"):
        from_argv(["--refresh-idle", "sometimes"], {})
