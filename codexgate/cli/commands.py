"""The offline commands: status, history, accounts, migrate, copy-db, backup, restore and
check-config."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

# The modules that declare arguments; those that only run a command are imported when it runs,
# so that `serve`, which builds this parser too, does not load them.
from codexgate.cli import backup, copy_db, history
from codexgate.cli.common import FAILURE, OK, USAGE, CommandError
from codexgate.cli.output import colour_enabled
from codexgate.config import SETTINGS, Config, Loaded, add_arguments
from codexgate.core.sanitize import escape_unsafe
from codexgate.storage.interface import StorageUnavailable
from codexgate.storage.location import describe

if TYPE_CHECKING:
    from codexgate.cli.codex_auth import CodexLogin

NAMES: Final = (
    "status",
    "history",
    "accounts",
    "migrate",
    "copy-db",
    "backup",
    "restore",
    "check-config",
)
URL_ENV: Final = "CODEXGATE_URL"
# The settings each command reads, besides --config (the file may hold any of them): its --help
# lists these and no others, and they may come before the command too (codexgate --db x status).
# The database settings: where it is, and how a PostgreSQL one is reached.
_DATABASE: Final = ("db", "db_pool_size", "db_connect_timeout")
_REMOTE: Final = (*_DATABASE, "admin_prefix", "admin_token")
SETTINGS_USED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "status": (*_REMOTE, "warn_percent", "critical_percent"),
        "history": (*_REMOTE, "warn_percent", "critical_percent"),
        "accounts": _REMOTE,
        "migrate": _DATABASE,
        # Its databases are --from and --to; a PostgreSQL one is reached as --db's would be.
        "copy-db": ("db_connect_timeout",),
        "backup": ("db",),
        "restore": ("db",),
        # It shows what serve would run with: every setting applies.
        "check-config": tuple(setting.name for setting in SETTINGS),
    }
)


def _settings_parent(command: str) -> argparse.ArgumentParser:
    """--config and the settings command reads (--db, --admin-prefix, ...), as serve takes them."""
    parent = argparse.ArgumentParser(add_help=False)
    add_arguments(parent, SETTINGS_USED[command])
    return parent


def _remote_parent(*, token: bool) -> argparse.ArgumentParser:
    """--url of a running instance instead of the file, and its admin --token."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        default=None,
        help=f"a running codexgate (http://127.0.0.1:8787) to ask through its API instead of "
        f"reading --db [env {URL_ENV}]",
    )
    if token:
        parent.add_argument(
            "--token",
            dest="api_token",
            default=None,
            metavar="ADMIN_TOKEN",
            help="admin token for --url (default: the admin_token setting, "
            "e.g. CODEXGATE_ADMIN_TOKEN)",
        )
    return parent


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], *, early_prefix: str
) -> None:
    """Declare the offline commands next to serve and codex-config.

    `accounts` itself also takes its settings (under early_prefix, as before any command), so
    that `codexgate accounts --db x list` works as well.
    """
    remote = _remote_parent(token=True)
    both = [_settings_parent("status"), remote]

    parser = commands.add_parser("status", parents=both, help="every account's usage windows")
    parser.add_argument("--json", action="store_true", help="the API's JSON instead of a table")

    both = [_settings_parent("history"), remote]
    parser = commands.add_parser("history", parents=both, help="an account's usage history")
    parser.add_argument("account", metavar="ACCOUNT", help="id, display name or email")
    parser.add_argument("--window", choices=history.WINDOWS, help="only this window")
    parser.add_argument("--since", metavar="WHEN", help="unix seconds, ISO-8601, or 24h/7d/30m")
    parser.add_argument("--until", metavar="WHEN", help="unix seconds, ISO-8601, or 24h/7d/30m")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="CSV with a header row")
    shape.add_argument("--json", action="store_true", help="the API's JSON items")

    settings = _settings_parent("accounts")
    both = [settings, remote]
    parser = commands.add_parser("accounts", help="list, add, rename or remove accounts")
    add_arguments(parser, SETTINGS_USED["accounts"], dest_prefix=early_prefix, suppress=True)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=both, help="every account")
    listing.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    adding = actions.add_parser(
        "add",
        parents=[settings, _remote_parent(token=False)],
        help="register a seat by its token, or by the Codex CLI's login",
    )
    adding.add_argument("--name", help="display name")
    source = adding.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--token",
        dest="seat_token",
        metavar="TOKEN",
        help="the seat's ChatGPT access token, or - to read it from stdin "
        "(with --url the admin token comes from --admin-token or CODEXGATE_ADMIN_TOKEN)",
    )
    source.add_argument(
        "--from-codex-auth",
        dest="codex_auth",
        nargs="?",
        const="",
        metavar="PATH",
        help="take the token from the Codex CLI's login file "
        "(default $CODEX_HOME/auth.json, else ~/.codex/auth.json)",
    )
    renaming = actions.add_parser("rename", parents=both, help="set or --clear a display name")
    renaming.add_argument("account", metavar="ACCOUNT", help="id, display name or email")
    renaming.add_argument("name", metavar="NAME", nargs="?", help="the new display name")
    renaming.add_argument("--clear", action="store_true", help="remove the display name")
    removing = actions.add_parser("rm", parents=both, help="remove an account and its data")
    removing.add_argument("account", metavar="ACCOUNT", help="id, display name or email")
    removing.add_argument("--yes", action="store_true", help="do not ask")

    parser = commands.add_parser(
        "migrate",
        parents=[_settings_parent("migrate")],
        help="create the database or apply pending migrations",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="apply nothing; exit 0 when up to date, 1 when migrations are pending or there is "
        "no database file yet",
    )

    parser = commands.add_parser(
        "copy-db",
        parents=[_settings_parent("copy-db")],
        help="copy a SQLite database into an empty PostgreSQL database",
    )
    copy_db.add_arguments(parser)

    parser = commands.add_parser(
        "backup",
        parents=[_settings_parent("backup")],
        help="write a consistent copy of the SQLite database, also while it serves",
    )
    backup.add_backup_arguments(parser)

    parser = commands.add_parser(
        "restore",
        parents=[_settings_parent("restore")],
        help="replace the SQLite database with a backup (with no codexgate serving on it)",
    )
    backup.add_restore_arguments(parser)

    commands.add_parser(
        "check-config",
        parents=[_settings_parent("check-config")],
        help="print the effective settings and where each came from",
    )


def run(args: argparse.Namespace, loaded: Loaded) -> int:
    """Run one offline command; errors are one line on stderr and exit 1 or 2."""
    try:
        if args.command == "check-config":
            from codexgate.cli import check_config

            asyncio.run(check_config.run(loaded, sys.stdout))
            return OK
        if args.command == "copy-db":
            return copy_db.run(args, loaded.config, sys.stdout, sys.stderr)
        if args.command == "backup":
            return backup.run_backup(args, loaded.config, sys.stdout)
        if args.command == "restore":
            return backup.run_restore(args, loaded.config, sys.stdout)
        login = None
        if args.command == "accounts" and args.action == "add":
            # Before the loop starts: reading stdin blocks.
            login = _seat_login(args)
        return asyncio.run(_run(args, loaded.config, login))
    except CommandError as exc:
        # Messages may quote names and emails from traffic, or a running instance's words.
        sys.stderr.write(f"codexgate: {escape_unsafe(str(exc))}\n")
        return exc.exit_code
    except StorageUnavailable as exc:
        database = describe(loaded.config.db)
        sys.stderr.write(f"codexgate: cannot read the database {database}: {exc}\n")
        return FAILURE
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be shown, and Python must not try.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILURE
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130


def _seat_login(args: argparse.Namespace) -> CodexLogin:
    """The token accounts add registers: --token's (or stdin's), or the Codex CLI's login."""
    from codexgate.cli import accounts, codex_auth

    if args.codex_auth is not None:
        return codex_auth.read_login(codex_auth.auth_path(args.codex_auth))
    return codex_auth.CodexLogin(accounts.read_token(args.seat_token, sys.stdin))


async def _run(args: argparse.Namespace, config: Config, login: CodexLogin | None) -> int:
    """Dispatch to the command."""
    from codexgate.cli import accounts, migrate, status
    from codexgate.cli.backend import open_backend

    out = sys.stdout
    if args.command == "migrate":
        return await migrate.run(config, check=args.check, out=out)
    url = args.url if args.url is not None else os.environ.get(URL_ENV)
    if login is not None:
        name = None if args.name is None else accounts.check_name(args.name)
        async with open_backend(
            config, url, None, create=True, admin_flag="--admin-token"
        ) as backend:
            await accounts.add(backend, login, name, config.admin_token, out)
        return OK
    token = args.api_token
    if args.command == "status":
        async with open_backend(config, url, token) as backend:
            found = await backend.accounts()
        if args.json:
            status.render_json(found, out)
        else:
            status.render(found, config, out, colour=colour_enabled(out))
    elif args.command == "history":
        await _history(args, config, url, token)
    elif args.action == "list":
        async with open_backend(config, url, token) as backend:
            found = await backend.accounts()
        if args.json:
            accounts.render_json(found, out)
        else:
            accounts.render(found, out)
    elif args.action == "rename":
        if args.clear == (args.name is not None):
            raise CommandError("give either NAME or --clear", USAGE)
        name = None if args.clear else accounts.check_name(args.name)
        async with open_backend(config, url, token) as backend:
            await accounts.rename(backend, args.account, name, out)
    else:
        async with open_backend(config, url, token) as backend:
            await accounts.remove(backend, args.account, yes=args.yes, stdin=sys.stdin, out=out)
    return OK


async def _history(
    args: argparse.Namespace, config: Config, url: str | None, token: str | None
) -> None:
    """history ACCOUNT: check the range, find the account, write every row."""
    from codexgate.cli.backend import open_backend, pick_account

    now = time.time()
    since = None if args.since is None else history.parse_when(args.since, now, "--since")
    until = None if args.until is None else history.parse_when(args.until, now, "--until")
    if since is not None and until is not None and until < since:
        raise CommandError("--until must not be before --since", USAGE)
    async with open_backend(config, url, token) as backend:
        account = pick_account(await backend.accounts(), args.account)
        items = await backend.history(account["id"], window=args.window, since=since, until=until)
    out = sys.stdout
    if args.json:
        history.render_json(items, out)
    elif args.csv:
        history.render_csv(items, args.window, out)
    else:
        history.render(items, args.window, config, out, colour=colour_enabled(out))
