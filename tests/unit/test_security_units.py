"""The pure parts of the admin guards: sessions over a real store, the failure throttle, Host
names and origins, and the admin token's strength."""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from yarl import URL

from codexgate.config import Config, ConfigError, from_argv
from codexgate.security import (
    FailureThrottle,
    Sessions,
    host_allowed,
    host_name,
    known_hosts,
    new_admin_token,
    origin_of,
)
from codexgate.storage.sqlite.store import Store


class Clock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store."""
    opened = await Store.open(tmp_path / "codexgate.db")
    yield opened
    await opened.close()


# -- sessions ---------------------------------------------------------------------------------


async def test_a_session_is_valid_until_it_expires_or_ends(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, max_age=100, clock=clock)
    value = await sessions.create()
    assert len(value) == 43
    assert await sessions.valid(value)
    assert not await sessions.valid(value[:-1] + ("A" if value[-1] != "A" else "B"))
    assert not await sessions.valid(value + "x")
    assert not await sessions.valid("\udcff" * 43)
    clock.now += 99
    assert await sessions.valid(value)
    clock.now += 1
    assert not await sessions.valid(value)
    other = await sessions.create()
    assert await sessions.end(other)
    assert not await sessions.valid(other)
    assert not await sessions.end(other)


async def test_a_sign_out_elsewhere_reaches_this_instance_within_the_recheck(
    store: Store,
) -> None:
    clock = Clock()
    here = Sessions(store, recheck_seconds=30, clock=clock)
    there = Sessions(store, recheck_seconds=30, clock=clock)  # another process, same database
    value = await here.create()
    assert await there.valid(value)
    assert await here.end(value)
    assert not await here.valid(value)  # at once where it was ended
    assert await there.valid(value)  # the other one's cache still holds it...
    clock.now += 30
    assert not await there.valid(value)  # ...for the recheck interval at most
    values = [await here.create() for _ in range(3)]
    assert await there.end_all() == 3
    clock.now += 30
    for value in values:
        assert not await here.valid(value)


async def test_last_used_is_written_at_most_once_a_minute(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    value = await sessions.create()
    row = await store.session(hashlib.sha256(value.encode()).hexdigest())
    assert row is not None
    created = row.created_at
    clock.now += 59
    assert await sessions.valid(value)
    row = await store.session(row.id_sha256)
    assert row is not None
    assert row.last_used_at == created
    clock.now += 1
    assert await sessions.valid(value)
    row = await store.session(row.id_sha256)
    assert row is not None
    assert row.last_used_at == created + 60


# -- the failure throttle --------------------------------------------------------------------------


def test_five_failures_in_a_minute_block_with_a_growing_back_off() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock)
    for _ in range(4):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 15
    assert throttle.retry_after("192.0.2.2") is None  # per address
    waits = []
    for _ in range(6):
        clock.now += 400  # past the block, but not quiet for long enough to start over
        for _ in range(5):
            throttle.failed("192.0.2.1")
        waits.append(throttle.retry_after("192.0.2.1"))
    assert waits == [30, 60, 120, 240, 300, 300]
    throttle.succeeded("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None


def test_failures_spread_over_minutes_never_block() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock)
    for _ in range(20):
        throttle.failed("192.0.2.1")
        clock.now += 16
    assert throttle.retry_after("192.0.2.1") is None


def test_the_table_of_addresses_is_bounded() -> None:
    throttle = FailureThrottle(capacity=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100


def test_ipv6_addresses_count_by_their_64() -> None:
    throttle = FailureThrottle()
    for n in range(5):
        throttle.failed(f"2001:db8:1:2::{n + 1}")
    assert throttle.retry_after("2001:db8:1:2:ffff::1") is not None
    assert throttle.retry_after("2001:db8:1:3::1") is None
    for _ in range(5):
        throttle.failed("::ffff:192.0.2.9")
    assert throttle.retry_after("192.0.2.9") is not None


def test_failures_are_logged_once_a_minute_with_the_count_and_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="codexgate.security")
    clock = Clock()
    throttle = FailureThrottle(limit=1000, clock=clock)
    for _ in range(30):
        throttle.failed("evil\x1b[2Jhost")
        clock.now += 1
    clock.now += 30
    throttle.failed("evil\x1b[2Jhost")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "refused 1 admin" in lines[0]
    assert "refused 30 admin" in lines[1]
    assert "\x1b" not in caplog.text
    assert "evil\\x1b[2Jhost" in lines[0]


# -- Host names and origins --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Example.COM:8787", "example.com"),
        ("example.com.", "example.com"),
        ("[::1]:8787", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_known_hosts_come_from_the_settings_and_the_machine() -> None:
    config = Config(host="gateway.lan", public_url=URL("https://Codex.Example.com:8443"))
    names = known_hosts(config)
    assert {"gateway.lan", "codex.example.com", socket.gethostname().lower()} <= names
    assert host_allowed("codex.example.com:8443", names)
    assert host_allowed("gateway.lan", names)
    assert host_allowed(None, names)  # HTTP/1.0 without a Host names nothing to rebind
    assert not host_allowed("", names)
    assert not host_allowed("codex.example.com.evil.example", names)


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("HTTPS://Codex.Example.com:443/path", "https://codex.example.com"),
        ("http://[::1]:8787", "http://[::1]:8787"),
        ("null", None),
        ("/relative", None),
        ("file:///etc/passwd", None),
        ("http://[bad", None),
    ],
)
def test_origin_of(text: str, origin: str | None) -> None:
    assert origin_of(text) == origin


# -- the admin token's strength ----------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "aaaaaaaaaaaaaaaa",
        "1234567890123456",
        "abcdefghijklmnopqrstuvwxyz",
        "9876543210987654",
        "abababababababab",
        "abcdabcdabcdabcd",  # four different characters
        "qwqwqwqwerererer",
    ],
)
@pytest.mark.parametrize("setting", ["--admin-token", "--metrics-token"])
def test_guessable_tokens_are_refused_without_repeating_them(setting: str, token: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_argv([setting, token], environ={})
    assert "too easy to guess" in str(caught.value)
    assert token not in str(caught.value)


@pytest.mark.parametrize(
    "token", ["a-long-admin-token-0123", "test-admin-token-0123456789", "kQ3v_9ZpL-2xWm7R"]
)
def test_varied_tokens_are_accepted(token: str) -> None:
    assert from_argv(["--admin-token", token], environ={}).admin_token == token


def test_a_generated_admin_token_never_looks_like_an_option() -> None:
    # One token_urlsafe in 64 starts with "-", which `codexgate status --token -Ab…` takes for
    # a flag; 2,000 draws would show one with near certainty.
    tokens = [new_admin_token() for _ in range(2000)]
    assert not [token for token in tokens if token.startswith("-")]
    assert all(len(token) == 43 for token in tokens)
