"""Accounts added, renamed and deleted by hand: the store write, then everyone who must know.

The REST API, the compat routes and the command line's local `accounts add|rename|rm` all go
through `Accounts`, so that a change made by hand wakes the live feed (which reads account events
from the store) and the alert engine (which keeps per-account state) the same way.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from codexgate.capture.headers import identity_from_token
from codexgate.core.accounts import bearer_value
from codexgate.core.models import Identity
from codexgate.core.rows import AccountRow
from codexgate.keys import ACCOUNTS, ALERTS, EVENT_BUS, FORECASTS, REFRESH, STORE
from codexgate.services.alerts import AlertEngine
from codexgate.services.feed import EventBus
from codexgate.services.forecasts import ForecastCache
from codexgate.services.refresh import IdleRefresh
from codexgate.storage.interface import AccountStore


def seat_identity(token: str, account_id: str | None = None) -> Identity | None:
    """The identity of a seat's token by the rules of a request's bearer token; None if empty.

    account_id is the ChatGPT-Account-ID a client sends with that token, if known.
    """
    return identity_from_token("Bearer " + bearer_value(token), account_id)


class Accounts:
    """Create, rename and delete accounts, then tell the feed, the alerts and the forecasts."""

    def __init__(
        self,
        store: AccountStore,
        *,
        bus: EventBus | None = None,
        engine: AlertEngine | None = None,
        forecasts: ForecastCache | None = None,
        refresh: IdleRefresh | None = None,
    ) -> None:
        self._store = store
        self._refresh = refresh
        self._bus = bus
        self._engine = engine
        self._forecasts = forecasts

    async def create(
        self, identity: Identity, name: str | None, now: float | None = None
    ) -> tuple[AccountRow, bool]:
        """Register the seat of identity (or update its name): (account, created)."""
        account, created = await self._store.create_account(
            identity, name, time.time() if now is None else now
        )
        self._changed()
        return account, created

    async def rename(self, account_id: int, name: str | None) -> AccountRow | None:
        """Set or clear (None) a display name; None when there is no such account."""
        account = await self._store.update_account(account_id, display_name=name)
        if account is not None:
            self._changed()
        return account

    async def delete(self, account_id: int) -> bool:
        """Delete an account with its history and requests; False when there is none."""
        if not await self._store.delete_account(account_id):
            return False
        if self._engine is not None:
            self._engine.forget(account_id)
        if self._forecasts is not None:
            self._forecasts.forget(account_id)
        if self._refresh is not None:
            self._refresh.forget(account_id)  # its token goes with it
        self._changed()
        return True

    def _changed(self) -> None:
        """The feed reads the account events written outside the recorder (the alert engine
        reads names at each evaluation, so a rename reaches the next alert without a call)."""
        if self._bus is not None:
            self._bus.notify()


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the accounts service, after the feed bus and the alert engine it wakes."""
    app[ACCOUNTS] = Accounts(
        app[STORE],
        bus=app.get(EVENT_BUS),
        engine=app.get(ALERTS),
        forecasts=app.get(FORECASTS),
        refresh=app.get(REFRESH),
    )
    yield
