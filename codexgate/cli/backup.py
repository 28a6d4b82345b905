"""`codexgate backup DEST` and `codexgate restore SRC`: a SQLite database's copy, and back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final, TextIO

from codexgate import paths
from codexgate.cli.common import OK, USAGE, CommandError
from codexgate.config import Config
from codexgate.storage.interface import StorageSetupError
from codexgate.storage.location import PostgresURL
from codexgate.storage.migrations import read_migrations

POSTGRES_RECIPE: Final = "docs/operations.md#backups"


def add_backup_arguments(parser: argparse.ArgumentParser) -> None:
    """DEST and --force."""
    parser.add_argument("dest", metavar="DEST", help="the backup file to write")
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """SRC and --force."""
    parser.add_argument("source", metavar="SRC", help="the backup file to restore")
    parser.add_argument(
        "--force",
        action="store_true",
        help="restore even though a codexgate seems to serve on --db",
    )


def run_backup(args: argparse.Namespace, config: Config, out: TextIO) -> int:
    """Write the copy and print one line about it."""
    # Imported when the command runs: `serve` declares its arguments, nothing more.
    from codexgate.storage.sqlite import backup as sqlite_backup

    db = _sqlite_file(config, "backup")
    try:
        summary = sqlite_backup.backup(db, _path(args.dest, "DEST"), force=args.force)
    except (sqlite_backup.BackupError, OSError) as exc:
        raise CommandError(str(exc)) from None
    rows = summary.rows
    out.write(
        f"{summary.path}: {summary.size} bytes, schema version {summary.schema_version}, "
        f"{rows.get('usage_snapshots', 0)} usage history rows, {rows.get('requests', 0)} "
        f"requests, {rows.get('accounts', 0)} accounts, {summary.seconds:.1f} s\n"
    )
    return OK


def run_restore(args: argparse.Namespace, config: Config, out: TextIO) -> int:
    """Check the backup and that nothing serves on --db, then put the backup in its place."""
    from codexgate.storage.sqlite import backup as sqlite_backup

    db = _sqlite_file(config, "restore")
    source = _path(args.source, "SRC")
    try:
        latest = read_migrations(paths.migrations_dir())[-1].number
        version = sqlite_backup.check_source(source, latest)
        servers = sqlite_backup.serving(db)
        holder = sqlite_backup.holders(db)
        if servers and not args.force:
            server = servers[0]
            raise CommandError(
                f"a codexgate serves on {db} (host {server.hostname}, pid {server.pid}, "
                f"seen {server.seen_ago:.0f} s ago); stop it first, or --force"
            )
        if holder is not None and not args.force:
            raise CommandError(
                f"{db} is open in process {holder} on this machine; stop it first, or --force"
            )
        kept = sqlite_backup.restore(source, db, held=holder is not None)
    except (sqlite_backup.BackupError, StorageSetupError, OSError) as exc:
        raise CommandError(str(exc)) from None
    pending = latest - version
    after = (
        f"; the next start (or `codexgate migrate`) applies {pending} migration"
        f"{'s' if pending != 1 else ''}"
        if pending
        else ""
    )
    before = f"; the replaced file is {kept}" if kept is not None else ""
    out.write(f"restored {source} into {db} (schema version {version}{after}){before}\n")
    return OK


def _sqlite_file(config: Config, command: str) -> Path:
    """--db as a file, or the one-line pointer to pg_dump for a PostgreSQL database."""
    if isinstance(config.db, PostgresURL):
        tool = "pg_dump" if command == "backup" else "pg_restore"
        raise CommandError(
            f"{command} works on a SQLite file; for PostgreSQL use {tool} ({POSTGRES_RECIPE})"
        )
    return config.db


def _path(raw: str, name: str) -> Path:
    if not raw.strip():
        raise CommandError(f"{name} must not be empty", USAGE)
    return Path(raw).expanduser()
