"""The column layouts every backend's tables share, the row builders, and the id floors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeVar

from codexgate.core.recording import VALUE_FIELDS
from codexgate.core.rows import LatestUsageRow, UsageRow

_T = TypeVar("_T")

# The value columns of usage_snapshots, in table order (core.recording's VALUE_FIELDS).
VALUE_COLUMNS: Final = VALUE_FIELDS
# Every usage_snapshots column in table order; UsageRow has the same fields in the same order.
USAGE_COLUMNS: Final = (
    "id",
    "account_id",
    "captured_at",
    "confirmed_at",
    "source",
    "http_status",
    "limit_id",
    *VALUE_COLUMNS,
)

# 0/1 columns that UsageRow turns into bools.
_FLAG_INDEXES: Final = (
    USAGE_COLUMNS.index("credits_has_credits"),
    USAGE_COLUMNS.index("credits_unlimited"),
    USAGE_COLUMNS.index("spend_control_reached"),
)

USAGE_SELECT: Final = ", ".join(USAGE_COLUMNS)

USAGE_SELECT_S: Final = ", ".join(f"s.{name}" for name in USAGE_COLUMNS)
# Positions inside a usage row (laid out like USAGE_COLUMNS).
ID, ACCOUNT_ID, CAPTURED_AT, CONFIRMED_AT, LIMIT_ID = 0, 1, 2, 3, 6
FIRST_VALUE: Final = len(USAGE_COLUMNS) - len(VALUE_COLUMNS)

ACCOUNT_COLUMNS: Final = (
    "id, account_key, chatgpt_account_id, chatgpt_user_id, display_name, email, plan_type, "
    "token_fingerprint, first_seen_at, last_seen_at"
)

# Every requests column in table order; RequestRow has the same fields in the same order.
REQUEST_COLUMNS: Final = (
    "id",
    "started_at",
    "account_id",
    "method",
    "path",
    "transport",
    "status",
    "model",
    "upstream_request_id",
    "response_id",
    "ttfb_ms",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "error_code",
)

REQUEST_SELECT: Final = ", ".join(REQUEST_COLUMNS)

ALERT_COLUMNS: Final = (
    'id, at, kind, account_id, account, limit_id, "window", used_percent, threshold, resets_at, '
    "exhausts_at, message"
)

# Row ids are the live feed's positions, so they must never come back. Without AUTOINCREMENT,
# deleting an account that holds the newest rows would let max(id)+1 hand their ids out again:
# delete_account keeps the highest id each table ever had in `settings`, and new ids start
# above it.
ID_FLOOR_TABLES: Final = ("usage_snapshots", "requests")


def id_floor_setting(table: str) -> str:
    """The settings name that keeps the highest id table ever had."""
    return f"{table}_id_floor"


LATEST_SELECT: Final = (
    f"SELECT {USAGE_SELECT}, account_key, display_name, email, account_plan_type, "  # noqa: S608
    "age_seconds, five_hour_reset_in_seconds, seven_day_reset_in_seconds, "
    "monthly_reset_in_seconds, limit_hit_reset_in_seconds, spend_reset_in_seconds "
    "FROM latest_usage"
)


def latest_row(row: Sequence[Any]) -> LatestUsageRow:
    """Build a LatestUsageRow from a row of LATEST_SELECT."""
    return LatestUsageRow(usage_row(row), *row[len(USAGE_COLUMNS) :])


def usage_row(row: Sequence[Any]) -> UsageRow:
    """Build a UsageRow from the first len(USAGE_COLUMNS) columns of a result row."""
    values = list(row[: len(USAGE_COLUMNS)])
    for index in _FLAG_INDEXES:
        if values[index] is not None:
            values[index] = bool(values[index])
    return UsageRow(*values)


def checked_limit(limit: int) -> int:
    """limit itself; a negative one (which SQLite reads as "no limit") is a ValueError."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    return limit


def chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    """Consecutive slices of at most size items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
