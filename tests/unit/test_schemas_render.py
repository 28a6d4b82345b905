"""The JSON shapes rendered from rows, without a server: what a history item's windows hold."""

from __future__ import annotations

from dataclasses import replace

from codexgate.api.schemas import history_json
from tests.helpers.builders import usage_row


def test_a_history_item_lists_the_fixed_windows_always_and_other_labels_when_reported() -> None:
    row = replace(
        usage_row(42.0),
        primary_window="daily",
        primary_used_percent=12.5,
        primary_window_minutes=1440,
        primary_resets_at=1_900_000_000,
    )
    windows = history_json(row)["windows"]
    assert list(windows) == ["5h", "7d", "monthly", "daily"]
    assert windows["7d"] is None
    assert windows["monthly"] is None
    assert windows["5h"] is not None
    assert windows["5h"]["used_percent"] == 42.0
    assert windows["daily"] == {
        "used_percent": 12.5,
        "window_minutes": 1440,
        "resets_at": 1_900_000_000,
        "resets_at_iso": "2030-03-17T17:46:40Z",
    }
