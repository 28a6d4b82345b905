"""SQLite: the accounts and account_events tables."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from codexgate.core.models import Identity
from codexgate.core.recording import SeenAccount, admit_accounts
from codexgate.core.rows import AccountRow
from codexgate.storage.batch import RecordBatch
from codexgate.storage.columns import (
    ACCOUNT_COLUMNS,
    ID_FLOOR_TABLES,
    checked_limit,
    chunks,
    id_floor_setting,
)
from codexgate.storage.sqlite.columns import (
    CHUNK,
    INSERT_EVENT,
    RAISE_ID_FLOOR,
)
from codexgate.storage.sqlite.connection import SQLiteBase, guarded, select_in

LOG = logging.getLogger(__name__)

# A field takes the batch's value when the batch is at least as new as the row, else it only
# fills a NULL: the newest non-NULL value wins even when batches arrive out of order.
_UPDATE_ACCOUNT: Final = """
UPDATE accounts SET
    chatgpt_account_id = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:chatgpt_account_id, chatgpt_account_id)
        ELSE coalesce(chatgpt_account_id, :chatgpt_account_id) END,
    chatgpt_user_id = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:chatgpt_user_id, chatgpt_user_id)
        ELSE coalesce(chatgpt_user_id, :chatgpt_user_id) END,
    email = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:email, email) ELSE coalesce(email, :email) END,
    plan_type = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:plan_type, plan_type) ELSE coalesce(plan_type, :plan_type) END,
    token_fingerprint = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:token_fingerprint, token_fingerprint)
        ELSE coalesce(token_fingerprint, :token_fingerprint) END,
    first_seen_at = min(first_seen_at, :first_seen_at),
    last_seen_at = max(last_seen_at, :last_seen_at)
WHERE id = :id AND account_key = :account_key
"""

_INSERT_ACCOUNT_ROW: Final = "(?, ?, ?, ?, ?, ?, ?, ?)"


class AccountsMixin(SQLiteBase):
    """Accounts: reading, adding, renaming, deleting, and a batch's upsert."""

    @guarded
    async def accounts(self) -> list[AccountRow]:
        """Every account, oldest first."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"  # noqa: S608
            )
        return [AccountRow(*row) for row in rows]

    @guarded
    async def account(self, account_id: int) -> AccountRow | None:
        """One account by id, or None."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?",  # noqa: S608
                (account_id,),
            )
        return next((AccountRow(*row) for row in rows), None)

    @guarded
    async def accounts_after(self, after_id: int, limit: int) -> list[AccountRow]:
        """At most limit accounts with an id above after_id, by id (a keyset page)."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
                (after_id, checked_limit(limit)),
            )
        return [AccountRow(*row) for row in rows]

    @guarded
    async def accounts_of(self, account_ids: Sequence[int]) -> list[AccountRow]:
        """The accounts with these ids (unknown ids are skipped), by id."""
        sql = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({{marks}}) ORDER BY id"  # noqa: S608
        async with self._lock:
            rows = await self._select_in(sql, sorted(set(account_ids)))
        return [AccountRow(*row) for row in rows]

    @guarded
    async def create_account(
        self, identity: Identity, display_name: str | None, now: float
    ) -> tuple[AccountRow, bool]:
        """Add the account of identity, or update it if its account_key exists: (row, created).

        A new account is first and last seen at now. An existing one takes identity's
        non-NULL fields and display_name unless it is None; its seen times do not move (they
        follow traffic). Writes a 'created' or 'updated' account event at now.
        """
        params = {
            "account_key": identity.account_key,
            "chatgpt_account_id": identity.chatgpt_account_id,
            "chatgpt_user_id": identity.chatgpt_user_id,
            "display_name": display_name,
            "email": identity.email,
            "plan_type": identity.plan_type,
            "token_fingerprint": identity.token_fingerprint,
            "now": now,
        }
        async with self._lock:
            async with self._transaction():
                rows = await self._db.execute_fetchall(
                    "INSERT INTO accounts (account_key, chatgpt_account_id, chatgpt_user_id, "  # noqa: S608
                    "display_name, email, plan_type, token_fingerprint, first_seen_at, "
                    "last_seen_at) VALUES (:account_key, :chatgpt_account_id, :chatgpt_user_id, "
                    ":display_name, :email, :plan_type, :token_fingerprint, :now, :now) "
                    "ON CONFLICT (account_key) DO NOTHING "
                    f"RETURNING {ACCOUNT_COLUMNS}",
                    params,
                )
                created = bool(rows)
                if not created:
                    rows = await self._db.execute_fetchall(
                        "UPDATE accounts SET "  # noqa: S608
                        "chatgpt_account_id = coalesce(:chatgpt_account_id, chatgpt_account_id), "
                        "chatgpt_user_id = coalesce(:chatgpt_user_id, chatgpt_user_id), "
                        "display_name = coalesce(:display_name, display_name), "
                        "email = coalesce(:email, email), "
                        "plan_type = coalesce(:plan_type, plan_type), "
                        "token_fingerprint = coalesce(:token_fingerprint, token_fingerprint) "
                        f"WHERE account_key = :account_key RETURNING {ACCOUNT_COLUMNS}",
                        params,
                    )
                row = AccountRow(*next(iter(rows)))
                await self._db.execute(
                    INSERT_EVENT, (row.id, "created" if created else "updated", now)
                )
            if created:
                # The id may have belonged to a deleted account: forget its throttle state.
                self._last = {k: v for k, v in self._last.items() if k[0] != row.id}
            self._account_ids[row.account_key] = row.id
        return row, created

    @guarded
    async def update_account(
        self, account_id: int, *, display_name: str | None, now: float | None = None
    ) -> AccountRow | None:
        """Set (or clear, with None) an account's display name and write an 'updated' event.

        Returns the updated row, or None (and writes nothing) if there is no such id. now is
        the event's time, the clock's by default.
        """
        async with self._lock, self._transaction():
            rows = await self._db.execute_fetchall(
                f"UPDATE accounts SET display_name = ? WHERE id = ? RETURNING {ACCOUNT_COLUMNS}",  # noqa: S608
                (display_name, account_id),
            )
            row = next((AccountRow(*row) for row in rows), None)
            if row is not None:
                at = time.time() if now is None else now
                await self._db.execute(INSERT_EVENT, (row.id, "updated", at))
        return row

    @guarded
    async def delete_account(self, account_id: int, *, now: float | None = None) -> bool:
        """Delete an account, its history and its requests; False if there is no such id.

        Writes a 'deleted' account event at now (the clock's by default) when it deleted one.
        """
        async with self._lock:
            try:
                async with self._transaction():
                    for table in ID_FLOOR_TABLES:
                        await self._db.execute(RAISE_ID_FLOOR[table], (id_floor_setting(table),))
                    cursor = await self._db.execute(
                        "DELETE FROM accounts WHERE id = ?", (account_id,)
                    )
                    deleted = cursor.rowcount > 0
                    if deleted:
                        at = time.time() if now is None else now
                        await self._db.execute(INSERT_EVENT, (account_id, "deleted", at))
            finally:
                # Forgetting is always safe: the caches reload from the database.
                self._account_ids = {k: v for k, v in self._account_ids.items() if v != account_id}
                self._last = {k: v for k, v in self._last.items() if k[0] != account_id}
        return deleted

    def _attach_accounts(
        self,
        conn: sqlite3.Connection,
        cached: Mapping[str, int],
        keys: Sequence[str],
        batch: RecordBatch,
    ) -> None:
        """Put the ids of the accounts that exist among keys into batch.account_ids, as they are.

        Runs on the connection's thread (see record); cached is the account id cache as this
        batch may trust it."""
        if not keys:
            return
        rows = select_in(
            conn, "SELECT account_key, id FROM accounts WHERE account_key IN ({marks})", keys
        )
        for key, account_id in rows:
            batch.account_ids[str(key)] = int(account_id)
            if cached.get(str(key)) != account_id:
                # The id may have belonged to a deleted account before.
                batch.purged_accounts.add(int(account_id))

    def _resolve_accounts(
        self,
        conn: sqlite3.Connection,
        cached_ids: Mapping[str, int],
        seen: Mapping[str, SeenAccount],
        batch: RecordBatch,
        max_accounts: int | None,
    ) -> None:
        """Upsert the batch's accounts and put every account_key -> id into batch.account_ids.

        New accounts beyond max_accounts are not created: their keys go to batch.refused. Runs
        on the connection's thread (see record); cached_ids is the account id cache as this
        batch may trust it.
        """
        cached = {key: cached_ids[key] for key in seen if key in cached_ids}
        if cached:
            params = [_account_params(seen[key], account_id) for key, account_id in cached.items()]
            cursor = conn.executemany(_UPDATE_ACCOUNT, params)
            if cursor.rowcount == len(cached):
                batch.account_ids.update(cached)
            else:
                # A row was deleted or replaced behind the cache: look these keys up again and
                # forget their throttle state, whose rows went with the account.
                LOG.info("account cache out of date; reloading %s accounts", len(cached))
                batch.purged_accounts.update(cached.values())
        missing = [key for key in seen if key not in batch.account_ids]
        if not missing:
            return
        known = select_in(
            conn, "SELECT account_key, id FROM accounts WHERE account_key IN ({marks})", missing
        )
        found = {str(key): int(account_id) for key, account_id in known}
        if found:
            params = [_account_params(seen[key], account_id) for key, account_id in found.items()]
            conn.executemany(_UPDATE_ACCOUNT, params)
        created: dict[str, int] = {}
        new = [seen[key] for key in missing if key not in found]
        if new and max_accounts is not None:
            count = conn.execute("SELECT count(*) FROM accounts").fetchone()
            new, refused = admit_accounts(new, int(count[0]), max_accounts)
            batch.refused.update(account.account_key for account in refused)
        for chunk_seen in chunks(new, CHUNK):
            values: list[Any] = []
            for account in chunk_seen:
                values += (
                    account.account_key,
                    account.chatgpt_account_id,
                    account.chatgpt_user_id,
                    account.email,
                    account.plan_type,
                    account.token_fingerprint,
                    account.first_seen_at,
                    account.last_seen_at,
                )
            rows = conn.execute(
                "INSERT INTO accounts (account_key, chatgpt_account_id, chatgpt_user_id, email, "  # noqa: S608
                "plan_type, token_fingerprint, first_seen_at, last_seen_at) VALUES "
                + ", ".join(_INSERT_ACCOUNT_ROW for _ in chunk_seen)
                + " RETURNING account_key, id",
                values,
            ).fetchall()
            created.update((str(key), int(account_id)) for key, account_id in rows)
        if created:
            now = time.time()
            conn.executemany(
                INSERT_EVENT,
                [(account_id, "created", now) for account_id in sorted(created.values())],
            )
        batch.accounts_created = len(created)
        batch.account_ids.update(found)
        batch.account_ids.update(created)
        # An id read from the database may have belonged to a deleted account before.
        batch.purged_accounts.update(found.values())
        batch.purged_accounts.update(created.values())


def _account_params(account: SeenAccount, account_id: int) -> dict[str, Any]:
    """Named parameters for _UPDATE_ACCOUNT."""
    return {
        "id": account_id,
        "account_key": account.account_key,
        "first_seen_at": account.first_seen_at,
        "last_seen_at": account.last_seen_at,
        "chatgpt_account_id": account.chatgpt_account_id,
        "chatgpt_user_id": account.chatgpt_user_id,
        "email": account.email,
        "plan_type": account.plan_type,
        "token_fingerprint": account.token_fingerprint,
    }
