"""Where the offline commands read and write: the database, or a running instance's API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
from aiohttp import (
    ClientConnectorCertificateError,
    ClientConnectorDNSError,
    ClientConnectorError,
    ClientError,
    ClientOSError,
    ClientSession,
    ClientSSLError,
    ClientTimeout,
    ConnectionTimeoutError,
    ServerDisconnectedError,
    ServerTimeoutError,
)
from yarl import URL

from codexgate.api.common import MAX_PAGE, parse_token
from codexgate.api.errors import ApiError
from codexgate.api.schemas import Account, HistoryRow, account_json, history_json
from codexgate.cli.common import USAGE, CommandError, open_database
from codexgate.config import Config
from codexgate.core.models import Identity
from codexgate.core.rows import AccountRow, LatestUsageRow
from codexgate.proxy.relay import ERROR_HEADER
from codexgate.services.accounts import Accounts
from codexgate.services.forecasts import ForecastCache
from codexgate.storage.interface import Storage, StorageSetupError

# Rows per history page, local or remote (the API's maximum).
_PAGE: Final = MAX_PAGE
# A command waits this long for a running instance; nothing it asks for streams.
_TIMEOUT: Final = ClientTimeout(total=60, connect=10)


class Backend(Protocol):
    """Accounts and history in the REST API's JSON shapes, wherever they come from."""

    async def accounts(self) -> list[Account]:
        """Every account with its latest usage, oldest first."""
        ...

    async def history(
        self, account_id: int, *, window: str | None, since: float | None, until: float | None
    ) -> list[HistoryRow]:
        """An account's history rows, oldest first, every page."""
        ...

    async def create_account(
        self, token: str, name: str | None, account_id: str | None
    ) -> tuple[Account, bool]:
        """Register the seat of token (or update it): (account, created).

        account_id is what a client sends as ChatGPT-Account-ID with the token, if known.
        """
        ...

    async def rename_account(self, account_id: int, name: str | None) -> Account:
        """Set or clear an account's display name."""
        ...

    async def delete_account(self, account_id: int) -> None:
        """Remove an account with its history and requests."""
        ...


def seat_identity(token: str, account_id: str | None = None) -> Identity:
    """The identity of a seat's token, by the API's rules (a pasted "Bearer " is dropped)."""
    body = {"token": token} if account_id is None else {"token": token, "account_id": account_id}
    try:
        return parse_token(body)
    except ApiError as exc:
        raise CommandError(exc.message, USAGE) from None


class LocalBackend:
    """The database file, through storage (SQLite in WAL mode: fine while the server runs)."""

    def __init__(self, store: Storage) -> None:
        self._store = store
        # No feed or alert engine runs here: a server on the same file sees the account events
        # with its next commit.
        self._accounts = Accounts(store)

    async def _render(self, accounts: list[AccountRow]) -> list[Account]:
        """Accounts with their latest usage and forecasts, as GET accounts has them."""
        ids = [a.id for a in accounts]
        rows = await self._store.latest_usage_of(ids)
        forecasts = await ForecastCache(self._store).of_rows(rows, time.time())
        latest: dict[int, list[LatestUsageRow]] = {}
        for row in rows:
            latest.setdefault(row.usage.account_id, []).append(row)
        return [account_json(a, latest.get(a.id, ()), forecasts) for a in accounts]

    async def accounts(self) -> list[Account]:
        """Every account with its latest usage."""
        return await self._render(await self._store.accounts())

    async def history(
        self, account_id: int, *, window: str | None, since: float | None, until: float | None
    ) -> list[HistoryRow]:
        """Every history row in the range, a page at a time."""
        items: list[HistoryRow] = []
        after: tuple[float, int] | None = None
        while True:
            rows = await self._store.history_page(
                account_id, window=window, since=since, until=until, after=after, limit=_PAGE
            )
            items += (history_json(row) for row in rows)
            if len(rows) < _PAGE:
                return items
            after = (rows[-1].captured_at, rows[-1].id)

    async def create_account(
        self, token: str, name: str | None, account_id: str | None
    ) -> tuple[Account, bool]:
        """Register the seat in the file."""
        row, created = await self._accounts.create(seat_identity(token, account_id), name)
        return (await self._render([row]))[0], created

    async def rename_account(self, account_id: int, name: str | None) -> Account:
        """Rename in the file."""
        row = await self._accounts.rename(account_id, name)
        if row is None:
            raise CommandError(f"no account with id {account_id}")
        return (await self._render([row]))[0]

    async def delete_account(self, account_id: int) -> None:
        """Delete from the file."""
        if not await self._accounts.delete(account_id):
            raise CommandError(f"no account with id {account_id}")


class RemoteBackend:
    """A running instance's REST API under /<prefix>/api/v1, with the admin token."""

    def __init__(
        self,
        session: ClientSession,
        base: URL,
        prefix: str,
        token: str | None,
        admin_flag: str = "--token",
    ) -> None:
        self._session = session
        self._origin = str(base.origin())
        self._host = base.host or ""
        self._prefix = prefix
        self._api = base.with_path(f"{base.path.rstrip('/')}/{prefix}/api/v1")
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._admin_flag = admin_flag

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """One API request: (status, decoded JSON or None); errors become CommandErrors."""
        url = self._api.with_path(f"{self._api.path}/{path}")
        data = None if body is None else orjson.dumps(body)
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, url, params=query, data=data, headers=headers
            ) as response:
                status, raw = response.status, await response.read()
                # The gateway's own proxy answered: the path is not its API (another prefix).
                relayed = ERROR_HEADER in response.headers
        except (ClientError, TimeoutError) as exc:
            reason = unreachable_reason(exc, self._host)
            raise CommandError(f"cannot reach codexgate at {self._origin}: {reason}") from None
        try:
            decoded = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            decoded = None
        message = _error_message(decoded)
        if relayed:
            raise CommandError(self._not_codexgate(f"answered {status}"))
        if status < 400:
            if status != 204 and not isinstance(decoded, dict):
                raise CommandError(self._not_codexgate(f"answered {status} without JSON"))
            return status, decoded
        if status == 401:
            raise CommandError(
                f"{self._origin} refused the admin token ({message or 'HTTP 401'}); "
                f"give it with {self._admin_flag} or CODEXGATE_ADMIN_TOKEN"
            )
        if message is None:
            # Not codexgate's error envelope: another server, or another --admin-prefix.
            raise CommandError(self._not_codexgate(f"answered {status}"))
        if status != 404:
            message = f"{self._origin} answered {status}: {message}"
        raise CommandError(message, USAGE if status == 400 else 1)

    def _not_codexgate(self, what: str) -> str:
        """The message for an answer that did not come from codexgate's API."""
        return (
            f"{self._origin} {what} at /{self._prefix}/api/v1: is codexgate there, "
            "with this --admin-prefix?"
        )

    async def accounts(self) -> list[Account]:
        """GET accounts."""
        _, body = await self._call("GET", "accounts")
        accounts: list[Account] = body["accounts"]
        return accounts

    async def history(
        self, account_id: int, *, window: str | None, since: float | None, until: float | None
    ) -> list[HistoryRow]:
        """GET accounts/{id}/history, following next_cursor to the end."""
        query = {"limit": str(_PAGE)}
        if window is not None:
            query["window"] = window
        if since is not None:
            query["since"] = repr(since)
        if until is not None:
            query["until"] = repr(until)
        items: list[HistoryRow] = []
        while True:
            _, page = await self._call("GET", f"accounts/{account_id}/history", query=query)
            items += page["items"]
            if page["next_cursor"] is None:
                return items
            query["cursor"] = page["next_cursor"]

    async def create_account(
        self, token: str, name: str | None, account_id: str | None
    ) -> tuple[Account, bool]:
        """POST accounts."""
        body: dict[str, Any] = {"token": token}
        if name is not None:
            body["name"] = name
        if account_id is not None:
            body["account_id"] = account_id
        status, account = await self._call("POST", "accounts", body=body)
        return account, status == 201

    async def rename_account(self, account_id: int, name: str | None) -> Account:
        """PATCH accounts/{id}."""
        _, account = await self._call(
            "PATCH", f"accounts/{account_id}", body={"display_name": name}
        )
        renamed: Account = account
        return renamed

    async def delete_account(self, account_id: int) -> None:
        """DELETE accounts/{id}."""
        await self._call("DELETE", f"accounts/{account_id}")


def unreachable_reason(exc: BaseException, host: str) -> str:
    """Why a running instance could not be asked, in a few words and without library detail."""
    match exc:
        case ClientConnectorDNSError():
            return f"cannot resolve the host name {host!r}"
        case ClientConnectorCertificateError() | ClientSSLError():
            return "the TLS handshake failed (certificate or protocol)"
        case ClientConnectorError() if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused (is it running, on this port?)"
        case ClientConnectorError():
            return exc.os_error.strerror or "cannot connect"
        case ServerDisconnectedError():
            return "the connection closed before an answer"
        case ConnectionTimeoutError():
            return f"no connection within {_TIMEOUT.connect:g} s"
        case ServerTimeoutError() | TimeoutError():
            return f"no answer within {_TIMEOUT.total:g} s"
        case ClientOSError() if exc.strerror:
            return exc.strerror
    return type(exc).__name__


def _error_message(body: Any) -> str | None:
    """The message of codexgate's error envelope, if body is one."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str):
            return message
    return None


def instance_url(raw: str) -> URL:
    """The --url of a running instance: an http(s) URL with a host."""
    try:
        url = URL(raw.strip())
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise CommandError(f"--url must be an http:// or https:// URL, got {raw!r}", USAGE)
    return url


@asynccontextmanager
async def open_backend(
    config: Config,
    url: str | None,
    token: str | None,
    *,
    create: bool = False,
    admin_flag: str = "--token",
) -> AsyncIterator[Backend]:
    """The running instance at url (with token, else the admin_token setting), or the --db database.

    Without create, a database file that does not exist is an error rather than a new file (a
    PostgreSQL database is opened, and migrated, as the server would).
    admin_flag is the flag that gives the admin token, named when the instance refuses it.
    """
    if url:
        base = instance_url(url)
        async with ClientSession(timeout=_TIMEOUT) as session:
            yield RemoteBackend(
                session, base, config.admin_prefix, token or config.admin_token, admin_flag
            )
        return
    path = config.db if isinstance(config.db, Path) else None
    if not create and path is not None and not await asyncio.to_thread(path.exists):
        raise CommandError(f"no database at {path}; give --db, or --url for a running instance")
    try:
        store = await open_database(config)
    except StorageSetupError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield LocalBackend(store)
    finally:
        await store.close()


def pick_account(accounts: Sequence[Account], query: str) -> Account:
    """The account an id, display name, email or account key names; ambiguity is an error."""
    wanted = query.strip()
    if wanted.isdigit():
        by_id = [a for a in accounts if str(a["id"]) == wanted.lstrip("0")]
        if by_id:
            return by_id[0]
    folded = wanted.casefold()
    matches = [
        a
        for a in accounts
        if wanted == a.get("account_key")
        or any(
            value is not None and value.casefold() == folded
            for value in (a["display_name"], a["email"])
        )
    ]
    if not matches:
        raise CommandError(f"no account matches {query!r} (an id, display name or email)")
    if len(matches) > 1:
        listed = ", ".join(
            f"{a['id']} ({a.get('display_name') or a.get('email')})" for a in matches
        )
        raise CommandError(f"{query!r} matches accounts {listed}; give the id", USAGE)
    return matches[0]
