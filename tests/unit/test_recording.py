"""The pure rules of recording: insert-or-confirm, identity merge, the max_accounts refusal."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexgate.core.limits import MAIN_LIMIT, report_limit_id
from codexgate.core.models import (
    Credits,
    LimitHit,
    LimitReport,
    RequestRecord,
    Snapshot,
    Source,
    SpendControl,
    SpendLimit,
    UsageReport,
)
from codexgate.core.recording import (
    VALUE_FIELDS,
    NewestRow,
    Sample,
    Sampler,
    UsageKey,
    UsageValues,
    admit_accounts,
    limits,
    plan_usage,
    same_values,
    samples,
    seen_accounts,
    split_batch,
    unproven_keys,
    usage_values,
)
from codexgate.core.rows import spend_limits_of
from codexgate.core.windows import UNCHANGED_RESET_SECONDS
from tests.helpers.builders import FIVE_H_RESET, T0, identity, request_record, snap, windows

HEARTBEAT = 300.0
TOLERANCE = int(UNCHANGED_RESET_SECONDS)
KEY = (1, "codex")
OTHER_KEY = (2, "codex")


def sample(at: float, used: float = 10.0, reset: int = FIVE_H_RESET) -> Sample:
    snapshot = snap(at=at, wins=windows(used, five_hour_reset=reset))
    [report] = snapshot.report.limits
    return Sample(KEY, at, "headers", 200, usage_values(snapshot, report))


def values(used: float = 10.0, reset: int = FIVE_H_RESET) -> UsageValues:
    return sample(T0, used, reset).values


def test_values_are_laid_out_like_the_value_fields() -> None:
    laid_out = dict(zip(VALUE_FIELDS, values(42.0), strict=True))
    assert laid_out["five_hour_used_percent"] == 42.0
    assert laid_out["five_hour_resets_at"] == FIVE_H_RESET
    assert laid_out["primary_window"] == "5h"
    assert laid_out["plan_type"] == "plus"  # the token's claim when the report has none


@given(st.integers(-TOLERANCE, TOLERANCE))
def test_a_reset_time_within_the_tolerance_is_the_same(moved: int) -> None:
    assert same_values(values(), values(reset=FIVE_H_RESET + moved))


@given(st.integers(TOLERANCE + 1, 10**6), st.booleans())
def test_a_reset_time_beyond_the_tolerance_differs(moved: int, earlier: bool) -> None:
    assert not same_values(values(), values(reset=FIVE_H_RESET + (-moved if earlier else moved)))


def test_a_used_percent_that_moved_differs() -> None:
    assert not same_values(values(10.0), values(10.5))


def test_the_first_sample_inserts_and_the_same_values_confirm() -> None:
    plan = plan_usage([sample(T0), sample(T0 + 10)], {KEY: None}, heartbeat=HEARTBEAT, next_id=7)
    [row] = plan.inserts
    assert (row.id, row.captured_at, row.confirmed_at) == (7, T0, T0 + 10)
    assert (plan.inserted, plan.confirmed, plan.confirms) == (1, 1, {})
    assert plan.newest[KEY] == NewestRow(7, values(), T0, T0 + 10)


def test_the_same_values_confirm_the_newest_row_of_the_table() -> None:
    newest = {KEY: NewestRow(3, values(), T0, T0 + 5)}
    plan = plan_usage([sample(T0 + 60)], newest, heartbeat=HEARTBEAT, next_id=9)
    assert (plan.inserts, plan.confirms) == ([], {KEY: (3, T0 + 60)})


def test_the_heartbeat_writes_a_new_row_of_the_same_values() -> None:
    newest = {KEY: NewestRow(3, values(), T0, T0 + 5)}
    plan = plan_usage([sample(T0 + HEARTBEAT)], newest, heartbeat=HEARTBEAT, next_id=9)
    assert [row.id for row in plan.inserts] == [9]


def test_a_sample_captured_before_the_newest_row_is_superseded_not_written() -> None:
    # Another instance committed it late: the newest row is the newer report and stays so.
    newest = {KEY: NewestRow(3, values(), T0, T0)}
    plan = plan_usage([sample(T0 - 50, used=90.0)], newest, heartbeat=HEARTBEAT, next_id=9)
    assert (plan.inserts, plan.confirms, plan.superseded) == ([], {}, 1)
    assert plan.newest == {}  # unchanged


@given(st.lists(st.tuples(st.floats(0, 1000), st.sampled_from([10.0, 20.0])), max_size=30))
def test_every_sample_is_inserted_or_confirmed_once(steps: list[tuple[float, float]]) -> None:
    batch = [sample(T0 + at, used) for at, used in sorted(steps)]
    plan = plan_usage(batch, {KEY: None}, heartbeat=HEARTBEAT, next_id=1)
    assert plan.inserted + plan.confirmed == len(batch)
    assert [row.id for row in plan.inserts] == list(range(1, plan.inserted + 1))
    assert plan.confirms == {}  # nothing was in the table
    for earlier, later in zip(plan.inserts, plan.inserts[1:], strict=False):
        assert earlier.captured_at <= later.captured_at


def test_identities_merge_newest_first_and_keep_known_fields() -> None:
    who = identity()
    older = snap(at=T0, who=who)
    newer = snap(at=T0 + 5, who=identity(email=None, plan="pro"))
    seen = seen_accounts([older, newer], [])
    account = seen[who.account_key]
    assert (account.first_seen_at, account.last_seen_at) == (T0, T0 + 5)
    assert (account.email, account.plan_type) == ("one@example.com", "pro")


def test_a_snapshot_s_report_plan_wins_over_a_request_at_the_same_time() -> None:
    who = identity(plan="plus")
    proven = RequestRecord(
        started_at=T0,
        identity=identity(plan="team"),
        method="POST",
        path="/",
        transport="sse",
        status=200,
    )
    seen = seen_accounts([snap(at=T0, who=who, plan="pro")], [proven])
    assert seen[who.account_key].plan_type == "pro"


def test_unproven_requests_name_only_accounts_the_batch_did_not_prove() -> None:
    other = identity("seat:acct-9:user-9")
    unproven = RequestRecord(
        started_at=T0,
        identity=other,
        method="POST",
        path="/",
        transport="sse",
        status=200,
        proven=False,
    )
    seen = seen_accounts([snap()], [])
    assert unproven_keys([unproven, request_record()], seen) == [other.account_key]


@given(st.integers(0, 10), st.integers(0, 20), st.none() | st.integers(0, 20))
def test_max_accounts_admits_new_seats_in_order_up_to_the_limit(
    new: int, existing: int, max_accounts: int | None
) -> None:
    seats = [f"seat-{n}" for n in range(new)]
    admitted, refused = admit_accounts(seats, existing, max_accounts)
    assert admitted + refused == seats
    if max_accounts is None:
        assert refused == []
    else:
        assert len(admitted) == min(new, max(0, max_accounts - existing))


def test_a_hit_without_windows_adds_a_codex_limit() -> None:
    report = UsageReport(limits=(), limit_hit=LimitHit("usage_limit_reached", FIVE_H_RESET))
    snapshot = Snapshot(identity=identity(), captured_at=T0, source="error", report=report)
    assert [limit.limit_id for limit in limits(snapshot)] == [MAIN_LIMIT]


def _by_limit(report: UsageReport, source: Source = "error") -> dict[str, dict[str, Any]]:
    """Each limit row a report writes, by limit id, as {value field: value}."""
    snapshot = Snapshot(identity(), T0, source, report, 429 if source == "error" else 200)
    return {s.key[1]: dict(zip(VALUE_FIELDS, s.values, strict=True)) for s in samples(snapshot, 1)}


# What a report says for the limit it is about, beside windows; every row has them or NULL.
_ITS_OWN = (
    "rate_limit_reached_type",
    "limit_hit_type",
    "limit_hit_resets_at",
    "spend_control_reached",
    "spend_reached_limit_type",
    "spend_limits",
    "reset_credits",
    "promo_message",
)


@pytest.mark.parametrize(
    ("active", "limit_id"),
    [
        (None, "codex"),
        ("codex", "codex"),
        ("codex_other", "codex_other"),
        ("codex-other", "codex_other"),
        ("Codex-Bengalfox", "codex_bengalfox"),
        ("", "codex"),
        ("!!!", "codex"),
        ("x" * 65, "codex"),
    ],
)
def test_a_report_is_about_the_limit_its_active_limit_names(
    active: str | None, limit_id: str
) -> None:
    assert report_limit_id(UsageReport(limits=(), active_limit=active)) == limit_id


def test_a_quota_error_goes_on_the_row_of_the_active_limit_only() -> None:
    codex = LimitReport("codex", None, windows(40.0))
    other = LimitReport("codex_other", "gpt-5.2-codex-sonic", windows(100.0))
    report = UsageReport(
        limits=(codex, other),
        plan_type="pro",
        active_limit="codex-other",
        credits=Credits(True, False, "5"),
        rate_limit_reached_type="rate_limit_reached",
        promo_message="Try the new model",
        limit_hit=LimitHit("usage_limit_reached", FIVE_H_RESET),
    )
    rows = _by_limit(report)
    assert list(rows) == ["codex", "codex_other"]
    assert rows["codex_other"]["limit_hit_type"] == "usage_limit_reached"
    assert rows["codex_other"]["limit_hit_resets_at"] == FIVE_H_RESET
    assert rows["codex_other"]["rate_limit_reached_type"] == "rate_limit_reached"
    assert rows["codex_other"]["promo_message"] == "Try the new model"
    assert {rows["codex"][name] for name in _ITS_OWN} == {None}
    # What the reference copies to every family stays on every row.
    for row in rows.values():
        assert (row["plan_type"], row["active_limit"], row["credits_balance"]) == (
            "pro",
            "codex-other",
            "5",
        )


def test_a_quota_error_for_a_limit_without_windows_writes_a_windowless_row() -> None:
    codex = LimitReport("codex", None, windows(100.0))
    report = UsageReport(
        limits=(codex,),
        active_limit="premium",
        limit_hit=LimitHit("usage_limit_reached", FIVE_H_RESET),
    )
    rows = _by_limit(report)
    assert list(rows) == ["premium", "codex"]
    assert rows["premium"]["limit_hit_type"] == "usage_limit_reached"
    assert rows["premium"]["five_hour_used_percent"] is None
    # "codex" keeps its full window, and no quota error of its own.
    assert (rows["codex"]["five_hour_used_percent"], rows["codex"]["limit_hit_type"]) == (
        100.0,
        None,
    )
    # The windowless report is one object per id, so that Sampler remembers its layout.
    again = Snapshot(identity(), T0 + 1, "error", report, 429)
    first = Snapshot(identity(), T0, "error", report, 429)
    assert limits(first)[0] is limits(again)[0]


def test_a_usage_body_s_account_wide_fields_go_on_the_main_limit_only() -> None:
    group = SpendLimit("group_shared", "100", "82", "18", 82.0, 18.0, FIVE_H_RESET, "g1", "Eng")
    spend = SpendControl(
        reached=True,
        limit="50",
        used="10",
        reached_limit_type="group_shared",
        limits=(SpendLimit("individual", "50", "10"), group),
    )
    report = UsageReport(
        limits=(
            LimitReport("codex", None, windows(20.0)),
            LimitReport("code_review", None, windows(3.0)),
        ),
        rate_limit_reached_type="workspace_member_credits_depleted",
        spend_control=spend,
        reset_credits=3,
    )
    rows = _by_limit(report, "usage_body")
    codex = rows["codex"]
    assert codex["rate_limit_reached_type"] == "workspace_member_credits_depleted"
    assert (codex["spend_control_reached"], codex["spend_limit"]) == (1, "50")
    assert codex["spend_reached_limit_type"] == "group_shared"
    assert spend_limits_of(codex["spend_limits"]) == spend.limits
    assert codex["reset_credits"] == 3
    assert {rows["code_review"][name] for name in _ITS_OWN} == {None}


def _spend_values(resets_at: int, used: str = "82") -> UsageValues:
    limit = SpendLimit("group_shared", "100", used, None, None, None, resets_at, "g1", "Eng")
    report = UsageReport(
        limits=(LimitReport("codex", None, ()),),
        spend_control=SpendControl(reached=False, limits=(limit,)),
    )
    snapshot = Snapshot(identity(), T0, "usage_body", report, 200)
    return usage_values(snapshot, report.limits[0])


@given(st.integers(-TOLERANCE, TOLERANCE))
def test_a_spend_limit_s_reset_within_the_tolerance_is_the_same(moved: int) -> None:
    assert same_values(_spend_values(FIVE_H_RESET), _spend_values(FIVE_H_RESET + moved))


def test_a_spend_limit_that_moved_differs() -> None:
    assert not same_values(_spend_values(FIVE_H_RESET), _spend_values(FIVE_H_RESET + TOLERANCE + 1))
    assert not same_values(_spend_values(FIVE_H_RESET), _spend_values(FIVE_H_RESET, used="83"))


def test_a_batch_splits_into_snapshots_in_time_order_and_requests_as_given() -> None:
    late, early = snap(at=T0 + 9), snap(at=T0)
    first, second = request_record(T0 + 5), request_record(T0 + 1)
    assert split_batch([late, first, early, second]) == ([early, late], [first, second])


def test_a_repeated_identity_folds_again_after_another_one() -> None:
    first, second = identity(email="first@example.com"), identity(email="second@example.com")
    sightings = [snap(at=T0, who=first), snap(at=T0 + 1, who=second), snap(at=T0 + 2, who=first)]
    assert seen_accounts(sightings, [])[first.account_key].email == "first@example.com"


@given(st.integers(0, len(VALUE_FIELDS) - 1), st.integers(1, 10**6))
def test_a_change_in_any_value_is_a_difference_unless_a_reset_time_jitters(
    index: int, moved: int
) -> None:
    old = values()
    was = old[index]
    changed = list(old)
    if was is None:
        changed[index] = moved
    elif isinstance(was, str):
        changed[index] = f"{was}-{moved}"
    else:
        changed[index] = was + moved
    jitter = VALUE_FIELDS[index].endswith("_resets_at") and was is not None
    assert same_values(old, tuple(changed)) == (jitter and moved <= TOLERANCE)


def test_the_sampler_lays_out_what_samples_does_and_keeps_plans_apart() -> None:
    sampler = Sampler(maxsize=2)
    report = snap(at=T0).report  # no plan of its own: each row takes its token's
    plus = Snapshot(identity(plan="plus"), T0, "headers", report, 200)
    team = Snapshot(identity("seat:acct-2:user-2", plan="team"), T0 + 1, "headers", report, 200)
    other = snap(at=T0 + 2, wins=windows(55.0))
    ids = {plus.identity.account_key: 1, team.identity.account_key: 2}
    batch = [plus, team, other, plus, team]
    found = sampler.samples(batch, ids)
    assert found == [
        s for snapshot in batch for s in samples(snapshot, ids[snapshot.identity.account_key])
    ]
    assert [s.values[VALUE_FIELDS.index("plan_type")] for s in found] == [
        "plus",
        "team",
        "plus",
        "plus",
        "team",
    ]
    assert len(sampler) <= 2


def _reference_plan(
    batch: list[Sample], newest: dict[UsageKey, NewestRow | None], next_id: int
) -> tuple[list[tuple[int, float, float]], dict[UsageKey, tuple[int, float]], int]:
    """The insert-or-confirm rule applied one sample at a time: (inserted rows as (id,
    captured_at, confirmed_at), confirmations of the table's rows, samples superseded)."""
    rows: dict[int, list[float]] = {}
    current = dict(_newest_tuples(newest))
    confirms: dict[UsageKey, tuple[int, float]] = {}
    superseded = 0
    for s in batch:
        last = current[s.key]
        if last is not None:
            row_id, last_values, captured_at, confirmed_at = last
            if s.captured_at - captured_at < HEARTBEAT and same_values(last_values, s.values):
                confirmed_at = max(confirmed_at, s.captured_at)
                current[s.key] = (row_id, last_values, captured_at, confirmed_at)
                if row_id in rows:
                    rows[row_id][1] = confirmed_at
                else:
                    confirms[s.key] = (row_id, confirmed_at)
                continue
            if s.captured_at < captured_at:
                superseded += 1
                continue
        rows[next_id] = [s.captured_at, s.captured_at]
        current[s.key] = (next_id, s.values, s.captured_at, s.captured_at)
        next_id += 1
    inserted = [(row_id, at, confirmed) for row_id, (at, confirmed) in rows.items()]
    return inserted, confirms, superseded


def _newest_tuples(
    newest: dict[UsageKey, NewestRow | None],
) -> list[tuple[UsageKey, tuple[int, UsageValues, float, float] | None]]:
    return [
        (key, None if row is None else (row.row_id, row.values, row.captured_at, row.confirmed_at))
        for key, row in newest.items()
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([KEY, OTHER_KEY]),
            st.integers(0, 700),
            st.sampled_from([10.0, 20.0]),
            st.sampled_from([0, 3, 60]),
        ),
        max_size=25,
    ),
    st.sampled_from([None, 0, 400]),
)
def test_plan_usage_follows_the_rule_one_sample_at_a_time(
    steps: list[tuple[UsageKey, int, float, int]], table_row_at: int | None
) -> None:
    batch = [
        Sample(key, T0 + at, "headers", 200, values(used, FIVE_H_RESET + moved))
        for key, at, used, moved in sorted(steps, key=lambda step: step[1])
    ]
    newest: dict[UsageKey, NewestRow | None] = {KEY: None, OTHER_KEY: None}
    if table_row_at is not None:
        newest[KEY] = NewestRow(3, values(), T0 + table_row_at, T0 + table_row_at + 1)
    plan = plan_usage(batch, newest, heartbeat=HEARTBEAT, next_id=10)
    inserted, confirms, superseded = _reference_plan(batch, newest, 10)
    assert [(row.id, row.captured_at, row.confirmed_at) for row in plan.inserts] == inserted
    assert (plan.confirms, plan.superseded) == (confirms, superseded)
    assert plan.inserted + plan.confirmed + plan.superseded == len(batch)
