"""`codexgate accounts list|add|rename|rm`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO

from codexgate.cli.backend import Backend, pick_account
from codexgate.cli.codex_auth import CodexLogin
from codexgate.cli.common import USAGE, CommandError
from codexgate.cli.output import account_label, json_text, table
from codexgate.core.accounts import MAX_NAME, UNSAFE_NAME, bearer_value, name_fits, name_is_safe
from codexgate.core.sanitize import escape_unsafe

HEADERS: Final = ("id", "name", "email", "plan", "first seen", "last seen", "token")


def _shown(value: object) -> str:
    return "-" if value is None else str(value)


def render(accounts: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    """The accounts as a table (no token: only the first 8 hex digits of its SHA-256)."""
    if not accounts:
        out.write("no accounts yet\n")
        return
    rows = [
        [
            str(a["id"]),
            _shown(a["display_name"]),
            _shown(a["email"]),
            _shown(a["plan_type"]),
            _shown(a["first_seen_at_iso"]),
            _shown(a["last_seen_at_iso"]),
            _shown(a["token_fingerprint"]),
        ]
        for a in accounts
    ]
    out.write(table(HEADERS, rows, colour=False))


def render_json(accounts: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    """The REST API's accounts list."""
    out.write(json_text({"accounts": accounts}))


def read_token(given: str, stdin: TextIO) -> str:
    """The seat's token: as given, or the first line of stdin for "-" (out of shell history)."""
    if given != "-":
        return given
    if stdin.isatty():
        sys.stderr.write("paste the access token, then Enter: ")
        sys.stderr.flush()
    token = stdin.readline().strip()
    if not token:
        raise CommandError("no token on stdin", USAGE)
    return token


def check_name(name: str) -> str:
    """A display name the API would take: 1 to 100 characters, no control or bidi characters."""
    if not name_fits(name):
        raise CommandError(f"the name must be 1 to {MAX_NAME} characters", USAGE)
    if not name_is_safe(name):
        raise CommandError(UNSAFE_NAME, USAGE)
    return name


async def add(
    backend: Backend, login: CodexLogin, name: str | None, admin_token: str | None, out: TextIO
) -> None:
    """Register a seat by its token; the token itself is never printed or stored."""
    if admin_token is not None and bearer_value(login.access_token) == admin_token:
        # --token means the seat's token here, not the admin token of the other commands.
        raise CommandError(
            "that is the admin token; give the seat's ChatGPT access token with --token", USAGE
        )
    account, created = await backend.create_account(login.access_token, name, login.account_id)
    verb = "added" if created else "updated existing"
    out.write(f"{verb} account {account['id']} ({_label(account)})\n")


async def rename(backend: Backend, query: str, name: str | None, out: TextIO) -> None:
    """Set or clear (None) a display name."""
    account = pick_account(await backend.accounts(), query)
    updated = await backend.rename_account(account["id"], name)
    if name is None:
        out.write(f"cleared the name of account {updated['id']} ({_label(updated)})\n")
    else:
        out.write(f"renamed account {updated['id']} to {escape_unsafe(name)}\n")


async def remove(backend: Backend, query: str, *, yes: bool, stdin: TextIO, out: TextIO) -> None:
    """Delete an account after --yes or a "y" typed at a terminal."""
    account = pick_account(await backend.accounts(), query)
    what = f"account {account['id']} ({_label(account)})"
    if not yes:
        if not stdin.isatty():
            raise CommandError(f"not deleting {what} without --yes (no terminal to ask)", USAGE)
        sys.stderr.write(f"delete {what} with its history and requests? [y/N] ")
        sys.stderr.flush()
        answer = await asyncio.to_thread(stdin.readline)  # off the loop: it blocks
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("nothing deleted")
    await backend.delete_account(account["id"])
    out.write(f"deleted {what}\n")


def _label(account: Mapping[str, Any]) -> str:
    return escape_unsafe(account_label(account))
