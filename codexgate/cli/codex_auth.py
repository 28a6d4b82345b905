"""The Codex CLI's login file (`auth.json`), read for `codexgate accounts add --from-codex-auth`.

The file holds `tokens.access_token` (the ChatGPT access token the CLI sends as its bearer),
`tokens.account_id` (what it sends as ChatGPT-Account-ID) and, for an API-key login,
`OPENAI_API_KEY`. Nothing read here is ever printed: messages name the file, never its content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson

from codexgate.cli.codex_config import codex_home
from codexgate.cli.common import CommandError

AUTH_FILE: Final = "auth.json"
# A login file is a few kB; anything much larger is not one, and is not read whole.
_MAX_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class CodexLogin:
    """What a ChatGPT login of the Codex CLI gives codexgate."""

    access_token: str = field(repr=False)
    account_id: str | None = None


def auth_path(raw: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The login file: the given path, else $CODEX_HOME/auth.json, else ~/.codex/auth.json."""
    if raw:
        return Path(raw).expanduser()
    return codex_home(None, environ) / AUTH_FILE


def _text(value: object) -> str | None:
    """A non-empty string value, stripped; None for anything else."""
    return value.strip() or None if isinstance(value, str) else None


def read_login(path: Path) -> CodexLogin:
    """The access token (and account id) of the ChatGPT login in the file at path."""
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise CommandError(f"{path} is too large to be the Codex CLI's {AUTH_FILE}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CommandError(
            f"no Codex login at {path}: sign in with `codex login` first, or give the file's "
            "path (a login kept in the system keyring has no file)"
        ) from None
    except IsADirectoryError:
        raise CommandError(f"{path} is a folder; give the path of {AUTH_FILE}") from None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # The parser's message could quote the file, which holds secrets: name the file only.
        raise CommandError(f"{path} is not valid JSON, so not a Codex {AUTH_FILE}") from None
    if not isinstance(data, dict):
        raise CommandError(f"{path} is not a Codex {AUTH_FILE} (no JSON object)")
    tokens = data.get("tokens")
    token = _text(tokens.get("access_token")) if isinstance(tokens, dict) else None
    if token is not None and isinstance(tokens, dict):
        return CodexLogin(token, _text(tokens.get("account_id")))
    if _text(data.get("OPENAI_API_KEY")) is not None:
        raise CommandError(
            f"{path} holds an API-key login, not a ChatGPT one: usage windows need a ChatGPT "
            "login (run `codex login` and sign in with ChatGPT)"
        )
    raise CommandError(
        f"{path} has no ChatGPT access token (tokens.access_token): sign in again with "
        "`codex login`"
    )
