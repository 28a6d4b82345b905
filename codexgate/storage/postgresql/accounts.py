"""PostgreSQL: the accounts and account_events tables."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Final

from codexgate.core.models import Identity
from codexgate.core.recording import SeenAccount, admit_accounts
from codexgate.core.rows import AccountRow
from codexgate.storage.batch import RecordBatch
from codexgate.storage.columns import (
    ACCOUNT_COLUMNS,
    ID_FLOOR_TABLES,
    checked_limit,
    id_floor_setting,
)
from codexgate.storage.postgresql.connection import Connection, PostgresBase, guarded

LOG = logging.getLogger(__name__)

INSERT_EVENT: Final = "INSERT INTO account_events (account_id, kind, at) VALUES ($1, $2, $3)"

# Row ids must never come back (see columns.ID_FLOOR_TABLES): before an account's rows go, the
# floor in `settings` rises to the highest id the table holds.
RAISE_ID_FLOOR: Final = {
    table: (
        "INSERT INTO settings (name, value) "  # noqa: S608 - constants
        f"SELECT $1, coalesce(max(id), 0)::text FROM {table} "
        "ON CONFLICT (name) DO UPDATE "
        "SET value = greatest(settings.value::bigint, excluded.value::bigint)::text"
    )
    for table in ID_FLOOR_TABLES
}

# A field takes the batch's value when the batch is at least as new as the row, else it only
# fills a NULL: the newest non-NULL value wins even when batches arrive out of order. One
# statement for every account of a batch; RETURNING says which rows still exist.
_UPDATE_ACCOUNTS: Final = """
UPDATE accounts AS a SET
    chatgpt_account_id = CASE WHEN u.last_seen_at >= a.last_seen_at
        THEN coalesce(u.chatgpt_account_id, a.chatgpt_account_id)
        ELSE coalesce(a.chatgpt_account_id, u.chatgpt_account_id) END,
    chatgpt_user_id = CASE WHEN u.last_seen_at >= a.last_seen_at
        THEN coalesce(u.chatgpt_user_id, a.chatgpt_user_id)
        ELSE coalesce(a.chatgpt_user_id, u.chatgpt_user_id) END,
    email = CASE WHEN u.last_seen_at >= a.last_seen_at
        THEN coalesce(u.email, a.email) ELSE coalesce(a.email, u.email) END,
    plan_type = CASE WHEN u.last_seen_at >= a.last_seen_at
        THEN coalesce(u.plan_type, a.plan_type) ELSE coalesce(a.plan_type, u.plan_type) END,
    token_fingerprint = CASE WHEN u.last_seen_at >= a.last_seen_at
        THEN coalesce(u.token_fingerprint, a.token_fingerprint)
        ELSE coalesce(a.token_fingerprint, u.token_fingerprint) END,
    first_seen_at = least(a.first_seen_at, u.first_seen_at),
    last_seen_at = greatest(a.last_seen_at, u.last_seen_at)
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::double precision[], $9::double precision[])
    AS u (id, account_key, chatgpt_account_id, chatgpt_user_id, email, plan_type,
          token_fingerprint, first_seen_at, last_seen_at)
WHERE a.id = u.id AND a.account_key = u.account_key
RETURNING a.id
"""

# New accounts in the batch's order, so that their ids ascend in it.
_INSERT_ACCOUNTS: Final = """
INSERT INTO accounts (account_key, chatgpt_account_id, chatgpt_user_id, email, plan_type,
    token_fingerprint, first_seen_at, last_seen_at)
SELECT account_key, chatgpt_account_id, chatgpt_user_id, email, plan_type, token_fingerprint,
    first_seen_at, last_seen_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::double precision[], $8::double precision[])
    WITH ORDINALITY AS n (account_key, chatgpt_account_id, chatgpt_user_id, email, plan_type,
                          token_fingerprint, first_seen_at, last_seen_at, position)
ORDER BY position
RETURNING account_key, id
"""

_IDS_OF_KEYS: Final = "SELECT account_key, id FROM accounts WHERE account_key = ANY($1::text[])"


class AccountsMixin(PostgresBase):
    """Accounts: reading, adding, renaming, deleting, and a batch's upsert."""

    @guarded
    async def accounts(self) -> list[AccountRow]:
        """Every account, oldest first."""
        rows = await self._fetch(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id")  # noqa: S608
        return [AccountRow(*row) for row in rows]

    @guarded
    async def account(self, account_id: int) -> AccountRow | None:
        """One account by id, or None."""
        rows = await self._fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1",  # noqa: S608
            account_id,
        )
        return next((AccountRow(*row) for row in rows), None)

    @guarded
    async def accounts_after(self, after_id: int, limit: int) -> list[AccountRow]:
        """At most limit accounts with an id above after_id, by id (a keyset page)."""
        rows = await self._fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > $1 ORDER BY id LIMIT $2",  # noqa: S608
            after_id,
            checked_limit(limit),
        )
        return [AccountRow(*row) for row in rows]

    @guarded
    async def accounts_of(self, account_ids: Sequence[int]) -> list[AccountRow]:
        """The accounts with these ids (unknown ids are skipped), by id."""
        rows = await self._fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id",  # noqa: S608
            sorted(set(account_ids)),
        )
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
        fields = (
            identity.account_key,
            identity.chatgpt_account_id,
            identity.chatgpt_user_id,
            display_name,
            identity.email,
            identity.plan_type,
            identity.token_fingerprint,
        )
        async with self._writing() as conn:
            # Another session (not codexgate's) may delete the row between the two statements:
            # then the insert is tried again.
            while True:
                found = await conn.fetchrow(
                    "INSERT INTO accounts (account_key, chatgpt_account_id, chatgpt_user_id, "  # noqa: S608
                    "display_name, email, plan_type, token_fingerprint, first_seen_at, "
                    "last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) "
                    "ON CONFLICT (account_key) DO NOTHING "
                    f"RETURNING {ACCOUNT_COLUMNS}",
                    *fields,
                    now,
                )
                created = found is not None
                if found is None:
                    found = await conn.fetchrow(
                        "UPDATE accounts SET "  # noqa: S608
                        "chatgpt_account_id = coalesce($2, chatgpt_account_id), "
                        "chatgpt_user_id = coalesce($3, chatgpt_user_id), "
                        "display_name = coalesce($4, display_name), "
                        "email = coalesce($5, email), "
                        "plan_type = coalesce($6, plan_type), "
                        "token_fingerprint = coalesce($7, token_fingerprint) "
                        f"WHERE account_key = $1 RETURNING {ACCOUNT_COLUMNS}",
                        *fields,
                    )
                if found is not None:
                    break
            row = AccountRow(*found)
            await conn.execute(INSERT_EVENT, row.id, "created" if created else "updated", now)
        if created:
            # An id given by hand (not by the identity) may have belonged to a deleted account:
            # forget its throttle state.
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
        async with self._writing() as conn:
            found = await conn.fetchrow(
                f"UPDATE accounts SET display_name = $1 WHERE id = $2 RETURNING {ACCOUNT_COLUMNS}",  # noqa: S608
                display_name,
                account_id,
            )
            row = None if found is None else AccountRow(*found)
            if row is not None:
                at = time.time() if now is None else now
                await conn.execute(INSERT_EVENT, row.id, "updated", at)
        return row

    @guarded
    async def delete_account(self, account_id: int, *, now: float | None = None) -> bool:
        """Delete an account, its history and its requests; False if there is no such id.

        Writes a 'deleted' account event at now (the clock's by default) when it deleted one.
        """
        try:
            async with self._writing() as conn:
                for table in ID_FLOOR_TABLES:
                    await conn.execute(RAISE_ID_FLOOR[table], id_floor_setting(table))
                gone = await conn.fetchval(
                    "DELETE FROM accounts WHERE id = $1 RETURNING id", account_id
                )
                deleted = gone is not None
                if deleted:
                    at = time.time() if now is None else now
                    await conn.execute(INSERT_EVENT, account_id, "deleted", at)
        finally:
            # Forgetting is always safe: the caches reload from the database.
            self._account_ids = {k: v for k, v in self._account_ids.items() if v != account_id}
            self._last = {k: v for k, v in self._last.items() if k[0] != account_id}
        return deleted

    async def _attach_accounts(
        self, conn: Connection, keys: Sequence[str], batch: RecordBatch
    ) -> None:
        """Put the ids of the accounts that exist among keys into batch.account_ids, as they are."""
        if not keys:
            return
        for key, account_id in await conn.fetch(_IDS_OF_KEYS, list(keys)):
            batch.account_ids[str(key)] = int(account_id)
            if self._account_ids.get(str(key)) != account_id:
                # Not the id this process knew: its throttle state is not ours to trust.
                batch.purged_accounts.add(int(account_id))

    async def _resolve_accounts(
        self,
        conn: Connection,
        seen: Mapping[str, SeenAccount],
        batch: RecordBatch,
        max_accounts: int | None,
    ) -> None:
        """Upsert the batch's accounts and put every account_key -> id into batch.account_ids.

        New accounts beyond max_accounts are not created: their keys go to batch.refused.
        """
        cached = {key: self._account_ids[key] for key in seen if key in self._account_ids}
        if cached:
            updated = await _update_accounts(conn, seen, cached)
            if updated == len(cached):
                batch.account_ids.update(cached)
            else:
                # A row was deleted or replaced behind the cache (by hand, or by another
                # instance): look these keys up again and forget their throttle state, whose
                # rows went with the account.
                LOG.info("account cache out of date; reloading %s accounts", len(cached))
                batch.purged_accounts.update(cached.values())
        missing = [key for key in seen if key not in batch.account_ids]
        if not missing:
            return
        known = await conn.fetch(_IDS_OF_KEYS, missing)
        found = {str(key): int(account_id) for key, account_id in known}
        if found:
            await _update_accounts(conn, seen, found)
        created: dict[str, int] = {}
        new = [seen[key] for key in missing if key not in found]
        if new and max_accounts is not None:
            existing = int(await conn.fetchval("SELECT count(*) FROM accounts"))
            new, refused = admit_accounts(new, existing, max_accounts)
            batch.refused.update(account.account_key for account in refused)
        if new:
            rows = await conn.fetch(
                _INSERT_ACCOUNTS,
                [account.account_key for account in new],
                [account.chatgpt_account_id for account in new],
                [account.chatgpt_user_id for account in new],
                [account.email for account in new],
                [account.plan_type for account in new],
                [account.token_fingerprint for account in new],
                [account.first_seen_at for account in new],
                [account.last_seen_at for account in new],
            )
            created.update((str(key), int(account_id)) for key, account_id in rows)
        if created:
            await conn.execute(
                "INSERT INTO account_events (account_id, kind, at) "
                "SELECT id, 'created', $2 FROM unnest($1::bigint[]) AS id ORDER BY id",
                sorted(created.values()),
                time.time(),
            )
        batch.accounts_created = len(created)
        batch.account_ids.update(found)
        batch.account_ids.update(created)
        # Ids this process did not know: their throttle state is loaded afresh.
        batch.purged_accounts.update(found.values())
        batch.purged_accounts.update(created.values())


async def _update_accounts(
    conn: Connection, seen: Mapping[str, SeenAccount], ids: Mapping[str, int]
) -> int:
    """Apply what a batch saw to the accounts with these ids (id and key must still match);
    returns how many rows matched."""
    accounts = [seen[key] for key in ids]
    rows = await conn.fetch(
        _UPDATE_ACCOUNTS,
        list(ids.values()),
        [account.account_key for account in accounts],
        [account.chatgpt_account_id for account in accounts],
        [account.chatgpt_user_id for account in accounts],
        [account.email for account in accounts],
        [account.plan_type for account in accounts],
        [account.token_fingerprint for account in accounts],
        [account.first_seen_at for account in accounts],
        [account.last_seen_at for account in accounts],
    )
    return len(rows)
