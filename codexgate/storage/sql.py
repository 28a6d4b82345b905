"""SQL that both backends run as written: the walk behind latest_usage, an account's title,
the column of each window, and the probe that keeps an account and limit's newest row."""

from __future__ import annotations

from typing import Final

from codexgate.core.windows import COLUMN_PREFIXES

# history_page(window=...): the used_percent column that must be reported for a row to count.
_WINDOW_COLUMNS: Final = {
    label: f"{prefix}_used_percent" for label, prefix in COLUMN_PREFIXES.items()
}

# An account's title in SQL (core/accounts.py's account_title without its "Account N" fallback,
# which the readers add): its name, else its email.
TITLE: Final = "coalesce(nullif(a.display_name, ''), nullif(a.email, ''))"

TITLES: Final = f"SELECT a.id, {TITLE} FROM accounts AS a ORDER BY a.id"  # noqa: S608

# A row of the same account and limit that is newer by (captured_at, id): the row at s is not
# the one latest_usage shows. A probe of the (account, limit, time) index per candidate row.
NEWER_ROW: Final = (
    "SELECT 1 FROM usage_snapshots AS n WHERE n.account_id = s.account_id "
    "AND n.limit_id = s.limit_id AND n.captured_at >= s.captured_at "
    "AND (n.captured_at, n.id) > (s.captured_at, s.id)"
)


def window_column(window: str) -> str:
    """The used_percent column of a window label ("5h", "7d", "monthly"); ValueError otherwise."""
    column = _WINDOW_COLUMNS.get(window)
    if column is None:
        raise ValueError(f"unknown window {window!r}: use one of {sorted(_WINDOW_COLUMNS)}")
    return column


def account_limits(accounts: str) -> str:
    """The CTE that walks each account of the table or CTE `accounts` (with an `id` column) to
    its limit ids, one index seek per step: the same walk as the latest_usage view's."""
    return f"""account_limits (account_id, limit_id) AS (
        SELECT x.id, (SELECT min(s.limit_id) FROM usage_snapshots AS s WHERE s.account_id = x.id)
        FROM {accounts} AS x
        UNION ALL
        SELECT al.account_id,
               (SELECT min(s.limit_id) FROM usage_snapshots AS s
                WHERE s.account_id = al.account_id AND s.limit_id > al.limit_id)
        FROM account_limits AS al
        WHERE al.limit_id IS NOT NULL
    )"""  # noqa: S608 - the name is one of this module's constants
