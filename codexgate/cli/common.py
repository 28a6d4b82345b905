"""What every offline command shares: its error and the exit codes."""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILURE: Final = 1  # the database or the API could not give an answer, or nothing matched
USAGE: Final = 2  # the command line or the configuration is wrong


class CommandError(Exception):
    """A command cannot go on; the message is one line for stderr."""

    def __init__(self, message: str, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
