"""PostgreSQL: the instances sharing the database and the singleton lease (see InstanceStore).

None of this is a table the live feed follows: no write lock, no notification.
"""

from __future__ import annotations

import asyncpg

from codexgate.core.rows import InstanceRow, InstancesView, Lease
from codexgate.storage.postgresql.connection import NOW, SINGLETON, PostgresBase, guarded

_INSTANCE_COLUMNS = "id, hostname, pid, version, started_at, seen_at, role"
# The first lease ever starts the alert engine after the rows already there (history is not
# alerted on); from then on the cursor is the holders' progress.
_FIRST_CURSOR = "(SELECT coalesce(max(id), 0) FROM usage_snapshots)"


class InstancesMixin(PostgresBase):
    """The instances' heartbeats and the lease of the one doing singleton work."""

    @guarded
    async def instance_beat(self, instance: InstanceRow, *, forget_after: float) -> None:
        """Write this instance's row with seen_at now; forget instances silent for forget_after."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO instances ({_INSTANCE_COLUMNS}) "  # noqa: S608 - constants
                f"VALUES ($1, $2, $3, $4, $5, {NOW}, $6) "
                "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, role = excluded.role",
                instance.id,
                instance.hostname,
                instance.pid,
                instance.version,
                instance.started_at,
                instance.role,
            )
            await conn.execute(
                f"DELETE FROM instances WHERE seen_at < {NOW} - $1",  # noqa: S608 - constants
                forget_after,
            )

    @guarded
    async def instances(self) -> InstancesView:
        """Every instance's row, newest start first, with the database's clock."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            now = await conn.fetchval(f"SELECT {NOW}")
            rows = await conn.fetch(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances "  # noqa: S608 - constants
                "ORDER BY started_at DESC, id"
            )
        return InstancesView(float(now), [InstanceRow(*row) for row in rows])

    @guarded
    async def claim_lease(self, holder: str, ttl: float, cursor: int) -> Lease:
        """Take or renew the singleton lease when free, expired or holder's own; as it is after."""
        row = None
        # Two instances claiming a lease row that is not there yet: the second one's statement
        # waits for the first one's row, then sees neither its own insert nor (by its snapshot)
        # that row; its second try sees the row.
        for _ in range(3):
            row = await self._claim(holder, ttl, cursor)
            if row is not None:
                break
        assert row is not None, "the lease row was neither claimed nor found"
        return Lease(row[0], float(row[1]), int(row[2]), float(row[3]))

    async def _claim(self, holder: str, ttl: float, cursor: int) -> asyncpg.Record | None:
        async with self._pool.acquire() as conn:
            return await conn.fetchrow(
                "WITH claimed AS ("  # noqa: S608 - constants
                "INSERT INTO leases (name, holder, expires_at, cursor) "
                f"VALUES ($1, $2, {NOW} + $3, {_FIRST_CURSOR}) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at, cursor = CASE "
                "WHEN leases.holder = excluded.holder "
                "THEN greatest(leases.cursor, $4) ELSE leases.cursor END "
                f"WHERE leases.holder = excluded.holder OR leases.expires_at <= {NOW} "
                "RETURNING holder, expires_at, cursor) "
                f"SELECT holder, expires_at, cursor, {NOW} FROM claimed "
                f"UNION ALL SELECT holder, expires_at, cursor, {NOW} FROM leases "
                "WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM claimed)",
                SINGLETON,
                holder,
                ttl,
                cursor,
            )

    @guarded
    async def release_lease(self, holder: str, cursor: int) -> None:
        """Give the lease up now if holder holds it, saving its cursor."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                f"UPDATE leases SET expires_at = {NOW}, cursor = greatest(cursor, $3) "  # noqa: S608
                "WHERE name = $1 AND holder = $2",
                SINGLETON,
                holder,
                cursor,
            )
