"""`codexgate history ACCOUNT`: an account's usage rows as a table, CSV or the API's JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from codexgate.cli.common import USAGE, CommandError
from codexgate.cli.output import UNKNOWN, Cell, csv_cell, json_text, table, used_cell
from codexgate.config import Config
from codexgate.core.models import FIVE_HOUR, MONTHLY, SEVEN_DAY

WINDOWS: Final = (FIVE_HOUR, SEVEN_DAY, MONTHLY)
HEADERS: Final = ("time", "limit", "window", "used", "resets at", "source")
CSV_HEADERS: Final = ("time", "limit", "window", "used_percent", "resets_at", "source")
_RELATIVE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhdw])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(raw: str, now: float, option: str) -> float:
    """Unix seconds, ISO-8601 (UTC unless it says otherwise) or a span back from now (24h)."""
    text = raw.strip()
    relative = _RELATIVE.fullmatch(text.lower())
    if relative is not None:
        return now - float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{option} must be unix seconds, an ISO-8601 time or a span such as 24h, 7d, 30m; "
            f"got {raw!r}",
            USAGE,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def lines(items: Sequence[Mapping[str, Any]], window: str | None) -> Iterator[tuple[Any, ...]]:
    """(time ISO, limit, window, used %, resets at ISO, source) per reported window of a row."""
    for item in items:
        for label in (window,) if window is not None else WINDOWS:
            reported = item["windows"].get(label)
            if reported is None:
                continue
            yield (
                item["captured_at_iso"],
                item["limit_id"],
                label,
                reported["used_percent"],
                reported["resets_at_iso"],
                item["source"],
            )


def render(
    items: Sequence[Mapping[str, Any]],
    window: str | None,
    config: Config,
    out: TextIO,
    *,
    colour: bool,
) -> None:
    """A table; unknown values say so."""
    rows: list[list[Cell | str]] = [
        [at, limit, label, used_cell(used, config), resets or UNKNOWN, source]
        for at, limit, label, used, resets, source in lines(items, window)
    ]
    if not rows:
        out.write("no history in this range\n")
        return
    out.write(table(HEADERS, rows, colour=colour))


def render_csv(items: Sequence[Mapping[str, Any]], window: str | None, out: TextIO) -> None:
    """CSV with a header row; an unknown value is an empty cell."""
    import csv  # here: `serve` imports this module for its arguments, never for CSV

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for at, limit, label, used, resets, source in lines(items, window):
        shown = "" if used is None else format(used, "g")
        # Text cells may come from the upstream (limit ids): none may start a formula.
        text = (csv_cell(str(at)), csv_cell(str(limit)), csv_cell(str(label)))
        writer.writerow((*text, shown, csv_cell(resets or ""), csv_cell(str(source))))


def render_json(items: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    """The REST API's history items, every page: {"items": [...]}."""
    out.write(json_text({"items": items}))
