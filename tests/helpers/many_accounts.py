"""Fill a migrated codexgate database with many accounts and a little usage each, fast.

Written straight with executemany (no recorder, no feed), for the overview's scaling tests and
bench/overview.py. The values vary with the account's number so that every sort and every
summary count has something to do: some accounts are unnamed, some near their limit, some at it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

ROWS_PER_ACCOUNT: Final = 2

_ACCOUNT_SQL: Final = (
    "INSERT INTO accounts (id, account_key, chatgpt_account_id, chatgpt_user_id, display_name, "
    "email, plan_type, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, 'plus', ?, ?)"
)
_USAGE_SQL: Final = (
    "INSERT INTO usage_snapshots (account_id, captured_at, confirmed_at, source, http_status, "
    "limit_id, plan_type, five_hour_used_percent, five_hour_window_minutes, five_hour_resets_at, "
    "seven_day_used_percent, seven_day_window_minutes, seven_day_resets_at, primary_window, "
    "primary_classified_by, primary_used_percent, primary_window_minutes, primary_resets_at, "
    "secondary_window, secondary_classified_by, secondary_used_percent, "
    "secondary_window_minutes, secondary_resets_at, limit_hit_type, limit_hit_resets_at) "
    "VALUES (?, ?, ?, 'headers', 200, 'codex', 'plus', ?, 300, ?, ?, 10080, ?, '5h', 'length', "
    "?, 300, ?, '7d', 'length', ?, 10080, ?, ?, ?)"
)


def five_hour_used(number: int) -> float:
    """The newest 5-hour used percent of account `number` (1-based): 0 to 100 in steps."""
    return float((number * 7) % 101)


def title(number: int) -> str | None:
    """Account `number`'s display name; every tenth account has none (and no email)."""
    return None if number % 10 == 0 else f"Seat {number:05d}"


def fill(path: Path, accounts: int, now: float, *, first_id: int = 1) -> None:
    """Add `accounts` accounts with ROWS_PER_ACCOUNT usage rows each to a migrated database."""
    account_rows: list[tuple[Any, ...]] = []
    usage_rows: list[tuple[Any, ...]] = []
    for number in range(first_id, first_id + accounts):
        name = title(number)
        email = None if name is None else f"seat{number}@example.com"
        key = f"seat:acct-{number}:user-{number}"
        account_rows.append(
            (number, key, f"acct-{number}", f"user-{number}", name, email, now - 86400, now - 60)
        )
        five_hour_resets = int(now) + 60 + (number * 37) % 18000
        seven_day_resets = int(now) + 3600 + (number * 101) % 600000
        for step in range(ROWS_PER_ACCOUNT):
            at = now - 600 + step * 300
            used = max(0.0, five_hour_used(number) - (ROWS_PER_ACCOUNT - 1 - step) * 5)
            weekly = float((number * 3) % 100)
            hit = "usage_limit_reached" if number % 97 == 0 and step else None
            usage_rows.append(
                (
                    *(number, at, at + 60, used, five_hour_resets, weekly, seven_day_resets),
                    *(used, five_hour_resets, weekly, seven_day_resets, hit),
                    hit and five_hour_resets,
                )
            )
    with sqlite3.connect(path) as db:
        db.executemany(_ACCOUNT_SQL, account_rows)
        db.executemany(_USAGE_SQL, usage_rows)
    db.close()


def add_account(path: Path, account_id: int, display_name: str | None, email: str | None) -> None:
    """One more account, with no usage."""
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO accounts (id, account_key, display_name, email, first_seen_at, "
            "last_seen_at) VALUES (?, ?, ?, ?, 0, 0)",
            (account_id, f"seat:acct-{account_id}:user-{account_id}", display_name, email),
        )
    db.close()


def add_usage(path: Path, account_id: int, limit_id: str, at: float, **values: Any) -> None:
    """One usage row of an account and limit family, with the given usage columns."""
    columns = ["account_id", "captured_at", "confirmed_at", "source", "limit_id", *values]
    marks = ", ".join("?" for _ in columns)
    with sqlite3.connect(path) as db:
        db.execute(
            f"INSERT INTO usage_snapshots ({', '.join(columns)}) VALUES ({marks})",
            (account_id, at, at, "headers", limit_id, *values.values()),
        )
    db.close()
