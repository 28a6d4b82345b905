"""Storage contract: the overview statement (summary counts, the order of every sort, upcoming
resets) agrees with the card rules of dashboard/views.py, which it writes again in SQL."""

from __future__ import annotations

import random
import time

from codexgate.core.models import LimitHit, LimitReport, Slot, Snapshot, UsageReport, Window
from codexgate.dashboard import views
from codexgate.storage.interface import Storage
from tests.helpers.builders import identity

# Names that sort differently by bytes, by case and by accents; None and "" fall back to email.
NAMES = ("alpha", "Beta", "beta", "Émile", "zoë", "", None, "Zed", "ALPHA", "mu")


def _window(rng: random.Random, now: float, slot: Slot, label: str, minutes: int) -> Window:
    used = rng.choice((0.0, 12.5, 79.9, 80.0, 95.0, 100.0, round(rng.uniform(0, 100), 1)))
    reset = int(now + rng.choice((-600, 60, 3600, 86400)) + rng.randint(0, 999))
    return Window(slot, label, "length", used, minutes, reset)


def _report(rng: random.Random, now: float) -> UsageReport:
    """Mostly 5h and 7d, some not reported (unknown, never 0 %), some past their reset, a slot
    under a label that is not a fixed window, a second limit family, a limit hit on either."""
    second: tuple[Slot, str, int] = (
        ("secondary", "90m", 90) if rng.random() < 0.2 else ("secondary", "7d", 10080)
    )
    windows = tuple(
        _window(rng, now, *shape)
        for shape in (("primary", "5h", 300), second)
        if rng.random() > 0.15
    )
    # Some seats report only another family (one model's limit): then it decides the seat.
    limits = [LimitReport("codex", None, windows)] if rng.random() > 0.1 else []
    if rng.random() < 0.3 or not limits:
        limits.append(
            LimitReport("codex_bengalfox", None, (_window(rng, now, "primary", "5h", 300),))
        )
    hit = None
    active = None
    if rng.random() < 0.25:
        hit = LimitHit("usage_limit_reached", int(now + rng.choice((-60, 1800))))
        # A quota error for one model's limit is filed under it, and does not stop the seat.
        active = rng.choice(("codex", "codex_bengalfox", None))
    return UsageReport(limits=tuple(limits), limit_hit=hit, active_limit=active)


async def test_the_overview_agrees_with_the_card_rules(storage: Storage) -> None:
    rng = random.Random(20261203)
    now = time.time()
    snapshots = [
        Snapshot(
            identity(
                f"seat:acct-{number}:user-{number}",
                email=None if number % 7 == 0 else f"seat{number}@example.com",
            ),
            now - rng.uniform(0, 600),
            "headers",
            _report(rng, now),
            200,
        )
        for number in range(1, 41)
    ]
    await storage.record(snapshots)
    for account in await storage.accounts():
        name = NAMES[account.id % len(NAMES)]
        if name is not None:
            await storage.update_account(account.id, display_name=name, now=now)
    await storage.create_account(identity("seat:acct-99:user-99", email=None), None, now)

    thresholds = views.Thresholds()
    cards = views.cards(
        await storage.accounts(), await storage.latest_usage(), now, thresholds, None
    )
    expected = views.summary(cards, now, thresholds)
    for sort in views.SORTS:
        found = await storage.overview(
            now=now, critical=thresholds.critical, sort=sort, offset=0, limit=1000, resets=5
        )
        assert found.account_ids == [c.account_id for c in views.sort_cards(cards, sort, now)], sort
        assert (found.accounts, found.near_limit, found.at_limit) == (
            expected.accounts,
            expected.near_limit,
            expected.at_limit,
        )
        assert found.resets[0].at == expected.soonest_reset
        assert found.resets[0].title == expected.soonest_reset_account
        # A page is a slice of the same order.
        page = await storage.overview(
            now=now, critical=thresholds.critical, sort=sort, offset=10, limit=7, resets=0
        )
        assert page.account_ids == found.account_ids[10:17]
    assert expected.at_limit > 0
    assert expected.near_limit > 0
