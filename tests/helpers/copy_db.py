"""Source databases for `codexgate copy-db`: every kind of row through the real store, and a
bulk of usage history written straight with sqlite3 for the copies that must take a while."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from codexgate.core.models import (
    Credits,
    LimitReport,
    Snapshot,
    SpendControl,
    SpendLimit,
    TokenUsage,
    UsageReport,
)
from codexgate.core.rows import AlertState, NewAlert
from codexgate.storage import open_storage
from codexgate.storage.interface import Storage
from codexgate.storage.location import DatabaseLocation
from tests.helpers.builders import OTHER, TOKEN, identity, request_record, snap, windows

T0 = 1_890_000_000.0
# Values a float must keep exactly through the copy (no rounding on the way).
AWKWARD_PERCENT = 33.333333333333336
SECRET_WEBHOOK = "https://hooks.slack.com/services/T000/B000/secret-part"


# A usage body with every field that goes on the main limit's row alone, as JSON among them.
_LIMIT_FIELDS = UsageReport(
    limits=(LimitReport("codex", None, windows(12.0, 41.5)),),
    rate_limit_reached_type="workspace_member_credits_depleted",
    spend_control=SpendControl(
        reached=True,
        limit="50",
        used="50",
        used_percent=100.0,
        resets_at=1_890_500_000,
        reached_limit_type="group_shared",
        limits=(
            SpendLimit("individual", "50", "50", "0", 100.0, 0.0, 1_890_500_000),
            SpendLimit("group_shared", "100", "100", "0", 100.0, 0.0, None, "g-1", "Ünïcode"),
        ),
    ),
    reset_credits=2,
    promo_message="Double limits this week",
)


async def fill(path: Path) -> None:
    """Write accounts (named, renamed, one deleted), history with flags, credits and spend
    limits, requests with and without an account, alerts and their states, webhooks, settings
    and a session through the real SQLite store."""
    store = await open_storage(path)
    try:
        await _fill(store)
    finally:
        await store.close()


async def _fill(store: Storage) -> None:
    one, gone = identity(), identity("seat:acct-9:user-9", email="gone@example.com")
    await store.record(
        [
            snap(T0, who=one, wins=windows(10.0, 40.0)),
            snap(T0 + 60, who=one, wins=windows(AWKWARD_PERCENT, 41.5)),
            snap(
                T0 + 120,
                who=OTHER,
                limits=(
                    LimitReport("codex", None, windows(5.0, 7.0)),
                    LimitReport("codex_bengalfox", "GPT-5-Codex-Mini", windows(1.0, None)),
                ),
                credits=Credits(has_credits=True, unlimited=False, balance="12.50"),
                plan="team",
            ),
            snap(T0 + 130, who=TOKEN, source="usage_body", wins=windows(None, 99.9)),
            Snapshot(one, T0 + 135, "usage_body", _LIMIT_FIELDS, 200),
            snap(T0 + 140, who=gone, wins=windows(50.0, 50.0)),
            request_record(T0, who=one),
            request_record(T0 + 61, who=OTHER, status=429, transport="websocket"),
            request_record(
                T0 + 62,
                who=one,
                tokens=TokenUsage(
                    input_tokens=1200,
                    cached_input_tokens=1000,
                    output_tokens=300,
                    reasoning_tokens=200,
                    total_tokens=1500,
                ),
            ),
            request_record(T0 + 63, anonymous=True, status=None),
            request_record(T0 + 64, who=gone),
        ]
    )
    accounts = {row.account_key: row.id for row in await store.accounts()}
    await store.update_account(accounts[one.account_key], display_name="work", now=T0 + 200)
    await store.update_account(accounts[OTHER.account_key], display_name="bob", now=T0 + 201)
    first = accounts[one.account_key]
    await store.record_alerts(
        [
            NewAlert(
                at=T0 + 300,
                kind="threshold",
                message="work: 5h window at 33% (crossed 30%)",
                account_id=first,
                account="work",
                limit_id="codex",
                window="5h",
                used_percent=AWKWARD_PERCENT,
                threshold=30.0,
                resets_at=1_890_010_000,
            ),
            NewAlert(
                at=T0 + 301,
                kind="stale",
                message="gone: no report for 2h",
                account_id=accounts[gone.account_key],
                account="gone@example.com",
                limit_id="codex",
            ),
            NewAlert(at=T0 + 302, kind="test", message="a test alert"),
        ],
        [
            AlertState(first, "codex", "5h", "threshold:30", 1_890_010_000, T0 + 300),
            AlertState(first, "codex", "*", "stale", None, T0 + 301),
        ],
        [],
    )
    await store.add_webhook(SECRET_WEBHOOK, "slack", "team channel", T0 + 400)
    await store.add_webhook("https://ntfy.sh/codexgate-alerts", "ntfy", None, T0 + 401)
    await store.set_setting("alert_rules", '{"thresholds": [30, 90]}')
    await store.set_setting("admin_token_sha256", "0" * 64)
    await store.create_session("a" * 64, T0, T0 + 86_400, keep=10)
    # Deleting an account keeps its ids from coming back: id floors in settings, an event.
    await store.delete_account(accounts[gone.account_key], now=T0 + 500)


def add_history(path: Path, rows: int) -> None:
    """Append rows usage rows of the first account (one transaction, executemany): a long
    history without recording it row by row."""
    with sqlite3.connect(path) as db:
        account_id, last = db.execute(
            "SELECT min(id), (SELECT max(id) FROM usage_snapshots) FROM accounts"
        ).fetchone()
        columns = ("id", "account_id", "captured_at", "confirmed_at", "source", "limit_id",
                   "primary_used_percent", "credits_has_credits")  # fmt: skip
        start = int(last or 0) + 1
        values = (
            (
                start + n,
                account_id,
                T0 - 10_000_000 + n * 7.25,
                T0 - 10_000_000 + n * 7.25 + 1,
                "headers",
                "codex",
                (n % 1000) / 10 + 0.05,
                n % 2,
            )
            for n in range(rows)
        )
        placeholders = ", ".join("?" for _ in columns)
        db.executemany(
            f"INSERT INTO usage_snapshots ({', '.join(columns)}) VALUES ({placeholders})",
            values,
        )
    db.close()


async def snapshot(location: DatabaseLocation) -> dict[str, Any]:
    """Everything the store gives back of a database, for comparing a copy with its source."""
    store = await open_storage(location)
    try:
        accounts = await store.accounts()
        result: dict[str, Any] = {
            "accounts": [tuple(_fields(row)) for row in accounts],
            "latest_usage": [
                tuple(_fields(row.usage)) + tuple(_fields(row)[1:5])
                for row in await store.latest_usage()
            ],
            "history": {
                row.id: [tuple(_fields(item)) for item in await store.history(row.id, limit=10**6)]
                for row in accounts
            },
            "requests": [tuple(_fields(row)) for row in await store.requests(limit=10**6)],
            "alerts": [tuple(_fields(row)) for row in await store.alerts(limit=10**6)],
            "alert_states": sorted(tuple(_fields(row)) for row in await store.alert_states()),
            "webhooks": [tuple(_fields(row)) for row in await store.webhooks()],
            "settings": {
                name: await store.get_setting(name)
                for name in (
                    "alert_rules",
                    "admin_token_sha256",
                    "usage_snapshots_id_floor",
                    "requests_id_floor",
                )
            },
            "feed_cursor": await store.feed_cursor(),
            "account_events": [
                tuple(_fields(row)) for row in await store.account_events_after(0, 10**6)
            ],
            "count_history": await store.count_history(),
            "count_requests": await store.count_requests(),
        }
    finally:
        await store.close()
    return result


def _fields(row: Any) -> list[Any]:
    """A row's fields in order (rows are slotted dataclasses)."""
    return [getattr(row, name) for name in type(row).__slots__]


def copy_command(source: Path | str, target: str, *extra: str) -> list[str]:
    """The argv of `python -m codexgate copy-db --from source --to target`."""
    return [sys.executable, "-m", "codexgate", "copy-db", "--from", str(source), "--to", target,
            *extra]  # fmt: skip


def clean_environment() -> dict[str, str]:
    """This environment without CODEXGATE_* settings (and NO_COLOR)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    env.pop("NO_COLOR", None)
    return env


def run_copy(
    source: Path | str, target: str, *extra: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run copy-db as a real process to its end: exit code, stdout, stderr."""
    return subprocess.run(
        copy_command(source, target, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_environment(),
        check=False,
    )


def start_copy(source: Path, target: str, *extra: str, cwd: Path) -> subprocess.Popen[str]:
    """Start copy-db as a real process (stdout and stderr piped) and return at once."""
    return subprocess.Popen(
        copy_command(source, target, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=clean_environment(),
    )


def password_of(url: str) -> str:
    """The password in a test database's URL."""
    password = urlsplit(url).password
    assert password
    return password


_COUNT_LINE = re.compile(r"^(\w+)\s+(\d+)\s+(\d+|-)\s+(?:(\d+|-)\s+)?(ok|MISMATCH|not copied.*)$")


def printed_counts(out: str) -> dict[str, tuple[int, int | None, str]]:
    """copy-db's table of counts: table -> (source, target or None, verdict)."""
    found = {}
    for line in out.splitlines():
        match = _COUNT_LINE.match(line.strip())
        if match:
            table, source, target, _, verdict = match.groups()
            found[table] = (int(source), None if target == "-" else int(target), verdict)
    return found


def table_counts(path: Path) -> dict[str, int]:
    """Rows per table of a SQLite file, read-only."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
        names = [
            row[0] for row in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        ]
        counts = {
            name: db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names
        }
    db.close()
    return counts
