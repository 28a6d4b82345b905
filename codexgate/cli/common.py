"""What every offline command shares: its error, the exit codes and opening the database."""

from __future__ import annotations

from typing import Final

from codexgate.config import Config
from codexgate.storage import open_storage
from codexgate.storage.interface import Storage

OK: Final = 0
FAILURE: Final = 1  # the database or the API could not give an answer, or nothing matched
USAGE: Final = 2  # the command line or the configuration is wrong


class CommandError(Exception):
    """A command cannot go on; the message is one line for stderr."""

    def __init__(self, message: str, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def open_database(config: Config) -> Storage:
    """Open (creating and migrating) the --db database with the configured pool and timeouts.

    Raises StorageSetupError when it cannot be opened or migrated.
    """
    return await open_storage(
        config.db,
        heartbeat_seconds=config.history_heartbeat,
        pool_size=config.db_pool_size,
        connect_timeout=config.db_connect_timeout,
    )
