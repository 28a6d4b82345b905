"""SQLite: the settings and sessions tables."""

from __future__ import annotations

from codexgate.core.rows import SessionRow
from codexgate.storage.sqlite.connection import SQLiteBase, guarded


class SettingsMixin(SQLiteBase):
    """Named values, and signed-in browsers' sessions."""

    @guarded
    async def get_setting(self, name: str) -> str | None:
        """The value stored under name, or None."""
        rows = await self._fetch("SELECT value FROM settings WHERE name = ?", (name,))
        return next((str(row[0]) for row in rows), None)

    @guarded
    async def set_setting(self, name: str, value: str) -> None:
        """Store value under name, replacing what was there."""
        async with self._lock, self._transaction():
            await self._db.execute(
                "INSERT INTO settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    @guarded
    async def delete_setting(self, name: str) -> None:
        """Remove the value under name, if there is one."""
        async with self._lock, self._transaction():
            await self._db.execute("DELETE FROM settings WHERE name = ?", (name,))

    @guarded
    async def set_setting_if_absent(self, name: str, value: str) -> str:
        """Store value under name unless a value is there; return the stored value.

        Two processes starting at once both get the value of whichever wrote first.
        """
        async with self._lock, self._transaction():
            await self._db.execute(
                "INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, value)
            )
            rows = await self._db.execute_fetchall(
                "SELECT value FROM settings WHERE name = ?", (name,)
            )
        return str(next(iter(rows))[0])

    # -- sessions ---------------------------------------------------------------------------

    @guarded
    async def create_session(
        self, id_sha256: str, created_at: float, expires_at: float, *, keep: int
    ) -> None:
        """Store a new session; drop expired ones, and the oldest beyond the newest `keep`."""
        async with self._lock, self._transaction():
            await self._db.execute("DELETE FROM sessions WHERE expires_at <= ?", (created_at,))
            await self._db.execute(
                "INSERT INTO sessions (id_sha256, created_at, expires_at, last_used_at) "
                "VALUES (?, ?, ?, ?)",
                (id_sha256, created_at, expires_at, created_at),
            )
            await self._db.execute(
                "DELETE FROM sessions WHERE id_sha256 IN (SELECT id_sha256 FROM sessions "
                "ORDER BY created_at DESC, id_sha256 LIMIT -1 OFFSET ?)",
                (keep,),
            )

    @guarded
    async def session(self, id_sha256: str) -> SessionRow | None:
        """The session whose cookie hashes to id_sha256, expired or not; None when there is none."""
        rows = await self._fetch(
            "SELECT id_sha256, created_at, expires_at, last_used_at FROM sessions "
            "WHERE id_sha256 = ?",
            (id_sha256,),
        )
        return next((SessionRow(str(r[0]), r[1], r[2], r[3]) for r in rows), None)

    @guarded
    async def touch_session(self, id_sha256: str, at: float) -> None:
        """Record that the session signed a request at `at`."""
        async with self._lock, self._transaction():
            await self._db.execute(
                "UPDATE sessions SET last_used_at = max(last_used_at, ?) WHERE id_sha256 = ?",
                (at, id_sha256),
            )

    @guarded
    async def delete_session(self, id_sha256: str) -> bool:
        """End one session; whether it existed."""
        async with self._lock, self._transaction():
            cursor = await self._db.execute(
                "DELETE FROM sessions WHERE id_sha256 = ?", (id_sha256,)
            )
        return cursor.rowcount > 0

    @guarded
    async def delete_sessions(self) -> int:
        """End every session; how many there were."""
        async with self._lock, self._transaction():
            cursor = await self._db.execute("DELETE FROM sessions")
        return cursor.rowcount
