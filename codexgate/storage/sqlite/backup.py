"""SQLite backups: a consistent copy of a live file, and putting a copy back in its place.

Never a file copy: a WAL database's committed rows may live only in its -wal file, and a copy
taken while it is written can be torn. The copy goes through SQLite's online backup API, inside
one read transaction on the source, so that it is one snapshot and a writer in another process
does not make it start over.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# Pages copied per step, and the pause after each: the backup reads in bursts and leaves the
# disk to the running gateway in between (writers are never blocked: the snapshot is a WAL read).
PAGES_PER_STEP: Final = 1024
STEP_PAUSE: Final = 0.002
# A heartbeat younger than this from an instance not marked 'stopped' means it still serves
# (the instances' alive_for: they beat every 2 s).
ALIVE_SECONDS: Final = 30.0
BEFORE_RESTORE: Final = ".before-restore"
SIDECARS: Final = ("-wal", "-shm")
# Every connection to a WAL database holds a read lock on this byte of the -shm file while it is
# open (SQLite's os_unix.c: UNIX_SHM_DMS, the "dead man switch").
_SHM_DMS_OFFSET: Final = 128
# The tables the one-line summary counts.
_COUNTED: Final = ("usage_snapshots", "requests", "accounts")


class BackupError(Exception):
    """A backup or restore cannot go on; the message is one line."""


@dataclass(frozen=True, slots=True)
class Summary:
    """What a checked copy holds."""

    path: Path
    size: int
    schema_version: int
    rows: dict[str, int]  # per counted table; absent when the schema lacks it
    seconds: float


@dataclass(frozen=True, slots=True)
class Server:
    """A codexgate that said recently that it serves on the file."""

    hostname: str
    pid: int
    seen_ago: float


def backup(source: Path, dest: Path, *, force: bool) -> Summary:
    """Copy the database at source into dest (mode 0600, journal_mode DELETE), checked.

    The copy is written to a temporary name beside dest and renamed into place only once it
    passed integrity_check, so an interrupted backup leaves nothing under dest's name.
    """
    began = time.monotonic()
    if not source.is_file():
        raise BackupError(f"no database file at {source}; check --db")
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder; give the backup's file name")
    if not dest.parent.is_dir():
        raise BackupError(f"no folder {dest.parent} for the backup")
    if dest.exists() and not force:
        raise BackupError(f"{dest} exists; give another name, or --force to replace it")
    if _same_file(source, dest):
        raise BackupError(f"{dest} is the database itself")
    _remove_abandoned(dest.parent, f".{dest.name}.partial-")
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        with _reading(source) as reader:
            version = _user_version(reader)
            if version == 0:
                raise BackupError(f"{source} is not a codexgate database (schema version 0)")
            _copy(reader, partial)
        rows = _check(partial)
        _fsync(partial)
        if force:
            os.replace(partial, dest)
        else:
            # A link fails when dest appeared meanwhile: it is never overwritten without --force.
            try:
                os.link(partial, dest)
            except FileExistsError:
                raise BackupError(
                    f"{dest} exists; give another name, or --force to replace it"
                ) from None
            partial.unlink()
        _fsync(dest.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {source} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return Summary(dest, dest.stat().st_size, version, rows, time.monotonic() - began)


def check_source(source: Path, latest: int) -> int:
    """The schema version of a backup that passes integrity_check and is not newer than latest."""
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    try:
        with _reading(source) as reader:
            version = _user_version(reader)
            problems = _integrity_problems(reader)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {source}: {exc}") from exc
    if problems:
        raise BackupError(f"{source} fails integrity_check: {problems[0]}")
    if version == 0:
        raise BackupError(f"{source} is not a codexgate database (schema version 0)")
    if version > latest:
        raise BackupError(
            f"{source} has schema version {version}, newer than this codexgate ({latest}); "
            "restore it with the codexgate that wrote it"
        )
    return version


def serving(db: Path, now: float | None = None) -> list[Server]:
    """The codexgate instances whose heartbeat in the file says they serve on it now."""
    if not db.is_file():
        return []
    moment = time.time() if now is None else now
    try:
        with _reading(db) as reader:
            found = reader.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'instances'"
            ).fetchone()[0]
            if not found:
                return []  # older than schema 7: no heartbeats; holders() still sees them
            rows = reader.execute(
                "SELECT hostname, pid, seen_at FROM instances "
                "WHERE role != 'stopped' AND seen_at >= ? ORDER BY seen_at DESC",
                (moment - ALIVE_SECONDS,),
            ).fetchall()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {db}: {exc}") from exc
    return [Server(str(host), int(pid), max(0.0, moment - seen)) for host, pid, seen in rows]


def holders(db: Path) -> int | None:
    """The pid of a process on this machine that has the WAL database open, or None."""
    try:
        fd = os.open(db.with_name(db.name + "-shm"), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        # F_GETLK asks who would stop a write lock on the byte, taking nothing.
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS_OFFSET, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, probe)
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack("hhqqi", answer)
    return None if kind == fcntl.F_UNLCK else int(pid)


def restore(source: Path, db: Path, *, held: bool) -> Path | None:
    """Put a copy of source at db; the file it replaces is kept as <db>.before-restore.

    held: a process has db open (only with --force): its -wal and -shm are moved aside with it
    instead of being checkpointed and removed. Returns the kept file, or None when there was none.
    """
    _remove_abandoned(db.parent, f".{db.name}.restore-")
    partial = db.with_name(f".{db.name}.restore-{os.getpid()}")
    kept = db.with_name(db.name + BEFORE_RESTORE)
    try:
        with _reading(source) as reader:
            _copy(reader, partial)
        _fsync(partial)
        if db.exists():
            if not held:
                # Fold the -wal into the file; the last connection's close removes -wal and -shm.
                with contextlib.closing(sqlite3.connect(db)) as old:
                    old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            os.replace(db, kept)
            os.chmod(kept, 0o600)
            for suffix in SIDECARS:
                sidecar = db.with_name(db.name + suffix)
                if held:
                    # Whoever holds them keeps writing there: they stay paired with the old file.
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(sidecar, kept.with_name(kept.name + suffix))
                else:
                    # Nobody has the file open and its -wal is folded in: what is left is stale,
                    # and beside the restored file SQLite would replay it into it.
                    sidecar.unlink(missing_ok=True)
            result: Path | None = kept
        else:
            result = None
        os.replace(partial, db)
        _fsync(db.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"restore of {source} into {db} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return result


def _remove_abandoned(folder: Path, prefix: str) -> None:
    """Delete temporary files named prefix + PID whose process is gone (a killed backup's)."""
    for leftover in folder.glob(glob.escape(prefix) + "*"):
        pid = leftover.name.removeprefix(prefix)
        if not pid.isdigit() or int(pid) == os.getpid() or _process_exists(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to path inside one read transaction (one snapshot)."""
    reader = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("PRAGMA busy_timeout = 5000")
        reader.execute("BEGIN")
        # The snapshot starts at the first read: from here on every step sees the same pages.
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        yield reader
    finally:
        reader.close()


def _copy(reader: sqlite3.Connection, target: Path) -> None:
    """Copy reader's snapshot into a new file at target (0600), in journal_mode DELETE."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with contextlib.closing(sqlite3.connect(target, isolation_level=None)) as copy:
        reader.backup(copy, pages=PAGES_PER_STEP, progress=_pause)
        # The pages carry the source's WAL flag: the copy is one file on its own.
        copy.execute("PRAGMA journal_mode = DELETE")


def _pause(status: int, remaining: int, total: int) -> None:
    """Between two steps of the backup: leave the disk to the gateway for a moment."""
    if remaining:
        time.sleep(STEP_PAUSE)


def _check(path: Path) -> dict[str, int]:
    """integrity_check the copy; the counted tables' rows."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as copy:
        problems = _integrity_problems(copy)
        if problems:
            raise BackupError(f"the copy fails integrity_check: {problems[0]}")
        present = {
            str(row[0])
            for row in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        return {
            table: int(copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - constants
            for table in _COUNTED
            if table in present
        }


def _integrity_problems(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    return [] if [str(row[0]) for row in rows] == ["ok"] else [str(row[0]) for row in rows]


def _user_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except FileNotFoundError:
        return False


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
