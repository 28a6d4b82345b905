"""What callers may ask of storage: typed Protocols per concern, one Storage, and its errors.

Every backend (storage/sqlite today, PostgreSQL next) implements Storage and holds only SQL;
the rules about what to write live in core/recording.py. Callers type against these Protocols
and catch StorageUnavailable, never a driver's exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from codexgate.core.models import Identity, RequestRecord, Snapshot
from codexgate.core.rows import (
    AccountEvent,
    AccountRow,
    AccountWindows,
    ActivityBucket,
    AlertRow,
    AlertState,
    FeedCursor,
    InstanceRow,
    InstancesView,
    LatestUsageRow,
    Lease,
    LeaseHeld,
    NewAlert,
    OverviewPage,
    RecordResult,
    RequestRow,
    SessionRow,
    UsageRow,
    WebhookRow,
)


class StorageError(Exception):
    """Something went wrong in storage; the message says what."""


class StorageSetupError(StorageError):
    """The database cannot be opened or migrated; the message says why and what to do."""


class LeaseLost(StorageError):
    """A fenced write found the singleton lease held by another instance, or expired: the
    caller is no longer the one that does singleton work, and nothing was written."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or written now; the message names the driver's error.

    A disk that failed or filled up, a lock held too long, a connection that is closed: the
    caller counts it and tries again later. A bug (a bad argument, say) is never this.
    """


class SettingsStore(Protocol):
    """Named text values that outlive a restart (alert rules, the admin token's hash)."""

    async def get_setting(self, name: str) -> str | None:
        """The value stored under name, or None."""
        ...

    async def set_setting(self, name: str, value: str) -> None:
        """Store value under name, replacing what was there."""
        ...

    async def delete_setting(self, name: str) -> None:
        """Remove the value under name, if there is one."""
        ...

    async def set_setting_if_absent(self, name: str, value: str) -> str:
        """Store value under name unless a value is there; return the stored value."""
        ...


class SessionStore(Protocol):
    """Signed-in browsers' sessions, known by the SHA-256 of their cookie."""

    async def create_session(
        self, id_sha256: str, created_at: float, expires_at: float, *, keep: int
    ) -> None:
        """Store a new session; drop expired ones, and the oldest beyond the newest `keep`."""
        ...

    async def session(self, id_sha256: str) -> SessionRow | None:
        """The session whose cookie hashes to id_sha256, expired or not; None when there is none."""
        ...

    async def touch_session(self, id_sha256: str, at: float) -> None:
        """Record that the session signed a request at `at`."""
        ...

    async def delete_session(self, id_sha256: str) -> bool:
        """End one session; whether it existed."""
        ...

    async def delete_sessions(self) -> int:
        """End every session; how many there were."""
        ...


class AccountStore(Protocol):
    """The accounts (seats) seen in traffic or added by hand."""

    async def accounts(self) -> list[AccountRow]:
        """Every account, oldest first."""
        ...

    async def account(self, account_id: int) -> AccountRow | None:
        """One account by id, or None."""
        ...

    async def accounts_after(self, after_id: int, limit: int) -> list[AccountRow]:
        """At most limit accounts with an id above after_id, by id (a keyset page)."""
        ...

    async def accounts_of(self, account_ids: Sequence[int]) -> list[AccountRow]:
        """The accounts with these ids (unknown ids are skipped), by id."""
        ...

    async def create_account(
        self, identity: Identity, display_name: str | None, now: float
    ) -> tuple[AccountRow, bool]:
        """Add the account of identity, or update it if its account_key exists: (row, created)."""
        ...

    async def update_account(
        self, account_id: int, *, display_name: str | None, now: float | None = None
    ) -> AccountRow | None:
        """Set (or clear) an account's display name; None if there is no such id."""
        ...

    async def delete_account(self, account_id: int, *, now: float | None = None) -> bool:
        """Delete an account, its history and its requests; False if there is no such id."""
        ...


class UsageStore(Protocol):
    """Recording what traffic showed, and reading each account's usage history."""

    async def record(
        self, items: Sequence[Snapshot | RequestRecord], *, max_accounts: int | None = None
    ) -> RecordResult:
        """Write snapshots (unchanged values only confirmed) and requests in one transaction."""
        ...

    async def latest_usage(self, account_id: int | None = None) -> list[LatestUsageRow]:
        """The newest row per account and limit (of one account if given), by account, limit."""
        ...

    async def latest_usage_of(self, account_ids: Sequence[int]) -> list[LatestUsageRow]:
        """latest_usage of the given accounts (unknown ids are skipped), by account, limit."""
        ...

    async def latest_usage_page(
        self, after_id: int, accounts: int
    ) -> tuple[list[LatestUsageRow], int | None]:
        """latest_usage of `accounts` accounts after after_id, and the next page's after_id."""
        ...

    async def stale_changes_page(
        self, after_id: int, accounts: int, cutoff: float, *, window: str, rule: str
    ) -> tuple[list[LatestUsageRow], int | None]:
        """latest_usage_page, only the rows whose stale alert state disagrees with cutoff."""
        ...

    async def overview(
        self,
        *,
        now: float,
        critical: float,
        sort: str,
        offset: int,
        limit: int,
        resets: int,
    ) -> OverviewPage:
        """Counts over every account, one page of account ids in `sort` order, upcoming resets."""
        ...

    async def latest_windows(self) -> list[AccountWindows]:
        """Every account by id with its title and the windows of each limit family's newest row."""
        ...

    async def history(
        self,
        account_id: int,
        *,
        limit_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[UsageRow]:
        """An account's rows with since <= captured_at < until, oldest first, at most limit."""
        ...

    async def history_page(
        self,
        account_id: int,
        *,
        limit_id: str | None = None,
        window: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: tuple[float, int] | None = None,
        limit: int = 500,
    ) -> list[UsageRow]:
        """One page of an account's history, oldest first: (captured_at, id) ascending."""
        ...

    async def recent_history(
        self, account_id: int, limit_id: str, *, since: float, limit: int
    ) -> list[UsageRow]:
        """A limit family's newest rows captured at or after since (at most limit), oldest first."""
        ...

    async def recent_histories(
        self, keys: Sequence[tuple[int, str]], *, since: float, limit: int
    ) -> dict[tuple[int, str], list[UsageRow]]:
        """recent_history of each (account id, limit id)."""
        ...

    async def usage_rows(self, ids: Sequence[int]) -> list[UsageRow]:
        """The usage rows with these ids (missing ones skipped), by id."""
        ...

    async def count_history(self) -> int:
        """The number of usage rows."""
        ...


class RequestStore(Protocol):
    """The request log."""

    async def requests(
        self,
        *,
        account_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[RequestRow]:
        """Requests with since <= started_at < until, newest first, at most limit."""
        ...

    async def count_requests(self) -> int:
        """The number of requests rows."""
        ...

    async def request_activity(
        self,
        *,
        since: float,
        until: float,
        bucket_seconds: float,
        account_id: int | None = None,
    ) -> list[ActivityBucket]:
        """Requests with since <= started_at < until per bucket_seconds from since, by index."""
        ...


class AlertStore(Protocol):
    """Fired alerts, the rules' state, and the webhooks added through the API."""

    async def alerts(
        self,
        *,
        account_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
        exclude_kinds: Sequence[str] = (),
    ) -> list[AlertRow]:
        """Alerts newest first (by id), optionally one account's, before an id, at most limit,
        without those of the kinds in exclude_kinds."""
        ...

    async def alert_states(self) -> list[AlertState]:
        """Every rule's state: what has fired for the current crossings."""
        ...

    async def record_alerts(
        self,
        fired: Sequence[NewAlert],
        states: Sequence[AlertState],
        cleared: Sequence[tuple[int, str, str, str]],
        *,
        lease: LeaseHeld | None = None,
    ) -> list[AlertRow]:
        """Write fired alerts, set rule states and clear others, in one transaction; every
        fired alert but a test one also goes into the outbox of undelivered alerts.

        With `lease`, first check in the same transaction that lease.holder holds the singleton
        lease unexpired and save its cursor, else raise LeaseLost and write nothing.
        """
        ...

    async def undelivered_alerts(self, since: float) -> list[AlertRow]:
        """The alerts in the outbox (fired, not yet delivered), fired at or after since, by id."""
        ...

    async def alerts_delivered(self, alert_ids: Sequence[int], *, before: float = 0.0) -> None:
        """Take these alerts out of the outbox, and every one fired before `before`."""
        ...

    async def webhooks(self) -> list[WebhookRow]:
        """The webhooks added through the API, by id."""
        ...

    async def add_webhook(
        self, url: str, format_: str, name: str | None, now: float
    ) -> tuple[WebhookRow, bool]:
        """Add a webhook; (the row, True) or, when the URL is already there, (it, False)."""
        ...

    async def delete_webhook(self, webhook_id: int) -> bool:
        """Remove a webhook added through the API; False if there is no such id."""
        ...


class FeedStore(Protocol):
    """The live feed's replay: rows after a position, in commit order, and the newest position."""

    async def usage_after(self, after_id: int, limit: int = 500) -> list[UsageRow]:
        """Usage rows with id > after_id, by id, at most limit."""
        ...

    async def requests_after(self, after_id: int, limit: int = 500) -> list[RequestRow]:
        """Requests rows with id > after_id, by id, at most limit."""
        ...

    async def account_events_after(self, after_id: int, limit: int = 500) -> list[AccountEvent]:
        """Account events with id > after_id, by id, at most limit."""
        ...

    async def alerts_after(self, after_id: int, limit: int = 500) -> list[AlertRow]:
        """Alerts with id > after_id, by id, at most limit."""
        ...

    async def feed_cursor(self) -> FeedCursor:
        """The newest id of usage, requests, account events and alerts (0 when empty)."""
        ...

    async def watch_commits(self, on_commit: Callable[[Sequence[int]], None]) -> None:
        """Until cancelled, call on_commit after each commit another instance makes, with the
        usage row ids it confirmed (possibly none), and once after each (re)connection.

        SQLite polls for another process's commits to the same file (a rolling restart) and
        names no confirmed rows. Never raises for an outage: it waits for the database to come
        back.
        """
        ...


class RetentionStore(Protocol):
    """Pruning and thinning old rows, a short batch at a time."""

    async def prune_history_batch(self, before: float, limit: int) -> int:
        """Delete at most limit usage rows captured before `before` (never a newest one)."""
        ...

    async def prune_requests_batch(self, before: float, limit: int) -> int:
        """Delete at most limit requests that started before `before`, oldest first."""
        ...

    async def downsample_history_batch(
        self, before: float, bucket_seconds: float, limit: int, *, since: float | None = None
    ) -> int:
        """Thin usage rows to the newest per account, limit and bucket; at most limit deleted."""
        ...

    async def oldest_history_at(self, *, since: float | None = None) -> float | None:
        """The oldest captured_at of the usage rows (at or after since), None without any."""
        ...


class InstanceStore(Protocol):
    """The instances sharing the database, and the lease of the one that does singleton work.

    Times here are the database's clock (PostgreSQL's own; SQLite's is this machine's), so that
    instances on machines whose clocks differ still agree on who holds the lease.
    """

    async def instance_beat(self, instance: InstanceRow, *, forget_after: float) -> None:
        """Write (insert or update) this instance's row with seen_at now; delete the rows of
        instances not seen for forget_after seconds."""
        ...

    async def instances(self) -> InstancesView:
        """Every instance's row, newest start first, with the database's clock."""
        ...

    async def claim_lease(self, holder: str, ttl: float, cursor: int) -> Lease:
        """Take the singleton lease if it is free, expired or holder's own, for ttl seconds from
        now, saving cursor when it rises; the lease as it is after (holder is another instance's
        when it is held)."""
        ...

    async def release_lease(self, holder: str, cursor: int) -> None:
        """Give the lease up now if holder holds it, saving its cursor: another takes it at once."""
        ...


class Storage(
    SettingsStore,
    SessionStore,
    AccountStore,
    UsageStore,
    RequestStore,
    AlertStore,
    FeedStore,
    RetentionStore,
    InstanceStore,
    Protocol,
):
    """Everything codexgate keeps, behind one open connection (or pool) to one database."""

    async def close(self) -> None:
        """Close the connection; the storage cannot be used afterwards."""
        ...

    async def schema_version(self) -> int:
        """The number of the last migration applied."""
        ...
