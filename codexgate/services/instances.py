"""This instance among those sharing one database, and the singleton lease.

Several codexgate processes may serve on one database: on PostgreSQL any number on many machines,
on SQLite two on one machine during a rolling restart. Each proxies and records on its own. Work
that must happen once (alert evaluation, webhook delivery, retention) is done by the one holding
the lease, a row in `leases` that its holder renews every `beat` seconds; a lease not renewed for
`lease` seconds is free, and the next instance to claim it takes it over, with the cursor of the
alert engine saved in it. An instance that cannot renew stops the singleton work before its lease
can have expired, so two never do it at once; the alert engine's writes are fenced as well (they
check the lease in their own transaction). Each instance also writes a heartbeat row, which the
dashboard and the API show.

Nothing here is on the traffic path: a database outage costs the singleton role, never a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from codexgate import __version__
from codexgate.core.rows import InstanceRole, InstanceRow, InstancesView, Lease
from codexgate.keys import INSTANCE, INSTANCE_OPTIONS, STORE
from codexgate.services.tasks import cancel_and_wait
from codexgate.storage.interface import InstanceStore, StorageUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InstanceOptions:
    """The lease's timing; tests make it short. A dead holder's role is taken over within
    lease + beat seconds."""

    beat: float = 2.0  # seconds between heartbeats (and lease renewals)
    lease: float = 10.0  # a lease not renewed for this long is free
    alive_for: float = 30.0  # an instance silent for longer is shown as gone
    forget_after: float = 24 * 3600.0  # its row is deleted after this long

    def __post_init__(self) -> None:
        if not 0 < self.beat * 2 < self.lease or not self.alive_for > 0:
            raise ValueError(f"invalid instance options: {self!r}")


# Told True when this instance takes the singleton role, False when it gives it up.
RoleListener = Callable[[bool], Awaitable[None]]


class Coordinator:
    """This instance's heartbeat and its claim on the singleton lease (an owned task)."""

    def __init__(self, store: InstanceStore, options: InstanceOptions | None = None) -> None:
        self.options = options or InstanceOptions()
        self.id = secrets.token_hex(6)
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.leads = False
        self.lease: Lease | None = None  # as the last claim saw it
        self.db_seen_at: float | None = None  # when the database last answered a heartbeat
        self.takeovers = 0  # times this instance took the role
        self.listeners: list[RoleListener] = []
        # How far the singleton work got that may be saved with the lease (the alert engine's).
        self.progress: Callable[[], int] = lambda: 0
        self._store = store
        self._renewed = -float("inf")  # monotonic time of the last renewal that kept the role
        self._check = asyncio.Event()
        self._lost = False
        self._task: asyncio.Task[None] | None = None

    @property
    def role(self) -> InstanceRole:
        return "leader" if self.leads else "standby"

    def row(self, role: InstanceRole | None = None) -> InstanceRow:
        """This instance as its heartbeat writes it."""
        return InstanceRow(
            id=self.id,
            hostname=self.hostname,
            pid=self.pid,
            version=__version__,
            started_at=self.started_at,
            seen_at=time.time(),
            role=role or self.role,
        )

    async def start(self) -> None:
        """Claim the lease once now (the role is known before traffic), then keep it up."""
        await self.step()
        self._task = asyncio.create_task(self._run(), name="codexgate-instance")

    async def stop(self) -> None:
        """Stop; give the lease up (saving the progress) so that another takes it at once."""
        await cancel_and_wait(self._task)
        self._task = None
        was_leading = self.leads
        await self._set(False)
        try:
            if was_leading:
                await self._store.release_lease(self.id, self.progress())
            await self._store.instance_beat(
                self.row("stopped"), forget_after=self.options.forget_after
            )
        except StorageUnavailable as exc:
            log.warning("could not give up the singleton lease: %s", exc)

    def lost(self) -> None:
        """The singleton work found the lease lost (a fenced write refused): stop that work at
        the next beat (now), and claim again."""
        self._lost = True
        self._check.set()

    def recheck(self) -> None:
        """Claim (or learn the loss of) the lease now rather than at the next beat."""
        self._check.set()

    async def instances(self) -> InstancesView:
        """Every instance sharing the database, as their heartbeats say."""
        return await self._store.instances()

    def alive(self, row: InstanceRow, now: float) -> bool:
        """Whether an instance's last heartbeat is recent enough to call it alive."""
        return row.role != "stopped" and now - row.seen_at <= self.options.alive_for

    async def step(self) -> None:
        """One heartbeat: claim or renew the lease, write this instance's row."""
        options = self.options
        started = time.monotonic()
        if self._lost:  # stop the work; a claim that finds the lease still ours starts it again
            self._lost = False
            await self._set(False)
        try:
            lease = await self._store.claim_lease(self.id, options.lease, self.progress())
        except StorageUnavailable as exc:
            # Keep the role only while the lease surely has not expired: by the time another
            # instance can take it, this one has stopped the work.
            keep = self.leads and started - self._renewed < options.lease - 2 * options.beat
            if self.leads and not keep:
                log.warning("giving up the singleton role: cannot renew the lease: %s", exc)
            await self._set(keep)
            return
        self.lease = lease
        leads = lease.holder == self.id
        if leads:
            self._renewed = started
        await self._set(leads)
        try:
            await self._store.instance_beat(self.row(), forget_after=options.forget_after)
        except StorageUnavailable as exc:
            log.debug("heartbeat not written: %s", exc)
            return
        self.db_seen_at = time.time()

    async def _set(self, leads: bool) -> None:
        if leads == self.leads:
            return
        self.leads = leads
        if leads:
            self.takeovers += 1
            log.info("this instance (%s) does the singleton work now", self.id)
        else:
            log.info("this instance (%s) no longer does the singleton work", self.id)
        for listener in tuple(self.listeners):
            try:
                await listener(leads)
            except StorageUnavailable as exc:
                log.warning("singleton work could not %s: %s", "start" if leads else "stop", exc)
                if leads:  # try again at the next beat, with the lease given back meanwhile
                    self.leads = False
                    await self._release_quietly()
                    return
            except Exception:  # a bug in a listener must not stop the heartbeat
                log.exception("a singleton role listener failed")

    async def _release_quietly(self) -> None:
        with contextlib.suppress(StorageUnavailable):  # else it expires by itself
            await self._store.release_lease(self.id, self.progress())

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.options.beat):
                    await self._check.wait()
            except TimeoutError:
                pass
            self._check.clear()
            await self.step()


async def instance_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: this instance's heartbeat and lease; before the work that needs the role
    (alerts, retention), so that it gives the lease up after they stopped."""
    coordinator = Coordinator(app[STORE], app.get(INSTANCE_OPTIONS))
    app[INSTANCE] = coordinator
    await coordinator.start()
    yield
    await coordinator.stop()
