"""Settings from flags and environment, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from yarl import URL

from codexgate.config import SETTINGS, Config, ConfigError, from_argv


def test_defaults() -> None:
    config = from_argv([], environ={})
    assert config == Config()
    assert config.host == "127.0.0.1"
    assert config.port == 8787
    assert config.upstream == URL("https://chatgpt.com")
    assert config.db == Path("./data/codexgate.db")
    assert config.admin_prefix == "codexgate"
    assert config.upstream_proxy is None


def test_flags_beat_environment_which_beats_defaults() -> None:
    env = {"CODEXGATE_PORT": "9000", "CODEXGATE_HOST": "0.0.0.0", "CODEXGATE_LOG_LEVEL": "debug"}
    config = from_argv(["--port", "9100"], environ=env)
    assert config.port == 9100
    assert config.host == "0.0.0.0"
    assert config.log_level == "DEBUG"
    assert config.public_base == "http://127.0.0.1:9100"


def test_every_setting_can_come_from_the_environment() -> None:
    values = {
        "host": "::1",
        "port": "1234",
        "upstream": "http://127.0.0.1:9/",
        "db": "/tmp/x.db",
        "admin_prefix": "/api_secret/",
        "upstream_proxy": "http://proxy.internal:3128",
        "log_level": "warning",
        "connect_timeout": "3",
        "idle_timeout": "60",
        "capture": "off",
        "websocket": "refuse",
        "queue_size": "50",
        "history_heartbeat": "30",
        "shutdown_grace": "0",
        "admin_token": "a-long-admin-token-0123",
        "no_auth": "on",
        "warn_percent": "60",
        "critical_percent": "90.5",
    }
    assert {s.name for s in SETTINGS} == set(values)
    config = from_argv([], environ={f"CODEXGATE_{k.upper()}": v for k, v in values.items()})
    assert config.host == "::1"
    assert config.upstream == URL("http://127.0.0.1:9")
    assert config.admin_prefix == "api_secret"
    assert config.upstream_proxy == URL("http://proxy.internal:3128")
    assert config.capture is False
    assert config.websocket == "refuse"
    assert config.queue_size == 50
    assert config.admin_token == "a-long-admin-token-0123"
    assert config.no_auth is True
    assert (config.warn_percent, config.critical_percent) == (60.0, 90.5)
    assert config.public_base == "http://[::1]:1234"


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--port", "abc", "--port (CODEXGATE_PORT): must be a whole number"),
        ("--port", "70000", "must be 1-65535"),
        ("--upstream", "chatgpt.com", "--upstream (CODEXGATE_UPSTREAM)"),
        ("--upstream", "https://chatgpt.com/backend-api", "must be an origin"),
        ("--upstream", "https://user:pw@chatgpt.com", "no path, query or credentials"),
        ("--upstream-proxy", "socks5://p:1", "--upstream-proxy"),
        ("--admin-prefix", "a/b", "--admin-prefix"),
        ("--log-level", "loud", "must be one of"),
        ("--idle-timeout", "-1", "--idle-timeout"),
        ("--idle-timeout", "nan", "--idle-timeout"),
        ("--capture", "maybe", "must be on or off"),
        ("--websocket", "tunnel", "must be relay or refuse"),
        ("--queue-size", "0", "--queue-size"),
        ("--admin-token", "too-short", "--admin-token (CODEXGATE_ADMIN_TOKEN): must be at least"),
        ("--admin-token", "has spaces in the middle", "without spaces"),
        ("--no-auth", "maybe", "--no-auth (CODEXGATE_NO_AUTH): must be on or off"),
        ("--warn-percent", "0", "--warn-percent (CODEXGATE_WARN_PERCENT): must be at least"),
        ("--critical-percent", "101", "must be at most 100"),
        ("--warn-percent", "85", "needs 0 < --warn-percent < --critical-percent <= 100"),
    ],
)
def test_bad_values_name_the_setting(flag: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_argv([flag, value], environ={})
    assert words in str(caught.value)


def test_bad_value_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "codexgate", "--port", "eighty"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "codexgate: invalid --port (CODEXGATE_PORT): must be a whole number, got 'eighty'"
    ]


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for setting in SETTINGS:
        flag = "--" + setting.name.replace("_", "-")
        assert f"`{flag}`" in readme, flag
        assert f"CODEXGATE_{setting.name.upper()}" in readme, setting.name
