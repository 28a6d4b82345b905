"""The "use next" rule (core/use_next.py): room per window, per account, the order and the pick."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Final

from hypothesis import given
from hypothesis import strategies as st

from codexgate.core.rows import AccountWindows, LimitWindows, UsageRow
from codexgate.core.use_next import (
    SOON_MAX_SECONDS,
    AccountRoom,
    account_room,
    best,
    most_left,
    seat_limits,
    use_next,
    window_room,
)
from codexgate.core.windows import WindowValue
from codexgate.dashboard import views
from tests.helpers.builders import usage_row
from tests.helpers.node import run_module

NOW = 1_800_000_000.0
HOUR = 3600


def five_hour(used: float | None, resets_in: float | None = 4 * HOUR) -> WindowValue:
    return WindowValue("5h", used, 300, None if resets_in is None else int(NOW + resets_in))


def weekly(used: float | None, resets_in: float | None = 5 * 24 * HOUR) -> WindowValue:
    return WindowValue("7d", used, 10080, None if resets_in is None else int(NOW + resets_in))


def account(
    account_id: int,
    *windows: WindowValue,
    title: str | None = None,
    hit: str | None = None,
    hit_resets_in: float | None = None,
) -> AccountWindows:
    hit_at = None if hit_resets_in is None else int(NOW + hit_resets_in)
    limits = (LimitWindows("codex", windows, hit, hit_at),) if windows or hit else ()
    return AccountWindows(account_id, title or f"Seat {account_id}", limits)


def test_a_window_far_from_its_reset_has_what_is_left() -> None:
    assert window_room(five_hour(30.0), NOW) == 70.0
    assert window_room(weekly(0.0), NOW) == 100.0
    assert window_room(five_hour(130.0), NOW) == 0.0  # clamped, never negative


def test_a_window_that_resets_soon_counts_as_nearly_free() -> None:
    # 5h window: "soon" is its last 30 minutes; 15 minutes before the reset half the used part
    # is credited back, and at the reset all of it.
    assert window_room(five_hour(80.0, resets_in=15 * 60), NOW) == 20.0 + 80.0 * 0.5
    assert window_room(five_hour(80.0, resets_in=30 * 60), NOW) == 20.0
    # Weekly: a tenth of a week is longer than an hour; the hour caps it.
    assert window_room(weekly(80.0, resets_in=SOON_MAX_SECONDS / 2), NOW) == 60.0
    assert window_room(weekly(80.0, resets_in=2 * HOUR), NOW) == 20.0


def test_a_window_whose_reset_passed_counts_as_reset() -> None:
    assert window_room(five_hour(100.0, resets_in=-60), NOW) == 100.0


def test_an_unknown_window_is_unknown_and_a_window_without_reset_gets_no_credit() -> None:
    assert window_room(five_hour(None), NOW) is None
    assert window_room(five_hour(math.nan), NOW) is None
    assert window_room(five_hour(40.0, resets_in=None), NOW) == 60.0
    # A window of unknown length under another label: no "soon" credit either.
    assert window_room(WindowValue("daily", 40.0, None, int(NOW + 60)), NOW) == 60.0


def test_an_accounts_room_is_its_tightest_known_window() -> None:
    assert account_room(account(1, five_hour(10.0), weekly(70.0)), NOW).room == 30.0
    # Unknown windows neither help nor count as 0.
    assert account_room(account(1, five_hour(None), weekly(70.0)), NOW).room == 30.0
    assert account_room(account(1, five_hour(None), weekly(None)), NOW).room is None
    assert account_room(account(1), NOW).room is None  # no data at all


def test_at_the_limit_by_a_hit_or_a_used_up_window_until_it_is_back() -> None:
    hit = account_room(account(1, five_hour(50.0), hit="usage_limit_reached"), NOW)
    assert hit.at_limit
    assert not hit.usable
    back = account(1, five_hour(50.0), hit="usage_limit_reached", hit_resets_in=-1)
    assert not account_room(back, NOW).at_limit
    assert account_room(account(1, five_hour(100.0), weekly(10.0)), NOW).at_limit
    assert account_room(account(1, five_hour(100.0, resets_in=None)), NOW).at_limit
    reset = account_room(account(1, five_hour(100.0, resets_in=-1), weekly(10.0)), NOW)
    assert not reset.at_limit
    assert reset.room == 90.0


def test_the_pick_among_one_at_its_limit_one_nearly_used_and_one_with_room() -> None:
    accounts = [
        account(1, five_hour(100.0), weekly(20.0), title="Exhausted"),
        account(2, five_hour(92.0), weekly(40.0), title="Nearly used"),
        account(3, five_hour(35.0), weekly(50.0), title="Roomy"),
        account(4, title="No data"),
    ]
    ranked = most_left(accounts, NOW)
    assert [item.title for item in ranked] == ["Roomy", "Nearly used", "No data", "Exhausted"]
    chosen = use_next(ranked)
    assert chosen is not None
    assert chosen.account_id == 3
    assert chosen.room == 50.0


def test_nobody_is_chosen_when_every_account_is_at_its_limit_or_unknown() -> None:
    ranked = most_left([account(1, five_hour(100.0)), account(2)], NOW)
    assert use_next(ranked) is None
    assert use_next([]) is None


def test_ties_go_by_name_unnamed_last() -> None:
    items = [
        AccountWindows(3, None, (LimitWindows("codex", (five_hour(50.0),), None, None),)),
        AccountWindows(2, "beta", (LimitWindows("codex", (five_hour(50.0),), None, None),)),
        AccountWindows(1, "Alpha", (LimitWindows("codex", (five_hour(50.0),), None, None),)),
    ]
    assert [item.account_id for item in most_left(items, NOW)] == [1, 2, 3]


# -- properties -----------------------------------------------------------------------------

percents = st.one_of(st.none(), st.floats(min_value=0, max_value=120, allow_nan=False))
resets = st.one_of(st.none(), st.floats(min_value=-HOUR, max_value=8 * 24 * HOUR))


@st.composite
def accounts(draw: st.DrawFn, account_id: int) -> AccountWindows:
    hit = draw(st.sampled_from([None, "usage_limit_reached"]))
    hit_in = draw(resets)
    wins = (five_hour(draw(percents), draw(resets)), weekly(draw(percents), draw(resets)))
    return account(account_id, *wins, hit=hit, hit_resets_in=hit_in)


@given(
    st.lists(st.integers(1, 10_000), min_size=1, max_size=8, unique=True).flatmap(
        lambda ids: st.tuples(*(accounts(i) for i in ids))
    )
)
def test_an_account_at_its_limit_is_never_chosen(found: tuple[AccountWindows, ...]) -> None:
    chosen = use_next(most_left(found, NOW))
    assert best(found, NOW) == chosen  # the shortcut picks the same
    if chosen is not None:
        picked = next(item for item in found if item.account_id == chosen.account_id)
        assert not account_room(picked, NOW).at_limit
        assert chosen.room is not None
        # It has at least as much room as every other usable account.
        for item in found:
            room = account_room(item, NOW)
            if room.usable:
                assert room.room is not None
                assert room.room <= chosen.room


@given(
    st.floats(0, 100),
    st.floats(0, 100),
    st.one_of(st.none(), st.floats(-HOUR, 8 * 24 * HOUR)),
)
def test_more_remaining_never_ranks_lower(
    used: float, less_used: float, resets_in: float | None
) -> None:
    low, high = sorted((used, less_used))
    more_left = account(1, five_hour(low, resets_in), weekly(10.0), title="B")
    less_left = account(2, five_hour(high, resets_in), weekly(10.0), title="A")
    ranked = most_left([less_left, more_left], NOW)
    first = ranked[0]
    if not first.at_limit and first.account_id == 2:
        # Only a tie (equal room) may put the more used one first (by name).
        rooms = {item.account_id: item.room for item in ranked}
        assert rooms[1] == rooms[2]
    room_low = window_room(five_hour(low, resets_in), NOW)
    room_high = window_room(five_hour(high, resets_in), NOW)
    assert room_low is not None
    assert room_high is not None
    assert room_low >= room_high


def test_account_room_is_a_plain_value() -> None:
    assert AccountRoom(1, None, False, 10.0).usable
    assert not AccountRoom(1, None, False, None).usable


# --- the seat follows its main limit ------------------------------------------------------------


def other_limit(*windows: WindowValue, hit: str | None = None) -> LimitWindows:
    """One model's limit ("codex_other"): reached or not, it does not stop the seat."""
    return LimitWindows("codex_other", windows, hit, None if hit is None else int(NOW + HOUR))


def test_another_limit_reached_leaves_the_seat_usable_with_its_main_limits_room() -> None:
    main = account(1, five_hour(40.0))
    seat = AccountWindows(1, "Seat 1", (*main.limits, other_limit(hit="usage_limit_reached")))
    found = account_room(seat, NOW)
    assert (found.at_limit, found.room) == (False, 60.0)
    full = AccountWindows(1, "Seat 1", (*main.limits, other_limit(five_hour(100.0))))
    assert account_room(full, NOW).room == 60.0  # its window at 100 % counts for that model only
    assert use_next(most_left([seat, account(2, five_hour(70.0))], NOW)) == found


def test_the_main_limit_reached_stops_the_seat_whatever_the_others_say() -> None:
    main = account(1, five_hour(50.0), hit="usage_limit_reached")
    seat = AccountWindows(1, "Seat 1", (*main.limits, other_limit(five_hour(5.0))))
    assert account_room(seat, NOW).at_limit


def test_a_seat_without_its_main_limit_is_decided_by_the_others() -> None:
    only = AccountWindows(1, "Seat 1", (other_limit(hit="usage_limit_reached"),))
    assert account_room(only, NOW).at_limit
    room = AccountWindows(1, "Seat 1", (other_limit(five_hour(30.0)),))
    assert account_room(room, NOW).room == 70.0


def test_seat_limits_is_the_main_limit_else_all() -> None:
    main = LimitWindows("codex", (), None, None)
    other = other_limit()
    assert seat_limits((other, main)) == [main]
    assert seat_limits((other,)) == (other,)


# --- the page script's copy gives the same answers ----------------------------------------------

# A limit of a seat: (limit id, hit type, hit back in seconds from NOW (None: not said),
# [(window label, used as reported, resets in seconds from NOW (None: not said))]).
SeatLimit = tuple[str, str | None, float | None, list[tuple[str, float | None, float | None]]]
HIT: Final = "usage_limit_reached"
OTHER: Final = "codex_other"  # one model's limit
SEATS: Final[list[list[SeatLimit]]] = [
    [],
    [("codex", None, None, [("5h", 40.0, HOUR)]), (OTHER, HIT, HOUR, [])],
    [("codex", None, None, [("5h", 40.0, HOUR)]), (OTHER, None, None, [("5h", 100.0, HOUR)])],
    [("codex", HIT, HOUR, [("5h", 50.0, HOUR)]), (OTHER, None, None, [("5h", 5.0, HOUR)])],
    [("codex", HIT, -10, [("5h", 50.0, HOUR)])],  # back again
    [("codex", HIT, None, [])],  # no time said: it stays
    [("codex", None, None, [("5h", 100.0, -60), ("7d", 20.0, 86400)])],  # reset since
    [("codex", None, None, [("7d", 100.0, None)]), (OTHER, None, None, [])],
    [("codex", None, None, [("5h", 130.0, HOUR)])],
    [("codex", None, None, []), (OTHER, None, None, [("5h", 100.0, HOUR)])],
    [(OTHER, HIT, HOUR, [("5h", 10.0, HOUR)])],  # no main limit: the others decide
    [(OTHER, None, None, [("5h", 30.0, HOUR)]), ("codex_b", None, None, [("7d", 100.0, 60)])],
    [(OTHER, None, None, [("5h", None, HOUR), ("7d", None, -5)])],
]  # fmt: skip

SEAT_FACTS: Final = """
import { readFileSync } from "node:fs";
import { seatFacts } from "./web/static/js/windows.js";
const { seats, now } = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify(seats.map((limits) => seatFacts(limits, now, "codex", 100))));
"""


def _at(seconds: float | None) -> int | None:
    return None if seconds is None else int(NOW + seconds)


def _usage_row(limit: SeatLimit) -> UsageRow:
    limit_id, hit, hit_in, windows = limit
    fields: dict[str, object] = {"limit_id": limit_id, "limit_hit_type": hit}
    fields["limit_hit_resets_at"] = _at(hit_in) if hit else None
    for label, used, resets_in in windows:
        column = {"5h": "five_hour", "7d": "seven_day"}[label]
        fields[f"{column}_used_percent"] = used
        fields[f"{column}_window_minutes"] = 300 if label == "5h" else 10080
        fields[f"{column}_resets_at"] = _at(resets_in)
    return replace(usage_row(None, resets_at=None), **fields)  # type: ignore[arg-type]


def _card(seat: list[SeatLimit]) -> views.CardView:
    found = [views.limit_view(_usage_row(limit), NOW, views.Thresholds()) for limit in seat]
    return views.CardView(1, None, None, None, tuple(found), "Seat 1")


def _account(seat: list[SeatLimit]) -> AccountWindows:
    limits = tuple(
        LimitWindows(
            limit_id,
            tuple(
                WindowValue(label, used, 300 if label == "5h" else 10080, _at(resets_in))
                for label, used, resets_in in windows
            ),
            hit,
            _at(hit_in) if hit else None,
        )
        for limit_id, hit, hit_in, windows in seat
    )
    return AccountWindows(1, "Seat 1", limits)


def _script_limit(limit: SeatLimit) -> dict[str, object]:
    limit_id, hit, hit_in, windows = limit
    active = hit is not None and (hit_in is None or hit_in > 0)  # the card's data-hit-until
    return {
        "limitId": limit_id,
        "hit": {"resetsAt": _at(hit_in)} if active else None,
        "windows": [[used, _at(resets_in)] for _, used, resets_in in windows],
    }


def test_the_page_script_decides_a_seat_as_use_next_and_the_card_do() -> None:
    inputs = {"seats": [[_script_limit(limit) for limit in seat] for seat in SEATS], "now": NOW}
    written = run_module(SEAT_FACTS, inputs)
    expected = []
    for seat in SEATS:
        card = _card(seat)
        assert account_room(_account(seat), NOW).at_limit == card.at_limit(NOW), seat
        expected.append({"atLimit": card.at_limit(NOW), "maxUsed": card.max_used})
    assert written == expected
    # The cases above cover both answers, and a reached limit that does not decide the seat.
    assert [facts["atLimit"] for facts in expected[:4]] == [False, False, False, True]
    assert expected[1]["maxUsed"] == expected[2]["maxUsed"] == 40.0
