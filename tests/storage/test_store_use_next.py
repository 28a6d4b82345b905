"""Storage contract: latest_windows, what the "use next" rule reads of every account."""

from __future__ import annotations

from codexgate.core.models import LimitReport, Window
from codexgate.core.rows import LimitWindows
from codexgate.core.windows import WindowValue
from codexgate.storage.interface import Storage
from tests.helpers.builders import OTHER, T0, identity, snap, windows


async def test_every_account_with_the_windows_of_each_familys_newest_row(storage: Storage) -> None:
    first = identity()
    await storage.record([snap(T0, who=first, wins=windows(10.0, 40.0))])
    newer = (
        LimitReport("codex", None, windows(25.0, 45.0)),
        LimitReport("codex_other", "Other", (Window("primary", "5h", "length", 70.0, 300, 99),)),
    )
    await storage.record([snap(T0 + 400, who=first, limits=newer)])
    await storage.record([snap(T0, who=OTHER, wins=())])  # a report with no window
    [one, two] = await storage.accounts()
    await storage.update_account(two.id, display_name="Second")
    found = await storage.latest_windows()
    assert [(item.account_id, item.title) for item in found] == [
        (one.id, "one@example.com"),
        (two.id, "Second"),
    ]
    codex, other = found[0].limits
    assert codex.limit_id == "codex"
    assert [(w.label, w.used_percent) for w in codex.windows] == [("5h", 25.0), ("7d", 45.0)]
    assert other == LimitWindows("codex_other", (WindowValue("5h", 70.0, 300, 99),), None, None)
    assert [w.used_percent for w in found[1].limits[0].windows] == []


async def test_an_account_without_usage_is_listed_with_no_limits(storage: Storage) -> None:
    account, _ = await storage.create_account(identity(), None, T0)
    [found] = await storage.latest_windows()
    assert (found.account_id, found.title, found.limits) == (account.id, "one@example.com", ())
