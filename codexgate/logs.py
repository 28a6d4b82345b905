"""How the gateway logs: codexgate's loggers at --log-level, everyone else's at WARNING.

Third-party loggers are held at WARNING whatever --log-level says: aiosqlite logs every
statement with its values at DEBUG (the cookie key, the admin token's hash, webhook URLs), and
aiohttp logs a traceback at ERROR for every malformed request a client sends, which is noise
that anyone on the network can produce at will.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, TextIO

from aiohttp.http_exceptions import HttpProcessingError

from codexgate.core.sanitize import escape_unsafe

OWN_LOGGER: Final = "codexgate"
# The least a record from a logger outside codexgate needs to be shown.
THIRD_PARTY_LEVEL: Final = logging.WARNING
FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# At most one line about malformed requests per this many seconds.
BAD_REQUEST_INTERVAL: Final = 60.0
# The longest piece of a parser's message quoted in that line: it may repeat client bytes.
_BAD_REQUEST_DETAIL: Final = 120

log = logging.getLogger(__name__)


def is_own(name: str) -> bool:
    """Whether a logger name is codexgate's own (codexgate or below it)."""
    return name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")


class _OwnOrWarning(logging.Filter):
    """Pass codexgate's records at its level, and any other logger's only from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the handler may write `record`."""
        return record.levelno >= THIRD_PARTY_LEVEL or is_own(record.name)


class BadRequestFilter(logging.Filter):
    """aiohttp's traceback for a malformed request, as at most one warning line a minute."""

    def __init__(
        self,
        interval: float = BAD_REQUEST_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._unreported = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a malformed-request record (reported instead), True for anything else."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._unreported += 1
            return False
        self._last = now
        more, self._unreported = self._unreported, 0
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        detail = escape_unsafe(str(error.message))[:_BAD_REQUEST_DETAIL]
        log.warning(
            "malformed request from %s answered %d: %s%s",
            escape_unsafe(str(remote)),
            error.code,
            detail,
            f" ({more} more since the last such line)" if more else "",
        )
        return False


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure() installs, told apart from anyone else's."""


def configure(level: int, stream: TextIO | None = None) -> None:
    """Log to stream (stderr): codexgate's loggers from `level`, other loggers from WARNING."""
    handler = _Handler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_OwnOrWarning())
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, _Handler):
            root.removeHandler(old)
    root.addHandler(handler)
    # A third-party logger without a level of its own then builds no record below WARNING;
    # the handler's filter stops one that set a lower level itself.
    root.setLevel(THIRD_PARTY_LEVEL)
    logging.getLogger(OWN_LOGGER).setLevel(level)
    server = logging.getLogger("aiohttp.server")
    for old_filter in server.filters[:]:
        if isinstance(old_filter, BadRequestFilter):
            server.removeFilter(old_filter)
    server.addFilter(BadRequestFilter())
