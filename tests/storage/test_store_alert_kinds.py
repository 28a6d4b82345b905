"""The alerts list without some kinds: the overview's recent alerts leave the test alerts out."""

from __future__ import annotations

from codexgate.core.rows import NewAlert
from codexgate.storage.interface import Storage


async def test_alerts_without_the_excluded_kinds_newest_first(storage: Storage) -> None:
    fired = [
        NewAlert(at=1.0, kind="threshold", message="a", threshold=75.0),
        NewAlert(at=2.0, kind="test", message="t"),
        NewAlert(at=3.0, kind="limit_hit", message="b"),
        NewAlert(at=4.0, kind="test", message="t"),
    ]
    await storage.record_alerts(fired, [], [])
    real = await storage.alerts(limit=2, exclude_kinds=("test",))
    assert [(a.kind, a.at) for a in real] == [("limit_hit", 3.0), ("threshold", 1.0)]
    assert [a.kind for a in await storage.alerts(limit=10)] == [
        "test",
        "limit_hit",
        "test",
        "threshold",
    ]
    neither = await storage.alerts(exclude_kinds=("test", "threshold"))
    assert [a.kind for a in neither] == ["limit_hit"]
