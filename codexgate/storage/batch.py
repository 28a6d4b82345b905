"""What one record() call changes in a backend's caches, applied only after COMMIT."""

from __future__ import annotations

from dataclasses import dataclass, field

from codexgate.core.recording import NewestRow, UsageKey


@dataclass(slots=True)
class RecordBatch:
    """Changes one record() call makes to the caches, applied only after COMMIT."""

    account_ids: dict[str, int] = field(default_factory=dict)
    purged_accounts: set[int] = field(default_factory=set)  # reload their throttle state
    last: dict[UsageKey, NewestRow | None] = field(default_factory=dict)
    accounts_created: int = 0
    refused: set[str] = field(default_factory=set)  # new account keys beyond max_accounts
