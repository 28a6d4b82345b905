"""`codexgate codex-config`: the printed settings, --write's merge, backups and warnings."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from codexgate.cli import codex_config
from codexgate.cli.codex_config import CodexConfigError, bypass_warning, http_settings, write
from codexgate.config import Config

PORT = 9123
BASE = f"http://127.0.0.1:{PORT}"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PROVIDER: dict[str, object] = {
    "name": "codexgate",
    "base_url": f"{BASE}/backend-api/codex",
    "wire_api": "responses",
    "requires_openai_auth": True,
    "supports_websockets": False,
}
RECOMMENDED: dict[str, object] = {
    "model_provider": "codexgate",
    "chatgpt_base_url": f"{BASE}/backend-api/",
    "model_providers": {"codexgate": PROVIDER},
}
WEBSOCKET = {
    "openai_base_url": f"{BASE}/backend-api/codex",
    "chatgpt_base_url": f"http://localhost:{PORT}/backend-api/",
}
EXISTING = """\
# Codex settings, kept by hand
model = "gpt-5-codex"  # the default model
approval_policy = "on-request"
chatgpt_base_url = "https://old.example/backend-api/"  # from a test

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"

# MCP servers below
[mcp_servers.x]
command = "npx"
args = ["-y", "@example/mcp"]

[mcp_servers.x.env]
TOKEN_FILE = "/run/secret"  # not the token itself
"""
MERGED = EXISTING.replace(
    'chatgpt_base_url = "https://old.example/backend-api/"  # from a test\n',
    f'chatgpt_base_url = "{BASE}/backend-api/"  # from a test\nmodel_provider = "codexgate"\n',
) + (
    "\n"
    "[model_providers.codexgate]\n"
    'name = "codexgate"\n'
    f'base_url = "{BASE}/backend-api/codex"\n'
    'wire_api = "responses"\n'
    "requires_openai_auth = true\n"
    "supports_websockets = false\n"
)


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`python -m codexgate codex-config ARGS` with CODEX_HOME=home and no CODEXGATE_ vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    env["CODEX_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "codexgate", "codex-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=next(parent for parent in home.parents if parent.is_dir()),
        env=env,
        check=False,
    )


def run_module(config: Config, **options: Any) -> tuple[int, str, str]:
    """codex_config.run in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = codex_config.run(config, out=out, err=err, **options)
    return code, out.getvalue(), err.getvalue()


def backups(home: Path) -> list[Path]:
    """The backup files next to config.toml."""
    return sorted(home.glob("config.toml.bak-*"))


def test_prints_the_recommended_config_for_the_port() -> None:
    code, out, err = run_module(Config(port=PORT))
    assert (code, err) == (0, "")
    assert tomllib.loads(out) == RECOMMENDED
    assert f'chatgpt_base_url = "{BASE}/backend-api/"' in out


def test_start_up_banner_and_print_share_one_rendering() -> None:
    config = Config(host="0.0.0.0", port=PORT)  # a wildcard shows as 127.0.0.1
    assert codex_config.client_settings(config) + "\n" == run_module(config)[1]
    assert tomllib.loads(codex_config.client_settings(config)) == RECOMMENDED


@pytest.mark.parametrize(
    "value",
    [
        'quote " and backslash \\',
        "tab\tnewline\nreturn\rbackspace\bform feed\f",
        "every other control: \x00\x01\x1b\x1f and delete \x7f",
        "http://[::1]:8787/backend-api/codex",
        "é 中文 😀",
        "",
        True,
        False,
    ],
)
def test_printed_values_read_back_as_written(value: str | bool) -> None:
    line = f"key = {codex_config.toml_value(value)}"
    assert tomllib.loads(line) == {"key": value}


def test_cli_prints_parseable_toml_with_exactly_the_expected_values(tmp_path: Path) -> None:
    result = run_cli("--port", str(PORT), home=tmp_path / "codex")
    assert (result.returncode, result.stderr) == (0, "")
    assert tomllib.loads(result.stdout) == RECOMMENDED
    assert not (tmp_path / "codex").exists()  # printing writes nothing


def test_cli_write_creates_codex_home_and_file(tmp_path: Path) -> None:
    home = tmp_path / "fresh" / "codex"
    result = run_cli("--port", str(PORT), "--write", home=home)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    config_file = home / "config.toml"
    assert tomllib.loads(config_file.read_text()) == RECOMMENDED
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert f"created {config_file}" in result.stdout
    assert backups(home) == []
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]  # no temporary file left


def test_write_keeps_everything_else_byte_for_byte(tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text(EXISTING)
    config_file.chmod(0o640)
    result = write(tmp_path, http_settings(Config(port=PORT)), now=NOW)
    assert config_file.read_text() == MERGED
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640
    assert result.backup == tmp_path / "config.toml.bak-20260102-030405"
    assert result.backup.read_bytes() == EXISTING.encode()
    assert backups(tmp_path) == [result.backup]
    assert not result.created
    assert result.warnings == ()
    assert result.changes[:2] == (
        'model_provider = "codexgate" (added)',
        f'chatgpt_base_url = "{BASE}/backend-api/" (was "https://old.example/backend-api/")',
    )


def test_write_updates_the_users_provider_table_and_keeps_its_other_keys(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[model_providers.codexgate]\n"
        "# mine\n"
        'name = "OpenAI"  # never written back\n'
        'base_url = "http://127.0.0.1:1/backend-api/codex"\n'
        "requires_openai_auth = 1\n"
        "stream_idle_timeout_ms = 600000\n"
    )
    write(tmp_path, http_settings(Config(port=PORT)), now=NOW)
    text = (tmp_path / "config.toml").read_text()
    provider = tomllib.loads(text)["model_providers"]["codexgate"]
    assert provider == {**PROVIDER, "stream_idle_timeout_ms": 600000}
    assert '"OpenAI"' not in text
    assert "# mine\n" in text


def test_second_write_changes_nothing_and_makes_no_backup(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(EXISTING)
    config = Config(port=PORT)
    assert run_module(config, write_file=True, home=str(tmp_path))[0] == 0
    after_first = (tmp_path / "config.toml").read_bytes()
    first_backups = backups(tmp_path)
    code, out, err = run_module(config, write_file=True, home=str(tmp_path))
    assert (code, err) == (0, "")
    assert (
        out
        == f"{tmp_path / 'config.toml'} already points the Codex CLI at {BASE}; nothing changed\n"
    )
    assert (tmp_path / "config.toml").read_bytes() == after_first
    assert backups(tmp_path) == first_backups


def test_backups_in_the_same_second_do_not_overwrite_each_other(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(EXISTING)
    first = write(tmp_path, http_settings(Config(port=PORT)), now=NOW).backup
    second = write(tmp_path, http_settings(Config(port=PORT + 1)), now=NOW).backup
    assert first is not None
    assert second is not None
    assert second.name == "config.toml.bak-20260102-030405-2"
    assert first.read_text() == EXISTING


def test_cli_websocket_write_uses_two_origins_and_drops_the_http_provider(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    assert run_cli("--port", str(PORT), "--write", home=home).returncode == 0
    result = run_cli("--port", str(PORT), "--write", "--transport", "websocket", home=home)
    assert (result.returncode, result.stderr) == (0, "")
    data = tomllib.loads((home / "config.toml").read_text())
    assert "model_provider" not in data
    assert {key: data[key] for key in WEBSOCKET} == WEBSOCKET
    assert data["model_providers"]["codexgate"]["name"] == "codexgate"  # kept, unused
    assert 'model_provider = "codexgate" (removed' in result.stdout
    assert len(backups(home)) == 1


def test_websocket_write_leaves_another_provider_alone_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('model_provider = "ollama"\n')
    config = Config(port=PORT)
    code, _, err = run_module(config, write_file=True, home=str(tmp_path), transport="websocket")
    assert code == 0
    assert tomllib.loads((tmp_path / "config.toml").read_text())["model_provider"] == "ollama"
    assert 'model_provider = "ollama" was kept' in err


@pytest.mark.parametrize(
    ("host", "openai", "chatgpt", "noted"),
    [
        ("127.0.0.1", BASE, f"http://localhost:{PORT}", False),
        ("0.0.0.0", BASE, f"http://localhost:{PORT}", False),
        ("localhost", f"http://localhost:{PORT}", BASE, False),
        ("::1", f"http://[::1]:{PORT}", f"http://localhost:{PORT}", True),
        ("127.0.0.2", f"http://127.0.0.2:{PORT}", f"http://localhost:{PORT}", True),
    ],
)
def test_websocket_form_has_two_different_origins(
    host: str, openai: str, chatgpt: str, noted: bool
) -> None:
    code, out, err = run_module(Config(host=host, port=PORT), transport="websocket")
    assert code == 0
    assert tomllib.loads(out) == {
        "openai_base_url": f"{openai}/backend-api/codex",
        "chatgpt_base_url": f"{chatgpt}/backend-api/",
    }
    assert ("different origin" in err) is noted


def test_websocket_form_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    config = Config(host="192.0.2.7", port=PORT)
    code, out, err = run_module(config, transport="websocket", write_file=True, home=str(tmp_path))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "192.0.2.7 is not a loopback address; use --transport http" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CodexConfigError):
        codex_config.websocket_settings(Config(host="gateway.example"))


def test_bypass_warning_for_same_origin_built_in_configs() -> None:
    same = {"openai_base_url": f"{BASE}/backend-api/codex", "chatgpt_base_url": f"{BASE}/"}
    assert bypass_warning(same) is not None
    custom_openai = {
        "model_provider": "corp",
        "chatgpt_base_url": f"{BASE}/backend-api/",
        "model_providers": {"corp": {"name": "OpenAI", "base_url": f"{BASE}/backend-api/codex"}},
    }
    assert bypass_warning(custom_openai) is not None
    assert bypass_warning(RECOMMENDED) is None
    assert bypass_warning(WEBSOCKET) is None
    assert bypass_warning({"model": "gpt-5-codex"}) is None  # no gateway, nothing to bypass
    assert bypass_warning({**same, "model_provider": "codexgate"}) is None


def test_warns_when_the_default_profile_overrides_the_provider(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'profile = "work"\n\n[profiles.work]\nmodel_provider = "azure"\n'
    )
    code, _, err = run_module(Config(port=PORT), write_file=True, home=str(tmp_path))
    assert code == 0
    assert 'warning: profile "work" sets model_provider, which overrides' in err


def test_cli_warns_when_the_merged_config_bypasses_the_gateway(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(
        'model_provider = "corp"\n\n'
        "[model_providers.corp]\n"
        'name = "OpenAI"\n'
        f'base_url = "http://localhost:{PORT}/backend-api/codex"\n'
    )
    result = run_cli("--port", str(PORT), "--write", "--transport", "websocket", home=home)
    assert result.returncode == 0
    assert "codexgate: warning: this config silently bypasses the gateway" in result.stderr
    assert "Traceback" not in result.stderr
    recommended = run_cli("--port", str(PORT), "--write", home=home)
    assert (recommended.returncode, recommended.stderr) == (0, "")


def test_cli_invalid_toml_exits_1_and_touches_nothing(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    broken = b'model = "gpt-5-codex"\n[mcp_servers.x\ncommand = "npx"\n'
    (home / "config.toml").write_bytes(broken)
    result = run_cli("--write", home=home)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"codexgate: {home / 'config.toml'} is not valid TOML (")
    assert (home / "config.toml").read_bytes() == broken
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]


def test_a_provider_table_of_the_wrong_type_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('model_providers = "oops"\n')
    code, _, err = run_module(Config(port=PORT), write_file=True, home=str(tmp_path))
    assert code == 1
    assert err == "codexgate: model_providers in config.toml is not a table; fix it by hand first\n"
    assert backups(tmp_path) == []


def test_inline_providers_and_symlinked_config_stay_as_they_are(tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "codex.toml"
    target.parent.mkdir()
    target.write_text('model_providers = { ollama = { name = "Ollama" } }\n')
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").symlink_to(target)
    write(home, http_settings(Config(port=PORT)), now=NOW)
    assert (home / "config.toml").is_symlink()
    data = tomllib.loads(target.read_text())
    assert data["model_providers"]["ollama"] == {"name": "Ollama"}
    assert data["model_providers"]["codexgate"] == PROVIDER


def test_bad_transport_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("--transport", "ws", home=tmp_path / "codex")
    assert result.returncode == 2
    assert "invalid choice: 'ws'" in result.stderr


def test_codex_home_defaults() -> None:
    assert codex_config.codex_home(None, {"CODEX_HOME": "/srv/codex"}) == Path("/srv/codex")
    assert codex_config.codex_home("/x", {"CODEX_HOME": "/srv/codex"}) == Path("/x")
    assert codex_config.codex_home(None, {}) == Path("~/.codex").expanduser()
