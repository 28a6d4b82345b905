"""PostgreSQL: the settings and sessions tables."""

from __future__ import annotations

from codexgate.core.rows import SessionRow
from codexgate.storage.postgresql.connection import PostgresBase, guarded


class SettingsMixin(PostgresBase):
    """Named values, and signed-in browsers' sessions."""

    @guarded
    async def get_setting(self, name: str) -> str | None:
        """The value stored under name, or None."""
        rows = await self._fetch("SELECT value FROM settings WHERE name = $1", name)
        return next((str(row[0]) for row in rows), None)

    @guarded
    async def set_setting(self, name: str, value: str) -> None:
        """Store value under name, replacing what was there."""
        async with self._writing() as conn:
            await conn.execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                name,
                value,
            )

    @guarded
    async def delete_setting(self, name: str) -> None:
        """Remove the value under name, if there is one."""
        async with self._writing() as conn:
            await conn.execute("DELETE FROM settings WHERE name = $1", name)

    @guarded
    async def set_setting_if_absent(self, name: str, value: str) -> str:
        """Store value under name unless a value is there; return the stored value.

        Two processes starting at once both get the value of whichever wrote first.
        """
        async with self._writing() as conn:
            await conn.execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                name,
                value,
            )
            stored = await conn.fetchval("SELECT value FROM settings WHERE name = $1", name)
        return str(stored)

    # -- sessions ---------------------------------------------------------------------------

    @guarded
    async def create_session(
        self, id_sha256: str, created_at: float, expires_at: float, *, keep: int
    ) -> None:
        """Store a new session; drop expired ones, and the oldest beyond the newest `keep`."""
        async with self._writing() as conn:
            await conn.execute("DELETE FROM sessions WHERE expires_at <= $1", created_at)
            await conn.execute(
                "INSERT INTO sessions (id_sha256, created_at, expires_at, last_used_at) "
                "VALUES ($1, $2, $3, $2)",
                id_sha256,
                created_at,
                expires_at,
            )
            await conn.execute(
                "DELETE FROM sessions WHERE id_sha256 IN (SELECT id_sha256 FROM sessions "
                'ORDER BY created_at DESC, id_sha256 COLLATE "C" OFFSET $1)',
                keep,
            )

    @guarded
    async def session(self, id_sha256: str) -> SessionRow | None:
        """The session whose cookie hashes to id_sha256, expired or not; None when there is none."""
        rows = await self._fetch(
            "SELECT id_sha256, created_at, expires_at, last_used_at FROM sessions "
            "WHERE id_sha256 = $1",
            id_sha256,
        )
        return next((SessionRow(str(r[0]), r[1], r[2], r[3]) for r in rows), None)

    @guarded
    async def touch_session(self, id_sha256: str, at: float) -> None:
        """Record that the session signed a request at `at`."""
        async with self._writing() as conn:
            await conn.execute(
                "UPDATE sessions SET last_used_at = greatest(last_used_at, $1) "
                "WHERE id_sha256 = $2",
                at,
                id_sha256,
            )

    @guarded
    async def delete_session(self, id_sha256: str) -> bool:
        """End one session; whether it existed."""
        async with self._writing() as conn:
            gone = await conn.fetchval(
                "DELETE FROM sessions WHERE id_sha256 = $1 RETURNING true", id_sha256
            )
        return gone is not None

    @guarded
    async def delete_sessions(self) -> int:
        """End every session; how many there were."""
        async with self._writing() as conn:
            count = await conn.fetchval(
                "WITH gone AS (DELETE FROM sessions RETURNING 1) SELECT count(*) FROM gone"
            )
        return int(count)
