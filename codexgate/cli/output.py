"""Plain-text tables and the colour rules of the offline commands."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

import orjson

from codexgate.config import Config
from codexgate.core.accounts import account_title
from codexgate.core.sanitize import escape_unsafe, escape_unsafe_json
from codexgate.core.text import percent

UNKNOWN: Final = "unknown"
# What a spreadsheet takes for the start of a formula in a CSV cell (OWASP's list).
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_RESET: Final = "\x1b[0m"
GREEN: Final = "\x1b[32m"
AMBER: Final = "\x1b[33m"
RED: Final = "\x1b[31m"


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: its text and, when colour is on, the ANSI colour it is drawn in."""

    text: str
    colour: str | None = None


def colour_enabled(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set to something (no-color.org)."""
    env = os.environ if environ is None else environ
    return stream.isatty() and not env.get("NO_COLOR")


def _escaped(cell: Cell | str) -> Cell:
    if isinstance(cell, Cell):
        return Cell(escape_unsafe(cell.text), cell.colour)
    return Cell(escape_unsafe(cell))


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]], *, colour: bool) -> str:
    """Left-aligned columns two spaces apart, a header line first; colour does not shift them.

    Control and bidi characters in a cell are shown escaped: cells hold text from traffic.
    """
    cells = [[_escaped(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell.text))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        parts = []
        for cell, width in zip(row, widths, strict=True):
            padded = cell.text.ljust(width)
            if colour and cell.colour is not None:
                # Pad first: escape codes take no columns on screen.
                padded = cell.colour + cell.text + _RESET + padded[len(cell.text) :]
            parts.append(padded)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def percent_text(used: float | None) -> str:
    """A used percent as 42% or 42.5%; unknown stays unknown, never 0."""
    return UNKNOWN if used is None else percent(used)


def used_cell(used: float | None, config: Config) -> Cell:
    """The used percent, green below --warn-percent, amber below --critical-percent, else red."""
    if used is None:
        return Cell(UNKNOWN)
    if used >= config.critical_percent:
        colour = RED
    elif used >= config.warn_percent:
        colour = AMBER
    else:
        colour = GREEN
    return Cell(percent_text(used), colour)


def account_label(account: Mapping[str, Any]) -> str:
    """How an account is called: its name, else its email, else "Account 3" (account_title)."""
    return account_title(int(account["id"]), account.get("display_name"), account.get("email"))


def json_text(value: Any) -> str:
    """Indented JSON for stdout, control and bidi characters escaped (it decodes the same)."""
    return escape_unsafe_json(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()) + "\n"


def csv_cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: escaped, and quoted with ' before a formula."""
    formula = text.startswith(_FORMULA_STARTS)
    text = escape_unsafe(text)
    return "'" + text if formula else text
