"""SQLite: the processes sharing the file and the singleton lease (see InstanceStore).

SQLite's clock is this machine's, which every process on one file shares.
"""

from __future__ import annotations

import time
from typing import Final

from codexgate.core.rows import InstanceRow, InstancesView, Lease
from codexgate.storage.sqlite.connection import SQLiteBase, guarded

SINGLETON: Final = "singleton"  # the lease's row in `leases`
_INSTANCE_COLUMNS: Final = "id, hostname, pid, version, started_at, seen_at, role"


class InstancesMixin(SQLiteBase):
    """The processes' heartbeats and the lease of the one doing singleton work."""

    @guarded
    async def instance_beat(self, instance: InstanceRow, *, forget_after: float) -> None:
        """Write this instance's row with seen_at now; forget instances silent for forget_after."""
        now = time.time()
        async with self._lock, self._transaction():
            await self._db.execute(
                f"INSERT INTO instances ({_INSTANCE_COLUMNS}) "  # noqa: S608 - constants
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, role = excluded.role",
                (
                    instance.id,
                    instance.hostname,
                    instance.pid,
                    instance.version,
                    instance.started_at,
                    now,
                    instance.role,
                ),
            )
            await self._db.execute("DELETE FROM instances WHERE seen_at < ?", (now - forget_after,))

    @guarded
    async def instances(self) -> InstancesView:
        """Every instance's row, newest start first, with the clock."""
        rows = await self._fetch(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances ORDER BY started_at DESC, id",  # noqa: S608
            (),
        )
        return InstancesView(time.time(), [InstanceRow(*row) for row in rows])

    @guarded
    async def claim_lease(self, holder: str, ttl: float, cursor: int) -> Lease:
        """Take or renew the singleton lease when free, expired or holder's own; as it is after."""
        now = time.time()
        async with self._lock, self._transaction():
            # BEGIN IMMEDIATE holds the file's write lock: processes claim one after the other.
            await self._db.execute(
                # The first lease ever starts the alert engine after the rows already there
                # (history is not alerted on); from then on the cursor is the holders' progress.
                "INSERT INTO leases (name, holder, expires_at, cursor) VALUES (?1, ?2, ?3, "
                "(SELECT coalesce(max(id), 0) FROM usage_snapshots)) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at, cursor = CASE "
                "WHEN leases.holder = excluded.holder "
                "THEN max(leases.cursor, ?4) ELSE leases.cursor END "
                "WHERE leases.holder = excluded.holder OR leases.expires_at <= ?5",
                (SINGLETON, holder, now + ttl, cursor, now),
            )
            rows = await self._db.execute_fetchall(
                "SELECT holder, expires_at, cursor FROM leases WHERE name = ?", (SINGLETON,)
            )
        found = next(iter(rows))
        return Lease(found[0], float(found[1]), int(found[2]), now)

    @guarded
    async def release_lease(self, holder: str, cursor: int) -> None:
        """Give the lease up now if holder holds it, saving its cursor."""
        async with self._lock, self._transaction():
            await self._db.execute(
                "UPDATE leases SET expires_at = ?, cursor = max(cursor, ?) "
                "WHERE name = ? AND holder = ?",
                (time.time(), cursor, SINGLETON, holder),
            )
