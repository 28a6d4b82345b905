"""The committed usage traces (tests/data/traces) and straight lines of forecast samples."""

from __future__ import annotations

import json
from typing import Any, Final

from codexgate.core.forecast import Sample
from tests.helpers.paths import DATA

TRACES: Final = DATA / "traces"
START: Final = 1_750_000_000  # the traces' window start, unix seconds
TRACE_RESET: Final = START + 5 * 3600  # the 5h reset of a window that starts at START


def load_trace(name: str) -> dict[str, Any]:
    """A committed trace."""
    data: dict[str, Any] = json.loads((TRACES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def line(
    rate: float,
    minutes: float,
    *,
    start: float = START,
    used: float = 0.0,
    every: float = 180.0,
    resets_at: int | None = TRACE_RESET,
) -> list[Sample]:
    """Samples of exact use at `rate` percent per hour, one every `every` seconds."""
    count = int(minutes * 60 // every) + 1
    return [
        Sample(start + i * every, used + rate * i * every / 3600, resets_at) for i in range(count)
    ]
