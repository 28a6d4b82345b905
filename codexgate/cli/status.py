"""`codexgate status`: every account's windows, as a table or the API's JSON."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO

from codexgate.cli.output import AMBER, UNKNOWN, Cell, account_label, json_text, table, used_cell
from codexgate.config import Config
from codexgate.core.text import clock, duration

HEADERS: Final = (
    "id",
    "account",
    "limit",
    "window",
    "used",
    "resets in",
    "data age",
    "source",
    "stale",
)


def _resets_in(window: Mapping[str, Any]) -> str:
    """Time left until the window resets; "passed" once the reported time has gone by."""
    seconds = window.get("reset_in_seconds")
    if seconds is None:
        return UNKNOWN
    return "passed" if seconds < 0 else duration(seconds)


def _used(window: Mapping[str, Any], config: Config, now: float) -> Cell:
    """The used percent; a reset the gateway inferred says so: "0% (reset 14:05, inferred)"."""
    cell = used_cell(window["used_percent"], config)
    resets_at = window.get("resets_at")
    if not window.get("reset_inferred") or resets_at is None:
        return cell
    return Cell(f"{cell.text} (reset {clock(resets_at, now, None)}, inferred)", cell.colour)


def rows(
    accounts: Sequence[Mapping[str, Any]], config: Config, now: float | None = None
) -> list[list[Cell | str]]:
    """One row per reported window of each limit; an account or limit without any gets one.

    Clock times are this machine's local time, written as seen at `now` (default: the clock's).
    """
    at = time.time() if now is None else now
    lines: list[list[Cell | str]] = []
    for account in accounts:
        head: list[Cell | str] = [str(account["id"]), account_label(account)]
        if not account["limits"]:
            lines.append([*head, *[UNKNOWN] * 6, "-"])
        for limit in account["limits"]:
            tail: list[Cell | str] = [
                duration(limit["age_seconds"]),
                limit["source"],
                Cell("yes", AMBER) if limit["stale"] else "no",
            ]
            windows = [(k, w) for k, w in limit["windows"].items() if w is not None]
            if not windows:
                lines.append([*head, limit["limit_id"], UNKNOWN, UNKNOWN, UNKNOWN, *tail])
            for label, window in windows:
                lines.append(
                    [
                        *head,
                        limit["limit_id"],
                        label,
                        _used(window, config, at),
                        _resets_in(window),
                        *tail,
                    ]
                )
    return lines


def render(
    accounts: Sequence[Mapping[str, Any]], config: Config, out: TextIO, *, colour: bool
) -> None:
    """Write the status table, or say that there is nothing yet."""
    if not accounts:
        out.write("no accounts yet: they appear with the first request through codexgate\n")
        return
    out.write(table(HEADERS, rows(accounts, config), colour=colour))


def render_json(accounts: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    """The REST API's accounts list: {"accounts": [...]}."""
    out.write(json_text({"accounts": accounts}))
