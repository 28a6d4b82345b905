"""`codexgate copy-db --from PATH --to URL`: move a SQLite database into PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from codexgate.cli.common import FAILURE, OK, USAGE, CommandError
from codexgate.cli.output import GREEN, RED, Cell, colour_enabled, table
from codexgate.config import Config
from codexgate.storage.interface import StorageSetupError, StorageUnavailable
from codexgate.storage.location import PostgresURL, parse_database

if TYPE_CHECKING:
    from codexgate.storage.copy import CopyProgress, CopyReport

INTERRUPTED: Final = 130  # 128 + SIGINT, as a shell reports it
# A terminal's progress line is drawn at most this often.
REDRAW_SECONDS: Final = 0.1
_BAR_WIDTH: Final = 24
_NOT_COPIED: Final = "not copied: signed-in browsers sign in again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--from, --to and --into-non-empty."""
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="PATH",
        help="the SQLite database file to copy (opened read-only; run `codexgate migrate --db "
        "PATH` first if it is not at the newest schema)",
    )
    parser.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="URL",
        help="the PostgreSQL database to copy into, as postgresql://user@host:5432/dbname "
        "(created tables and all); it must hold no codexgate data yet",
    )
    parser.add_argument(
        "--into-non-empty",
        action="store_true",
        help="copy into a database that holds codexgate data already, skipping the rows whose "
        "id (or webhook URL, or setting) is there",
    )


def run(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    """Copy, drawing progress on err and the counts on out; 0 when every count matches.

    Errors are CommandError; Ctrl-C ends it with exit 130 and says how to resume.
    """
    source, target = _locations(args.source, args.target)
    heading = f"{source} into {target.where}; sessions are {_NOT_COPIED}"
    progress: TerminalProgress | LineProgress = (
        TerminalProgress(err, heading) if err.isatty() else LineProgress(err, heading)
    )
    try:
        report = asyncio.run(_copy(source, target, args.into_non_empty, config, progress))
    except (KeyboardInterrupt, _Interrupted):
        progress.abandon()
        err.write("codexgate: interrupted; run the same command again to resume\n")
        return INTERRUPTED
    except CommandError:
        progress.abandon()
        raise
    _print_counts(report, target, out)
    return OK if report.ok else FAILURE


def _locations(source: str, target: str) -> tuple[Path, PostgresURL]:
    """--from as a file path and --to as a PostgreSQL URL, or a CommandError (usage)."""
    try:
        where_from = parse_database(source)
    except ValueError as exc:
        raise CommandError(f"--from: {exc}", USAGE) from None
    if not isinstance(where_from, Path):
        raise CommandError("--from must be a SQLite database file, not a URL", USAGE)
    try:
        where_to = parse_database(target)
    except ValueError as exc:
        raise CommandError(f"--to: {exc}", USAGE) from None
    if not isinstance(where_to, PostgresURL):
        raise CommandError(
            "--to must be a postgresql:// URL (to copy one SQLite file into another, copy the "
            "file)",
            USAGE,
        )
    # Absolute: the unfinished copy's marker names the file so, and so do the messages.
    return where_from.absolute(), where_to


async def _copy(
    source: Path,
    target: PostgresURL,
    into_non_empty: bool,
    config: Config,
    progress: TerminalProgress | LineProgress,
) -> CopyReport:
    """Run the copy; its errors as CommandError, Ctrl-C as _Interrupted."""
    # Imported here: the other commands never load the PostgreSQL driver.
    from codexgate.storage.copy import CopyError, copy_sqlite_to_postgres

    guarded = _StopOnInterrupt(progress)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def interrupt() -> None:
        if guarded.interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C: out at once
        guarded.interrupted = True
        main.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        return await copy_sqlite_to_postgres(
            source,
            target,
            into_non_empty=into_non_empty,
            progress=guarded,
            connect_timeout=config.db_connect_timeout,
        )
    except asyncio.CancelledError:
        if guarded.interrupted:
            raise _Interrupted from None
        raise
    except (CopyError, StorageSetupError) as exc:
        raise CommandError(str(exc)) from None
    except StorageUnavailable as exc:
        raise CommandError(
            f"lost PostgreSQL at {target.where} ({exc}); run the same command again to resume"
        ) from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)


class _Interrupted(Exception):
    """Ctrl-C reached the copy; what was committed stays, and the same command resumes."""


class _StopOnInterrupt:
    """Progress that ends the copy at its next step once Ctrl-C was pressed. Cancelling the task
    is not always enough: an await inside the driver can complete instead of raising (seen once
    in a loaded test run: the copy went on to the end), so each committed batch looks again."""

    def __init__(self, progress: CopyProgress) -> None:
        self._progress = progress
        self.interrupted = False

    def began(self, resumed: bool) -> None:
        self._stop_if_interrupted()
        self._progress.began(resumed)

    def started(self, table: str, total: int, done: int) -> None:
        self._stop_if_interrupted()
        self._progress.started(table, total, done)

    def advanced(self, table: str, done: int) -> None:
        self._progress.advanced(table, done)
        self._stop_if_interrupted()

    def finished(self, table: str, done: int) -> None:
        self._progress.finished(table, done)
        self._stop_if_interrupted()

    def _stop_if_interrupted(self) -> None:
        if self.interrupted:
            raise _Interrupted


class _Progress:
    """What both kinds of progress share: the opening line, and ending an open line."""

    def __init__(self, stream: TextIO, heading: str) -> None:
        self._stream = stream
        self._heading = heading  # "SOURCE into host:port/db; ..."
        self._started = 0.0
        self._already = 0

    def began(self, resumed: bool) -> None:
        """Say what is copied where, once both ends are checked."""
        opening = "resuming the unfinished copy of" if resumed else "copying"
        self._stream.write(f"{opening} {self._heading}\n")
        self._stream.flush()

    def abandon(self) -> None:
        """End a line left open, so that an error starts on a line of its own."""


class LineProgress(_Progress):
    """Not a terminal: one line per table once it is copied."""

    def started(self, table: str, total: int, done: int) -> None:
        self._started = time.monotonic()
        self._already = done

    def advanced(self, table: str, done: int) -> None:
        pass

    def finished(self, table: str, done: int) -> None:
        seconds = time.monotonic() - self._started
        there = f" ({self._already} there already)" if self._already else ""
        self._stream.write(f"{table}: {done} rows{there} in {seconds:.1f} s\n")
        self._stream.flush()


class TerminalProgress(_Progress):
    """A terminal: one line per table redrawn in place (bar, rows, rate), ended by a newline."""

    def __init__(self, stream: TextIO, heading: str) -> None:
        super().__init__(stream, heading)
        self._table = ""
        self._total = 0
        self._drawn = 0.0
        self._open = False  # a line is drawn without its newline yet

    def started(self, table: str, total: int, done: int) -> None:
        self._table, self._total, self._already = table, total, done
        self._started = time.monotonic()
        self._draw(done)

    def advanced(self, table: str, done: int) -> None:
        if time.monotonic() - self._drawn >= REDRAW_SECONDS:
            self._draw(done)

    def finished(self, table: str, done: int) -> None:
        self._draw(done)
        self._stream.write("\n")
        self._open = False
        self._stream.flush()

    def abandon(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._open = False

    def _draw(self, done: int) -> None:
        now = time.monotonic()
        self._drawn = now
        share = done / self._total if self._total else 1.0
        filled = min(_BAR_WIDTH, int(share * _BAR_WIDTH))
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        elapsed = now - self._started
        rate = (done - self._already) / elapsed if elapsed > 0 else 0.0
        line = (
            f"{self._table:<16} [{bar}] {done:>{len(str(self._total))}}/{self._total} "
            f"{share:>4.0%}  {rate:,.0f} rows/s"
        )
        # \r back to the line's start, \x1b[K erases what a longer earlier line left.
        self._stream.write(f"\r{line}\x1b[K")
        self._stream.flush()
        self._open = True


def _print_counts(report: CopyReport, target: PostgresURL, out: TextIO) -> None:
    """The table of counts, source against target, and the verdict."""
    colour = colour_enabled(out)
    headers = ["table", "source", "target"]
    if report.into_non_empty:
        headers.append("skipped")
    headers.append("")
    rows: list[list[Cell | str]] = []
    for count in report.counts:
        if count.target is None:
            row: list[Cell | str] = [count.table, str(count.source), "-"]
            verdict = Cell(_NOT_COPIED)
        else:
            row = [count.table, str(count.source), str(count.target)]
            matches = report.matches(count)
            verdict = Cell("ok", GREEN) if matches else Cell("MISMATCH", RED)
        if report.into_non_empty:
            row.append(str(count.skipped) if count.copied else "-")
        rows.append([*row, verdict])
    out.write(table(headers, rows, colour=colour) + "\n")
    if report.into_non_empty:
        out.write(
            "with --into-non-empty the target's own rows count too: ok means at least as many\n"
            "rows as the source; skipped rows had their id (or key) there already\n"
        )
    if report.ok:
        out.write(f"copied {report.source} into {target.masked}\n")
    else:
        out.write(
            "the counts differ: the file changed between an interrupted copy and this one, or\n"
            "something wrote to the target meanwhile; copy again into an empty database, with\n"
            "no codexgate running on either\n"
        )
