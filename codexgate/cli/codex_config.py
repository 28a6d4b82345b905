"""The Codex CLI's config.toml for this instance: render it, or merge it into the user's file."""

from __future__ import annotations

import argparse
import ipaddress
import os
import stat
import sys
import tempfile
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from yarl import URL

from codexgate.config import Config

if TYPE_CHECKING:
    # Imported where a config.toml is edited: `serve` prints its settings without them.
    import tomlkit
    from tomlkit.items import Table

PROVIDER_ID: Final = "codexgate"
BUILTIN_NAME: Final = "OpenAI"  # the name that turns on the client's workspace routing
BUILTIN_ID: Final = "openai"
HTTP: Final = "http"
WEBSOCKET: Final = "websocket"
TRANSPORTS: Final = (HTTP, WEBSOCKET)
DEFAULT_OPENAI_BASE: Final = "https://chatgpt.com/backend-api/codex"
DEFAULT_CHATGPT_BASE: Final = "https://chatgpt.com/backend-api/"
ROUTING_KEYS: Final = ("model_provider", "openai_base_url", "chatgpt_base_url")
NEW_FILE_MODE: Final = 0o600
HOME_MODE: Final = 0o700
# A TOML basic string's escapes: the short ones, and \uXXXX for every other control character.
_TOML_ESCAPES: Final = str.maketrans(
    {
        **{chr(code): f"\\u{code:04x}" for code in (*range(0x20), 0x7F)},
        '"': '\\"',
        "\\": "\\\\",
        "\b": "\\b",
        "\t": "\\t",
        "\n": "\\n",
        "\f": "\\f",
        "\r": "\\r",
    }
)


class CodexConfigError(Exception):
    """An expected failure; the message is the one line shown to the user."""


@dataclass(frozen=True, slots=True)
class CodexSettings:
    """What one transport puts into config.toml: top-level keys, provider table, notes."""

    top: Mapping[str, str]
    provider: Mapping[str, str | bool] = field(default_factory=dict)
    drop_provider: bool = False  # remove a top-level model_provider = "codexgate"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What --write did to one config.toml."""

    path: Path
    changes: tuple[str, ...]
    backup: Path | None
    created: bool
    warnings: tuple[str, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `codexgate codex-config` beyond the instance's own settings."""
    parser.add_argument(
        "--write",
        action="store_true",
        help="merge the settings into CODEX_HOME/config.toml (backup first) instead of printing",
    )
    parser.add_argument(
        "--codex-home",
        metavar="PATH",
        default=None,
        help="the Codex CLI's folder (default $CODEX_HOME or ~/.codex)",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=HTTP,
        help="http: custom provider over HTTP + SSE (default); "
        "websocket: built-in provider on two origins, which keeps WebSocket turns",
    )


def codex_home(raw: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding config.toml: the flag, else $CODEX_HOME, else ~/.codex."""
    env = os.environ if environ is None else environ
    chosen = raw or env.get("CODEX_HOME") or "~/.codex"
    return Path(chosen).expanduser()


def http_settings(config: Config) -> CodexSettings:
    """The recommended form: a custom provider with both base URLs on this instance."""
    base = config.public_base
    return CodexSettings(
        top={"model_provider": PROVIDER_ID, "chatgpt_base_url": f"{base}/backend-api/"},
        provider={
            "name": PROVIDER_ID,
            "base_url": f"{base}/backend-api/codex",
            "wire_api": "responses",
            "requires_openai_auth": True,
            "supports_websockets": False,
        },
    )


def _is_loopback(host: str) -> bool:
    """Whether a literal IP address is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _websocket_origins(config: Config) -> tuple[str, str, tuple[str, ...]]:
    """Two different origins of this instance (openai, chatgpt) and notes about them."""
    base = URL(config.public_base)
    host, port = base.host or "", config.port
    if host == "localhost":
        return f"http://localhost:{port}", f"http://127.0.0.1:{port}", ()
    if host == "127.0.0.1":
        return f"http://127.0.0.1:{port}", f"http://localhost:{port}", ()
    if _is_loopback(host):
        note = (
            f"chatgpt_base_url must be a different origin from openai_base_url; localhost "
            f"reaches this instance only if it resolves to {host} here (otherwise give {host} "
            f"another name in /etc/hosts and use that)"
        )
        return config.public_base, f"http://localhost:{port}", (note,)
    raise CodexConfigError(
        f"--transport websocket needs two origins that reach this instance, but host {host} "
        f"is not a loopback address; use --transport http (the default)"
    )


def websocket_settings(config: Config) -> CodexSettings:
    """The built-in provider form: the two base URLs on different origins of this instance."""
    openai_origin, chatgpt_origin, notes = _websocket_origins(config)
    return CodexSettings(
        top={
            "openai_base_url": f"{openai_origin}/backend-api/codex",
            "chatgpt_base_url": f"{chatgpt_origin}/backend-api/",
        },
        drop_provider=True,
        notes=notes,
    )


def settings_for(config: Config, transport: str) -> CodexSettings:
    """The settings of one transport for this instance."""
    if transport == WEBSOCKET:
        return websocket_settings(config)
    return http_settings(config)


def toml_value(value: str | bool) -> str:
    """A TOML value: true or false, or a basic string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value.translate(_TOML_ESCAPES)}"'


def _toml_line(key: str, value: str | bool) -> str:
    """One `key = value` line with TOML quoting."""
    return f"{key} = {toml_value(value)}"


def render(settings: CodexSettings) -> str:
    """The settings as config.toml text (no trailing newline)."""
    lines = [_toml_line(key, value) for key, value in settings.top.items()]
    if settings.provider:
        lines.extend(("", f"[model_providers.{PROVIDER_ID}]"))
        lines.extend(_toml_line(key, value) for key, value in settings.provider.items())
    return "\n".join(lines)


def client_settings(config: Config) -> str:
    """The recommended config.toml lines for this instance, as logged at start-up."""
    return render(http_settings(config))


def parse(text: str, path: Path) -> tomlkit.TOMLDocument:
    """Parse config.toml strictly (tomllib) and for editing (tomlkit)."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        tomllib.loads(text)
        return tomlkit.parse(text)
    except (tomllib.TOMLDecodeError, TOMLKitError) as exc:
        reason = " ".join(str(exc).split())
        raise CodexConfigError(f"{path} is not valid TOML ({reason}); nothing written") from None


def _same(old: object, new: object) -> bool:
    """Equal values of the same type (TOML 1 is not true)."""
    return type(old) is type(new) and old == new


def _plain(value: object) -> object:
    """A tomlkit item as a plain Python value."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _set(table: MutableMapping[str, Any], key: str, value: str | bool, label: str) -> str | None:
    """Set one key; describe the change, or None when it already had that value."""
    if key in table:
        old = _plain(table[key])
        if _same(old, value):
            return None
        table[key] = value
        return f"{label} = {toml_value(value)} (was {_describe(old)})"
    table[key] = value
    return f"{label} = {toml_value(value)} (added)"


def _describe(value: object) -> str:
    """A short TOML-ish rendering of an old value."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        return tomlkit.item(value).as_string()
    except (TOMLKitError, TypeError, ValueError):
        return repr(value)


def _table(parent: MutableMapping[str, Any], key: str, label: str) -> MutableMapping[str, Any]:
    """The table parent[key]; an error when the user made it something else."""
    child = parent[key]
    if not isinstance(child, MutableMapping):
        raise CodexConfigError(f"{label} in config.toml is not a table; fix it by hand first")
    return child


def _append_table(doc: tomlkit.TOMLDocument) -> Table:
    """Add an empty [model_providers.codexgate] at the end, after a blank line."""
    import tomlkit

    table = tomlkit.table()
    wrapper = tomlkit.table(is_super_table=True)
    wrapper[PROVIDER_ID] = table
    doc.append("model_providers", wrapper)
    text = doc.as_string()
    start = text.rfind(f"[model_providers.{PROVIDER_ID}]")
    if start > 0 and not text[:start].endswith("\n\n"):
        table.trivia.indent = "\n"
    return table


def _provider_table(doc: tomlkit.TOMLDocument) -> MutableMapping[str, Any]:
    """The existing [model_providers.codexgate] table, or a new one.

    A new table goes to the end of the file, so no comment of the user's moves; only an
    inline `model_providers = {...}` gets it inline.
    """
    import tomlkit
    from tomlkit.items import InlineTable

    if "model_providers" not in doc:
        return _append_table(doc)
    providers = _table(doc, "model_providers", "model_providers")
    if PROVIDER_ID not in providers:
        if not isinstance(providers, InlineTable):
            return _append_table(doc)
        providers[PROVIDER_ID] = tomlkit.inline_table()
    return _table(providers, PROVIDER_ID, f"model_providers.{PROVIDER_ID}")


def _merge_provider(doc: tomlkit.TOMLDocument, provider: Mapping[str, str | bool]) -> list[str]:
    """Update [model_providers.codexgate], keeping the user's other keys in it."""
    table = _provider_table(doc)
    label = f"model_providers.{PROVIDER_ID}"
    changes = [_set(table, key, value, f"{label}.{key}") for key, value in provider.items()]
    return [change for change in changes if change]


def merge(doc: tomlkit.TOMLDocument, settings: CodexSettings) -> list[str]:
    """Apply the settings to a parsed config.toml in place; return what changed."""
    changes: list[str] = []
    if settings.drop_provider and _plain(doc.get("model_provider")) == PROVIDER_ID:
        del doc["model_provider"]
        changes.append(f'model_provider = "{PROVIDER_ID}" (removed: use the built-in provider)')
    for key, value in settings.top.items():
        change = _set(doc, key, value, key)
        if change:
            changes.append(change)
    if settings.provider:
        changes.extend(_merge_provider(doc, settings.provider))
    return changes


def _origin(url: object) -> tuple[str, str, int | None] | None:
    """The (scheme, host, port) of a URL string, or None when it is not one."""
    if not isinstance(url, str):
        return None
    try:
        parsed = URL(url.strip())
    except ValueError:
        return None
    if not parsed.scheme or not parsed.host:
        return None
    return parsed.scheme.lower(), parsed.host.lower(), parsed.port


def _builtin_base(data: Mapping[str, Any]) -> tuple[object, bool] | None:
    """The turn base URL (and whether it is set) when a provider named OpenAI is in effect."""
    provider_id = data.get("model_provider", BUILTIN_ID)
    if provider_id == BUILTIN_ID:
        return data.get("openai_base_url", DEFAULT_OPENAI_BASE), "openai_base_url" in data
    providers = data.get("model_providers")
    provider = providers.get(provider_id) if isinstance(providers, Mapping) else None
    if isinstance(provider, Mapping) and provider.get("name") == BUILTIN_NAME:
        return provider.get("base_url", DEFAULT_OPENAI_BASE), "base_url" in provider
    return None


def bypass_warning(data: Mapping[str, Any]) -> str | None:
    """The warning for a built-in-provider config whose two base URLs share one origin."""
    builtin = _builtin_base(data)
    if builtin is None:
        return None
    base, base_is_set = builtin
    chatgpt = data.get("chatgpt_base_url", DEFAULT_CHATGPT_BASE)
    if not (base_is_set or "chatgpt_base_url" in data):
        return None  # a config without any gateway in it has nothing to bypass
    origin = _origin(base)
    if origin is None or origin != _origin(chatgpt):
        return None
    return (
        f'this config silently bypasses the gateway: a provider named "{BUILTIN_NAME}" with '
        f"{base} and {chatgpt} on the same origin sends turns straight to the workspace "
        f"backend; use the default http transport or two different origins"
    )


def profile_warning(data: Mapping[str, Any]) -> str | None:
    """A warning when the default profile overrides the keys that route the client."""
    name = data.get("profile")
    profiles = data.get("profiles")
    profile = profiles.get(name) if isinstance(profiles, Mapping) and name else None
    if not isinstance(profile, Mapping):
        return None
    overridden = [key for key in ROUTING_KEYS if key in profile]
    if not overridden:
        return None
    return f'profile "{name}" sets {", ".join(overridden)}, which overrides the top-level keys'


def provider_warning(data: Mapping[str, Any], settings: CodexSettings) -> str | None:
    """A warning when the websocket form cannot take effect because another provider is set."""
    provider_id = data.get("model_provider")
    if not settings.drop_provider or provider_id in (None, BUILTIN_ID):
        return None
    return (
        f'model_provider = "{provider_id}" was kept; openai_base_url only applies to the '
        f"built-in provider, so remove it to use this form"
    )


def warnings_for(data: Mapping[str, Any], settings: CodexSettings) -> tuple[str, ...]:
    """Every warning about the merged config."""
    found = (bypass_warning(data), provider_warning(data, settings), profile_warning(data))
    return tuple(warning for warning in found if warning)


def backup_path(path: Path, now: datetime) -> Path:
    """config.toml.bak-YYYYMMDD-HHMMSS (UTC) next to the file."""
    return path.with_name(f"{path.name}.bak-{now.astimezone(UTC):%Y%m%d-%H%M%S}")


def _write_backup(path: Path, original: bytes, mode: int, now: datetime) -> Path:
    """Copy the original bytes to a new backup file; never overwrite an older backup."""
    first = backup_path(path, now)
    for attempt in count(1):
        candidate = first if attempt == 1 else first.with_name(f"{first.name}-{attempt}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as handle:
            handle.write(original)
        return candidate
    raise AssertionError("unreachable")


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Write through a temporary file in the same folder and os.replace it into place."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _ensure_home(home: Path) -> None:
    """Create the Codex folder with mode 0700 when it does not exist."""
    if home.is_dir():
        return
    home.mkdir(parents=True, mode=HOME_MODE)
    home.chmod(HOME_MODE)  # mkdir's mode is masked by the umask


def _read(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _decode(original: bytes | None, path: Path) -> str:
    """The file's text ('' for a missing file); an error when it is not UTF-8."""
    try:
        return "" if original is None else original.decode("utf-8")
    except UnicodeDecodeError:
        raise CodexConfigError(f"{path} is not UTF-8 text; nothing written") from None


def _save(link: Path, path: Path, text: str, original: bytes | None, now: datetime) -> Path | None:
    """Back up the original (if any), then replace the file; return the backup's path."""
    _ensure_home(link.parent)
    if original is None:
        _write_atomic(path, text, NEW_FILE_MODE)
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    backup = _write_backup(link, original, mode, now)
    _write_atomic(path, text, mode)
    return backup


def write(home: Path, settings: CodexSettings, now: datetime | None = None) -> WriteResult:
    """Merge the settings into home/config.toml: backup, atomic replace, warnings."""
    link = home / "config.toml"
    path = link.resolve() if link.is_symlink() else link  # keep a dotfile symlink intact
    original = _read(path)
    doc = parse(_decode(original, path), path)
    changes = tuple(merge(doc, settings))
    warnings = warnings_for(doc.unwrap(), settings)
    backup = None
    if changes:
        backup = _save(link, path, doc.as_string(), original, now or datetime.now(UTC))
    return WriteResult(path, changes, backup, created=original is None, warnings=warnings)


def _report(result: WriteResult, base: str, out: TextIO) -> None:
    """Tell the user what --write changed and where the backup is."""
    if not result.changes:
        out.write(f"{result.path} already points the Codex CLI at {base}; nothing changed\n")
        return
    verb = "created" if result.created else "updated"
    out.write(f"{verb} {result.path}:\n")
    out.writelines(f"  {change}\n" for change in result.changes)
    if result.backup is not None:
        out.write(f"backup of the previous file: {result.backup}\n")


def _print(settings: CodexSettings, out: TextIO, err: TextIO) -> None:
    """Print the settings as TOML, with a hint for the built-in provider form."""
    if settings.drop_provider:
        err.write(
            f'codexgate: note: remove any model_provider = "{PROVIDER_ID}" line so the built-in '
            f"provider is used (--write does that)\n"
        )
    out.write(render(settings) + "\n")


def run(
    config: Config,
    *,
    write_file: bool = False,
    home: str | None = None,
    transport: str = HTTP,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`codexgate codex-config`: print or write the settings; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        settings = settings_for(config, transport)
        err.writelines(f"codexgate: note: {note}\n" for note in settings.notes)
        if not write_file:
            _print(settings, out, err)
            return 0
        result = write(codex_home(home), settings)
    except CodexConfigError as exc:
        err.write(f"codexgate: {exc}\n")
        return 1
    except OSError as exc:
        err.write(f"codexgate: cannot write the Codex config: {exc}\n")
        return 1
    _report(result, config.public_base, out)
    err.writelines(f"codexgate: warning: {warning}\n" for warning in result.warnings)
    return 0
