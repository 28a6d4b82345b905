"""Settings from flags, environment and file, and one clear line for every bad value."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from yarl import URL

from codexgate.config import (
    SETTINGS,
    AlertConfig,
    Config,
    ConfigError,
    Loaded,
    WebhookConfig,
    add_arguments,
    from_argv,
    mask_credentials,
    resolve,
)
from codexgate.storage.location import PostgresURL
from tests.helpers.paths import REPO


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
        "history_retention_days": "0",
        "request_retention_days": "7.5",
        "downsample_history": "on",
        "metrics_token": "a-long-metrics-token-0123",
        "public_url": "https://codex.example.com/",
        "websocket_max_message_mib": "8",
        "request_head_timeout": "2.5",
        "keepalive_timeout": "30",
        "max_connections": "100",
        "max_connections_per_address": "0",
        "max_feed_subscribers": "3",
        "max_accounts": "20",
        "refresh_idle": "on",
        "refresh_after": "7.5",
        "db_pool_size": "4",
        "db_connect_timeout": "2.5",
        "reuse_port": "on",
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
    assert config.reuse_port is True
    assert (config.warn_percent, config.critical_percent) == (60.0, 90.5)
    assert (config.history_retention_days, config.request_retention_days) == (0.0, 7.5)
    assert config.downsample_history is True
    assert config.metrics_token == "a-long-metrics-token-0123"
    assert "metrics-token-0123" not in repr(config)
    assert config.public_url == URL("https://codex.example.com")
    assert (config.websocket_max_message_mib, config.request_head_timeout) == (8, 2.5)
    assert config.keepalive_timeout == 30.0
    assert (config.max_connections, config.max_connections_per_address) == (100, 0)
    assert (config.max_feed_subscribers, config.max_accounts) == (3, 20)
    assert (config.refresh_idle, config.refresh_after) == (True, 7.5)
    assert (config.db_pool_size, config.db_connect_timeout) == (4, 2.5)
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
        ("--db", "mysql://h/db", "--db (CODEXGATE_DB): mysql:// is not a database codexgate"),
        ("--db", "postgresql://h:0/db", "--db (CODEXGATE_DB): a port must be a number"),
        ("--db-pool-size", "0", "--db-pool-size (CODEXGATE_DB_POOL_SIZE): must be at least 1"),
        ("--db-pool-size", "2.5", "--db-pool-size (CODEXGATE_DB_POOL_SIZE): must be a whole"),
        ("--db-connect-timeout", "0", "--db-connect-timeout (CODEXGATE_DB_CONNECT_TIMEOUT): must"),
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


def test_the_docs_document_every_setting() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        flag = "--" + setting.name.replace("_", "-")
        assert f"`{flag}`" in doc, flag
        assert f"CODEXGATE_{setting.name.upper()}" in doc, setting.name


# -- the settings file ------------------------------------------------------------------------


def from_file(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Loaded:
    """Resolve with --config pointing at a file holding text."""
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return resolve({"config": str(path)}, environ or {})


def file_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        from_file(tmp_path, text)
    return str(caught.value)


FILE_VALUES: dict[str, str] = {
    "host": '"::1"',
    "port": "1234",
    "upstream": '"http://127.0.0.1:9/"',
    "db": '"/tmp/x.db"',
    "admin_prefix": '"/api_secret/"',
    "upstream_proxy": '"http://proxy.internal:3128"',
    "log_level": '"warning"',
    "connect_timeout": "3",
    "idle_timeout": "60.5",
    "capture": "false",
    "websocket": '"refuse"',
    "queue_size": "50",
    "history_heartbeat": "30",
    "shutdown_grace": "0",
    "admin_token": '"a-long-admin-token-0123"',
    "no_auth": "true",
    "warn_percent": "60",
    "critical_percent": "90.5",
    "history_retention_days": "0",
    "request_retention_days": "7.5",
    "downsample_history": "true",
    "metrics_token": '"a-long-metrics-token-0123"',
    "public_url": '"https://codex.example.com"',
    "websocket_max_message_mib": "8",
    "request_head_timeout": "2.5",
    "keepalive_timeout": "30",
    "max_connections": "100",
    "max_connections_per_address": "0",
    "max_feed_subscribers": "3",
    "max_accounts": "20",
    "refresh_idle": "true",
    "refresh_after": "7.5",
    "db_pool_size": "4",
    "db_connect_timeout": "2.5",
    "reuse_port": "true",
}


def test_every_setting_can_come_from_the_file(tmp_path: Path) -> None:
    assert {s.name for s in SETTINGS} == set(FILE_VALUES)
    text = "".join(f"{key} = {value}\n" for key, value in FILE_VALUES.items())
    loaded = from_file(tmp_path, text)
    config = loaded.config
    assert config.config_file == tmp_path / "settings.toml"
    assert config.host == "::1"
    assert config.port == 1234
    assert config.upstream == URL("http://127.0.0.1:9")
    assert config.db == Path("/tmp/x.db")
    assert config.admin_prefix == "api_secret"
    assert config.log_level == "WARNING"
    assert (config.connect_timeout, config.idle_timeout) == (3.0, 60.5)
    assert config.capture is False
    assert config.websocket == "refuse"
    assert (config.queue_size, config.history_heartbeat, config.shutdown_grace) == (50, 30.0, 0.0)
    assert config.admin_token == "a-long-admin-token-0123"
    assert config.no_auth is True
    assert config.reuse_port is True
    assert (config.warn_percent, config.critical_percent) == (60.0, 90.5)
    assert (config.history_retention_days, config.request_retention_days) == (0.0, 7.5)
    assert config.downsample_history is True
    assert config.metrics_token == "a-long-metrics-token-0123"
    assert config.public_url == URL("https://codex.example.com")
    assert (config.websocket_max_message_mib, config.request_head_timeout) == (8, 2.5)
    assert config.keepalive_timeout == 30.0
    assert (config.max_connections, config.max_connections_per_address) == (100, 0)
    assert (config.max_feed_subscribers, config.max_accounts) == (3, 20)
    assert (config.refresh_idle, config.refresh_after) == (True, 7.5)
    assert (config.db_pool_size, config.db_connect_timeout) == (4, 2.5)
    assert {loaded.sources[s.name] for s in SETTINGS} == {"file"}
    assert (loaded.sources["config_file"], loaded.sources["alerts"]) == ("flag", "default")
    # The same values through the environment give the same config.
    env = {
        f"CODEXGATE_{key.upper()}": value.strip('"').replace("false", "off").replace("true", "on")
        for key, value in FILE_VALUES.items()
    }
    assert dataclasses.replace(from_argv([], environ=env), config_file=config.config_file) == config


def test_flags_beat_environment_beats_file_beats_default(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('port = 9001\nhost = "::1"\nlog_level = "debug"\nqueue_size = 7\n')
    env = {"CODEXGATE_CONFIG": str(path), "CODEXGATE_PORT": "9002", "CODEXGATE_HOST": "localhost"}
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    loaded = resolve(vars(parser.parse_args(["--port", "9003"])), env)
    config = loaded.config
    assert (config.port, config.host, config.log_level, config.queue_size) == (
        9003,
        "localhost",
        "DEBUG",
        7,
    )
    assert config.idle_timeout == 300.0
    sources = loaded.sources
    assert (sources["port"], sources["host"], sources["log_level"]) == ("flag", "env", "file")
    assert (sources["idle_timeout"], sources["config_file"], sources["alerts"]) == (
        "default",
        "env",
        "default",
    )
    # Without the flag the variable wins; without both the file does.
    assert resolve({}, env).config.port == 9002
    assert resolve({}, {"CODEXGATE_CONFIG": str(path)}).config.port == 9001


def test_codexgate_toml_in_the_working_folder_is_read_and_may_be_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve({}, {}).config == Config()  # no ./codexgate.toml: defaults, no error
    (tmp_path / "codexgate.toml").write_text("port = 9100\n")
    loaded = resolve({}, {})
    assert loaded.config.port == 9100
    assert loaded.config.config_file == Path("codexgate.toml")
    assert loaded.sources["config_file"] == "default"


@pytest.mark.parametrize("raw", ["missing.toml", "", "."])
def test_a_config_that_is_not_a_file_is_an_error(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve({"config": str(tmp_path / raw) if raw else raw}, {})
    assert str(caught.value).startswith("invalid --config (CODEXGATE_CONFIG): ")


# Every setting with a value it refuses from the file, and words the one-line error must have.
BAD_FILE_VALUES: list[tuple[str, str, str]] = [
    ("host", '""', "invalid host in {file}: must not be empty"),
    ("port", "70000", "invalid port in {file}: must be 1-65535, got 70000"),
    ("upstream", '"chatgpt.com"', "invalid upstream in {file}: must be an http:// or https://"),
    ("db", '"."', "invalid db in {file}: '.' is a folder"),
    ("admin_prefix", '"a/b"', "invalid admin_prefix in {file}: use 1-64 letters"),
    ("upstream_proxy", '"socks5://p:1"', "invalid upstream_proxy in {file}: must be an http://"),
    ("log_level", '"loud"', "invalid log_level in {file}: must be one of"),
    ("connect_timeout", "0", "invalid connect_timeout in {file}: must be at least 0.001, got 0"),
    ("idle_timeout", "-1.5", "invalid idle_timeout in {file}: must be at least"),
    ("capture", '"maybe"', "invalid capture in {file}: must be true or false, got a string"),
    ("websocket", '"tunnel"', "invalid websocket in {file}: must be relay or refuse"),
    ("queue_size", "0", "invalid queue_size in {file}: must be at least 1, got 0"),
    ("history_heartbeat", "nan", "invalid history_heartbeat in {file}: must be at least"),
    ("shutdown_grace", "-1", "invalid shutdown_grace in {file}: must be at least 0, got -1"),
    ("admin_token", '"short"', "invalid admin_token in {file}: must be at least 16"),
    ("no_auth", "1", "invalid no_auth in {file}: must be true or false, got an integer"),
    ("warn_percent", "0", "invalid warn_percent in {file}: must be at least 0.001"),
    ("critical_percent", "101", "invalid critical_percent in {file}: must be at most 100"),
    ("history_retention_days", "-1", "invalid history_retention_days in {file}: must be at least"),
    ("request_retention_days", "inf", "invalid request_retention_days in {file}: must be at"),
    ("downsample_history", '"on"', "invalid downsample_history in {file}: must be true or false"),
    ("metrics_token", '"has spaces in it, long"', "invalid metrics_token in {file}: must be"),
    ("public_url", '"https://u:p@h.example"', "invalid public_url in {file}: must be a URL such"),
    ("websocket_max_message_mib", "0", "invalid websocket_max_message_mib in {file}: must be"),
    ("request_head_timeout", "0", "invalid request_head_timeout in {file}: must be at least"),
    ("keepalive_timeout", "-1", "invalid keepalive_timeout in {file}: must be at least"),
    ("max_connections", "0", "invalid max_connections in {file}: must be at least 1"),
    ("max_connections_per_address", "-1", "invalid max_connections_per_address in {file}"),
    ("max_feed_subscribers", "1.5", "invalid max_feed_subscribers in {file}: must be a TOML"),
    ("max_accounts", "0", "invalid max_accounts in {file}: must be at least 1"),
    ("refresh_idle", '"on"', "invalid refresh_idle in {file}: must be true or false"),
    ("refresh_after", "4", "invalid refresh_after in {file}: must be at least 5"),
    ("db_pool_size", "0", "invalid db_pool_size in {file}: must be at least 1, got 0"),
    ("db_connect_timeout", "0", "invalid db_connect_timeout in {file}: must be at least 0.001"),
    ("reuse_port", '"on"', "invalid reuse_port in {file}: must be true or false"),
]


@pytest.mark.parametrize(("key", "value", "words"), BAD_FILE_VALUES)
def test_bad_file_values_name_the_file_and_key(
    tmp_path: Path, key: str, value: str, words: str
) -> None:
    message = file_error(tmp_path, f"{key} = {value}\n")
    assert words.format(file=tmp_path / "settings.toml") in message
    assert "\n" not in message


def test_every_setting_has_a_bad_file_value() -> None:
    assert {key for key, _, _ in BAD_FILE_VALUES} == {s.name for s in SETTINGS}


def test_secrets_are_not_repeated_in_file_errors(tmp_path: Path) -> None:
    message = file_error(tmp_path, 'metrics_token = "short secret"\n')
    assert "short secret" not in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("port = 8787.5\n", "invalid port in {file}: must be a TOML integer, got a float"),
        ('port = "8787"\n', "invalid port in {file}: must be a TOML integer, got a string"),
        ("idle_timeout = true\n", "must be a TOML number, got a boolean"),
        ("host = 127\n", "invalid host in {file}: must be a string, got an integer"),
        ("db = [1]\n", "invalid db in {file}: must be a string, got an array"),
        ("upstream = 1979-05-27\n", "must be a string, got a date or time"),
        ("[port]\n", "invalid port in {file}: must be a TOML integer, got a table"),
        ("alerts = 1\n", "invalid alerts in {file}: must be a table, got an integer"),
    ],
)
def test_wrong_toml_types_are_errors(tmp_path: Path, text: str, words: str) -> None:
    assert words.format(file=tmp_path / "settings.toml") in file_error(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "prot = 1\n",
            "invalid key 'prot' in {file}: not a codexgate setting (did you mean 'port'?)",
        ),
        ("admin-token = 'x'\n", "did you mean 'admin_token'?"),
        ("config = 'other.toml'\n", "invalid key 'config' in {file}: not a codexgate setting"),
        ("[alerts]\nthreshold = [1]\n", "invalid key 'alerts.threshold' in {file}: not an alerts"),
        (
            "[[alerts.webhooks]]\nurl = 'https://h.example/x'\nfromat = 'json'\n",
            "invalid key 'alerts.webhooks[0].fromat' in {file}: not a webhook setting",
        ),
        ("[server]\nport = 1\n", "invalid key 'server' in {file}"),
    ],
)
def test_unknown_keys_are_errors(tmp_path: Path, text: str, words: str) -> None:
    assert words.format(file=tmp_path / "settings.toml") in file_error(tmp_path, text)


def test_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = file_error(tmp_path, 'port = 8787\nhost = "::1"\nupstream =\n')
    assert message.startswith(f"invalid TOML in {tmp_path / 'settings.toml'}: ")
    assert "line 3" in message


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b'host = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        resolve({"config": str(path)}, {})
    assert "not UTF-8" in str(caught.value)


def test_crossed_thresholds_from_the_file_name_the_file(tmp_path: Path) -> None:
    message = file_error(tmp_path, "warn_percent = 90\n")
    assert message.startswith(f"invalid critical_percent in {tmp_path / 'settings.toml'}: ")
    assert "needs 0 < --warn-percent < --critical-percent" in message


# -- alerts ------------------------------------------------------------------------------------


def test_alerts_default_and_from_the_file(tmp_path: Path) -> None:
    assert Config().alerts == AlertConfig()
    assert AlertConfig().thresholds == (75.0, 90.0, 95.0)
    loaded = from_file(
        tmp_path,
        """
[alerts]
thresholds = [95, 50.5, 95, 100]
limit_hit = false
limit_reset = false
forecast = false
stale_minutes = 0

[[alerts.webhooks]]
url = "https://hooks.slack.com/services/T0/B0/sekrit"
format = "slack"
name = "team"

[[alerts.webhooks]]
url = "http://127.0.0.1:9000/hook"
""",
    )
    alerts = loaded.config.alerts
    assert loaded.sources["alerts"] == "file"
    assert alerts.thresholds == (50.5, 95.0, 100.0)
    assert (alerts.limit_hit, alerts.limit_reset, alerts.forecast) == (False, False, False)
    assert alerts.stale_minutes == 0.0
    slack, plain = alerts.webhooks
    assert slack == WebhookConfig(
        URL("https://hooks.slack.com/services/T0/B0/sekrit"), "slack", "team"
    )
    assert (plain.format, plain.name) == ("json", None)
    assert slack.display == "https://hooks.slack.com/…"
    assert plain.display == "http://127.0.0.1:9000/…"
    assert "sekrit" not in repr(loaded.config)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("thresholds = [50, 120]", "invalid alerts.thresholds in {file}: each must be above 0"),
        ("thresholds = [0]", "each must be above 0 and at most 100, got 0"),
        ("thresholds = ['90']", "invalid alerts.thresholds in {file}: must hold numbers"),
        ("thresholds = [true]", "must hold numbers, got a boolean"),
        ("thresholds = 90", "must be an array of numbers, got an integer"),
        ("limit_hit = 'yes'", "invalid alerts.limit_hit in {file}: must be true or false"),
        ("forecast = 1", "invalid alerts.forecast in {file}: must be true or false"),
        ("stale_minutes = -5", "invalid alerts.stale_minutes in {file}: must be 0 (off) or more"),
        ("stale_minutes = inf", "must be 0 (off) or more"),
        ("stale_minutes = '60'", "must be a number, got a string"),
        ("webhooks = 'https://x.example/'", "must be an array of tables"),
        ("webhooks = [1]", "invalid alerts.webhooks[0] in {file}: must be a table"),
        ("[alerts.webhooks]\nurl = 'https://h.example/'", "must be an array of tables"),
    ],
)
def test_bad_alert_settings(tmp_path: Path, text: str, words: str) -> None:
    message = file_error(tmp_path, f"[alerts]\n{text}\n")
    assert words.format(file=tmp_path / "settings.toml") in message


@pytest.mark.parametrize(
    ("hook", "words"),
    [
        (
            "url = 'ftp://files.example/sekrit'",
            ".url in {file}: must be an http:// or https:// URL",
        ),
        ("url = 'https:///sekrit'", "must be an http:// or https:// URL"),
        ("url = 'not a url sekrit'", "must be an http:// or https:// URL"),
        ("name = 'x'", "invalid alerts.webhooks[0].url in {file}: must be a string, got nothing"),
        ("url = 5", "must be a string, got an integer"),
        ("url = 'https://h.example/sekrit'\nformat = 'teams'", "must be one of json, slack"),
        ("url = 'https://h.example/sekrit'\nformat = 1", "got an integer"),
        ("url = 'https://h.example/sekrit'\nname = ''", ".name in {file}: must be a string of 1"),
    ],
)
def test_bad_webhooks_never_repeat_the_url(tmp_path: Path, hook: str, words: str) -> None:
    message = file_error(tmp_path, f"[[alerts.webhooks]]\n{hook}\n")
    assert words.format(file=tmp_path / "settings.toml") in message
    assert "sekrit" not in message


def test_alerts_come_only_from_the_file() -> None:
    flags = {s.name for s in SETTINGS}
    assert "alerts" not in flags
    assert "config_file" not in flags


# -- the example file ----------------------------------------------------------------------------

EXAMPLE = REPO / "codexgate.example.toml"


def test_the_example_file_is_valid_and_shows_the_defaults() -> None:
    loaded = resolve({"config": str(EXAMPLE)}, {})
    assert loaded.config == Config(config_file=EXAMPLE)
    # It mentions every setting, commented out or not.
    text = EXAMPLE.read_text()
    for setting in SETTINGS:
        assert re.search(rf"^#? ?{setting.name} = ", text, re.MULTILINE), setting.name


def test_the_example_files_commented_keys_are_valid_too(tmp_path: Path) -> None:
    # Uncomment every "# key = value" line and "# [[table]]" header: the result still loads.
    text = re.sub(r"^# (\[\[|[a-z_]+ = )", r"\1", EXAMPLE.read_text(), flags=re.MULTILINE)
    loaded = from_file(tmp_path, text)
    config = loaded.config
    assert config.admin_token is not None
    assert config.metrics_token is not None
    assert config.upstream_proxy == URL("http://proxy.internal:3128")
    formats = [hook.format for hook in config.alerts.webhooks]
    assert formats == ["slack", "json", "telegram", "email"]


def test_the_docs_document_the_settings_file() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert "`--config`" in doc
    assert "CODEXGATE_CONFIG" in doc
    assert "codexgate.example.toml" in doc


@pytest.mark.parametrize("prefix", ["backend-api", "API", "/Backend-API/", "v1", "wham"])
def test_an_admin_prefix_that_codex_clients_use_is_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_argv(["--admin-prefix", prefix], environ={})
    assert str(caught.value).startswith("invalid --admin-prefix (CODEXGATE_ADMIN_PREFIX): ")
    assert "where Codex clients send their own requests" in str(caught.value)
    with pytest.raises(ConfigError):
        resolve({}, {"CODEXGATE_ADMIN_PREFIX": prefix})
    settings = tmp_path / "codexgate.toml"
    settings.write_text(f'admin_prefix = "{prefix}"\n')
    with pytest.raises(ConfigError) as caught:
        resolve({"config": str(settings)}, {})
    assert str(caught.value).startswith(f"invalid admin_prefix in {settings}: ")


@pytest.mark.parametrize("prefix", ["codexgate", "api_x1", "backend-api2", "my-api", "v2"])
def test_other_admin_prefixes_are_fine(prefix: str) -> None:
    assert from_argv(["--admin-prefix", prefix], environ={}).admin_prefix == prefix


def test_proxy_credentials_are_masked() -> None:
    masked = mask_credentials(URL("http://user:s3cret@proxy.example:3128"))
    assert masked == "http://***@proxy.example:3128"
    assert mask_credentials(URL("http://user@proxy.example:3128")) == masked
    assert mask_credentials(URL("http://proxy.example:3128")) == "http://proxy.example:3128"


# -- the database: a SQLite path or a PostgreSQL URL with a password that is never shown ---------

DB_PASSWORD = "pg-sekrit-pw"
DB_URL = f"postgresql://codexgate:{DB_PASSWORD}@db.internal:6432/codexgate?sslmode=require"
MASKED_DB_URL = "postgresql://codexgate:***@db.internal:6432/codexgate?sslmode=require"


def test_the_database_defaults_and_new_settings() -> None:
    config = Config()
    assert config.db == Path("./data/codexgate.db")
    assert (config.db_pool_size, config.db_connect_timeout) == (10, 30.0)


def test_a_postgresql_url_from_a_flag_the_environment_or_the_file(tmp_path: Path) -> None:
    expected = PostgresURL(DB_URL)
    assert from_argv(["--db", DB_URL], environ={}).db == expected
    assert from_argv([], environ={"CODEXGATE_DB": DB_URL}).db == expected
    loaded = from_file(tmp_path, f'db = "{DB_URL}"\ndb_pool_size = 3\n')
    assert loaded.config.db == expected
    assert loaded.config.db_pool_size == 3
    assert loaded.sources["db"] == "file"


def test_the_database_password_is_never_in_a_repr() -> None:
    config = from_argv(["--db", DB_URL], environ={})
    assert DB_PASSWORD not in repr(config)
    assert DB_PASSWORD not in str(config)
    assert MASKED_DB_URL in repr(config)


@pytest.mark.parametrize(
    "bad",
    [
        # Each refused with the password in it: a bad port, a raw '/' or '@' in the password,
        # a query that is not name=value pairs, another scheme.
        f"postgresql://codexgate:{DB_PASSWORD}@db.internal:65536/codexgate",
        f"postgresql://codexgate:{DB_PASSWORD}/x@db.internal/codexgate",
        f"postgresql://codexgate:{DB_PASSWORD}@x@db.internal/codexgate",
        f"postgresql://db.internal/codexgate?password={DB_PASSWORD}&sslmode",
        f"postgresql://codexgate:{DB_PASSWORD}:x@db.internal:{DB_PASSWORD}/codexgate",
        f"mysql://codexgate:{DB_PASSWORD}@db.internal/codexgate",
    ],
)
def test_a_bad_database_url_never_repeats_its_password(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_argv(["--db", bad], environ={})
    assert str(caught.value).startswith("invalid --db (CODEXGATE_DB): ")
    messages = [str(caught.value)]
    with pytest.raises(ConfigError) as caught:
        resolve({}, {"CODEXGATE_DB": bad})
    messages.append(str(caught.value))
    messages.append(file_error(tmp_path, f'db = "{bad}"\n'))
    assert messages[-1].startswith(f"invalid db in {tmp_path / 'settings.toml'}: ")
    for message in messages:
        assert DB_PASSWORD not in message
        assert "\n" not in message


TOKEN = "Zq7-mW2xK9pL4vR8tY3n"


def test_secrets_can_come_from_a_file_named_by_a_file_variable(tmp_path: Path) -> None:
    token_file = tmp_path / "admin_token"
    token_file.write_text(TOKEN + "\n")  # as `echo` and most secret tools write it
    db_file = tmp_path / "db"
    db_file.write_text("postgresql://codexgate:s3cret@db:5432/codexgate\n")
    env = {"CODEXGATE_ADMIN_TOKEN_FILE": str(token_file), "CODEXGATE_DB_FILE": str(db_file)}
    loaded = resolve({}, env)
    assert loaded.config.admin_token == TOKEN
    assert isinstance(loaded.config.db, PostgresURL)
    assert loaded.config.db.dsn == "postgresql://codexgate:s3cret@db:5432/codexgate"
    assert (loaded.sources["admin_token"], loaded.sources["db"]) == ("env_file", "env_file")
    # A flag still beats the file.
    flagged = resolve({"admin_token": "Ab1-Cd2-Ef3-Gh4-Jk5"}, env)
    assert (flagged.config.admin_token, flagged.sources["admin_token"]) == (
        "Ab1-Cd2-Ef3-Gh4-Jk5",
        "flag",
    )


def test_only_secret_settings_have_a_file_variable(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    port_file.write_text("9999")
    assert resolve({}, {"CODEXGATE_PORT_FILE": str(port_file)}).config.port == 8787


def test_a_file_variable_beats_its_plain_variable(tmp_path: Path) -> None:
    """The container image sets CODEXGATE_DB=/data/codexgate.db; compose's CODEXGATE_DB_FILE
    must still win."""
    db_file = tmp_path / "db"
    db_file.write_text("postgresql://codexgate@db/codexgate")
    env = {"CODEXGATE_DB": "/data/codexgate.db", "CODEXGATE_DB_FILE": str(db_file)}
    loaded = resolve({}, env)
    assert isinstance(loaded.config.db, PostgresURL)
    assert loaded.sources["db"] == "env_file"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (b"x" * (64 * 1024 + 1), "is larger than 64 KiB"),
        (b"short-Secret9", "at least 16 visible ASCII characters"),
    ],
)
def test_a_bad_secret_file_names_the_file_variable_and_never_the_value(
    tmp_path: Path, content: bytes | None, words: str
) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        resolve({}, {"CODEXGATE_ADMIN_TOKEN_FILE": str(path)})
    message = str(caught.value)
    assert message.startswith("invalid admin_token in CODEXGATE_ADMIN_TOKEN_FILE: ")
    assert words in message
    if content:
        assert "short-Secret9" not in message


def test_a_secret_file_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CODEXGATE_METRICS_TOKEN_FILE: .* is a folder"):
        resolve({}, {"CODEXGATE_METRICS_TOKEN_FILE": str(tmp_path)})
