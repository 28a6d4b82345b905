"""Opt-in refresh of idle accounts (--refresh-idle): ask the upstream's usage endpoint for them.

Capture hands this service the credential of every exchange the upstream accepted (a 2xx, or a
WebSocket's 101); it keeps the newest one per account **in memory only**, never in the
database, a log line, healthz, the API or the metrics, and drops it when it expires, when the
upstream refuses it, when its account is deleted, and at shutdown. A task looks at the kept
accounts every few seconds and asks `GET <upstream>/backend-api/wham/usage` (what the Codex CLI's
`/status` asks) for those whose newest data is older than the interval; the answer goes through
the parser and the recorder like a relayed `wham/usage` answer. The rules are in core/refresh.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from aiohttp import ClientError, ClientSession, ClientTimeout, hdrs, web
from yarl import URL

from codexgate import __version__
from codexgate.capture.bodies import decode_body, parse_usage_body
from codexgate.capture.headers import token_expiry
from codexgate.core.models import Identity, Snapshot
from codexgate.core.refresh import (
    MANUAL_MIN_GAP_SECONDS,
    RefreshStatus,
    StopReason,
    jitter_factor,
    next_refresh_at,
    retry_delay,
    stop_reason,
    usable,
    verdict,
)
from codexgate.core.rows import AccountRow
from codexgate.keys import CONFIG, RECORDER, REFRESH, REFRESH_OPTIONS, STORE, UPSTREAM_SESSION
from codexgate.services.recorder import Recorder
from codexgate.services.tasks import cancel_and_wait
from codexgate.storage.interface import Storage, StorageUnavailable

log = logging.getLogger(__name__)

USAGE_PATH: Final = "/backend-api/wham/usage"
ACCOUNT_ID_HEADER: Final = "ChatGPT-Account-Id"
USER_AGENT: Final = f"codexgate/{__version__} (idle refresh)"
# A usage answer bigger than this is not one (the same bound as a relayed body).
MAX_ANSWER: Final = 1 << 20

Result = Literal["ok", "stopped", "failed", "no_token"]


@dataclass(frozen=True, slots=True)
class RefreshOptions:
    """The service's tunables; the defaults are for production, tests make them small."""

    interval: float | None = None  # seconds; None takes --refresh-after
    tick: float = 30.0  # seconds between looks at the kept accounts
    max_concurrent: int = 4  # refreshes in flight at once, over every account
    timeout: float = 30.0  # seconds one refresh may take in all
    manual_min_gap: float = (
        MANUAL_MIN_GAP_SECONDS  # "Refresh now" of one account at most this often
    )
    grace: float = 120.0  # a token whose account never appears in the store is dropped after this
    max_tracked: int = 4096  # accounts whose token may be kept at once
    clock: Callable[[], float] = time.time
    draw: Callable[[], float] = random.random  # uniform in [0, 1): the jitter

    def __post_init__(self) -> None:
        if (
            (self.interval is not None and not self.interval > 0)
            or not self.tick > 0
            or self.max_concurrent < 1
            or not self.timeout > 0
            or self.manual_min_gap < 0
            or self.grace < 0
            or self.max_tracked < 1
        ):
            raise ValueError(f"invalid refresh options: {self!r}")


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """Counters shown on healthz (never a token)."""

    interval_seconds: float
    tracked: int  # accounts whose token is kept now
    in_flight: int
    ok: int  # refreshes answered with usage, since start
    failed: int  # refreshes that got no usable answer (server error, timeout, unreadable body)
    stopped: int  # accounts whose refreshing stopped on the upstream's refusal


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What one refresh came to, and the upstream's status when it answered."""

    result: Result
    upstream_status: int | None = None


class NoToken(Exception):
    """No unexpired access token of the account is at hand."""


class TooSoon(Exception):
    """The account was refreshed by hand less than the minimum gap ago."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(slots=True)
class _Held:
    """One account's newest accepted credential, as the client sent it."""

    authorization: str = field(repr=False)
    account_id_header: str | None
    identity: Identity
    tracked_since: float
    _expires_at: float | None = None
    _parsed: bool = False

    def expires_at(self) -> float | None:
        """The token's `exp` claim, read once; None for an opaque token or one without it."""
        if not self._parsed:
            scheme, _, token = self.authorization.strip().partition(" ")
            self._expires_at = token_expiry(token.strip()) if scheme.lower() == "bearer" else None
            self._parsed = True
        return self._expires_at


@dataclass(slots=True)
class _Account:
    """What the service knows of one account's refreshing."""

    factor: float
    account_id: int | None = None
    newest_data_at: float | None = None  # as of the last look
    last_attempt_at: float | None = None
    last_ok_at: float | None = None
    last_manual_at: float | None = None
    failures: int = 0
    retry_at: float | None = None
    stopped: StopReason | None = None


class IdleRefresh:
    """Keeps accepted tokens in memory and refreshes the usage of accounts that went idle."""

    def __init__(
        self,
        store: Storage,
        session: ClientSession,
        recorder: Recorder,
        upstream: URL,
        *,
        interval: float,
        options: RefreshOptions | None = None,
    ) -> None:
        self.options = options or RefreshOptions()
        self.interval = self.options.interval or interval
        self._store = store
        self._session = session
        self._recorder = recorder
        self._url = URL(f"{upstream}{USAGE_PATH}", encoded=True)
        self._clock = self.options.clock
        self._held: dict[str, _Held] = {}  # by account_key
        self._accounts: dict[str, _Account] = {}  # by account_key
        self._running: dict[str, asyncio.Task[RefreshOutcome]] = {}
        self._slots = asyncio.Semaphore(self.options.max_concurrent)
        self._task: asyncio.Task[None] | None = None
        self._ok = 0
        self._failed = 0

    # -- capture's hooks: on the proxy's path, O(1), never raise, never await ------------------

    def offer(self, identity: Identity, authorization: str, account_id_header: str | None) -> None:
        """Keep the credential of an exchange the upstream accepted, if it is a new one."""
        key = identity.account_key
        held = self._held.get(key)
        if held is not None and held.identity.token_fingerprint == identity.token_fingerprint:
            return
        if held is None and len(self._held) >= self.options.max_tracked:
            return
        self._held[key] = _Held(authorization, account_id_header, identity, self._clock())
        state = self._accounts.get(key)
        if state is not None and state.stopped is not None:
            # A new token is a new chance: the stop was about the old one.
            state.stopped = None
            state.failures = 0
            state.retry_at = None

    def refused(self, identity: Identity) -> None:
        """Forget a kept token that the upstream has just refused in traffic."""
        held = self._held.get(identity.account_key)
        if held is not None and held.identity.token_fingerprint == identity.token_fingerprint:
            del self._held[identity.account_key]

    # -- what the API and healthz read --------------------------------------------------------

    def status(self, account: AccountRow, newest_data_at: float | None) -> RefreshStatus:
        """The account's refresh state as the API shows it."""
        key = account.account_key
        now = self._clock()
        state = self._accounts.get(key)
        if state is not None:
            state.account_id = account.id
        held = self._held.get(key)
        available = held is not None and usable(held.expires_at(), now)
        last_at = state.last_ok_at if state is not None else None
        if state is not None and state.stopped is not None:
            return RefreshStatus(True, available, "stopped", state.stopped, last_at, None)
        if held is None or not available:
            return RefreshStatus(True, False, "idle", None, last_at, None)
        due = self._due_at(key, held, newest_data_at)
        if due is None:
            return RefreshStatus(True, True, "idle", None, last_at, None)
        return RefreshStatus(True, True, "scheduled", None, last_at, max(due, now))

    def stats(self) -> RefreshStats:
        """A consistent view of the counters."""
        return RefreshStats(
            interval_seconds=self.interval,
            tracked=len(self._held),
            in_flight=len(self._running),
            ok=self._ok,
            failed=self._failed,
            stopped=sum(1 for state in self._accounts.values() if state.stopped is not None),
        )

    def forget(self, account_id: int) -> None:
        """Drop what is kept of a deleted account, its token first."""
        for key, state in list(self._accounts.items()):
            if state.account_id == account_id:
                self._held.pop(key, None)
                del self._accounts[key]

    # -- refreshing ----------------------------------------------------------------------------

    async def refresh_now(self, account: AccountRow) -> RefreshOutcome:
        """Refresh one account at once ("Refresh now"); NoToken or TooSoon when it cannot."""
        key = account.account_key
        now = self._clock()
        held = self._held.get(key)
        if held is None or not usable(held.expires_at(), now):
            raise NoToken
        state = self._state(key)
        state.account_id = account.id
        if state.last_manual_at is not None:
            wait = state.last_manual_at + self.options.manual_min_gap - now
            if wait > 0:
                raise TooSoon(wait)
        state.last_manual_at = now
        task = self._running.get(key) or self._start(key)
        # A client that hangs up does not cancel the refresh: the service owns it.
        return await asyncio.shield(task)

    async def run_once(self) -> None:
        """One look at the kept accounts: drop what is no longer usable, start what is due."""
        now = self._clock()
        for key, held in list(self._held.items()):
            if not usable(held.expires_at(), now):
                del self._held[key]  # expired, or opaque (its expiry is unknown): never used
        if not self._held:
            return
        accounts = await self._resolve(now)
        newest: dict[int, float] = {}
        for row in await self._store.latest_usage_of(list(accounts.values())):
            usage = row.usage
            newest[usage.account_id] = max(newest.get(usage.account_id, 0.0), usage.confirmed_at)
        for key, account_id in accounts.items():
            kept = self._held.get(key)  # a deletion while the store was read drops it
            if kept is None:
                continue
            state = self._state(key)
            state.newest_data_at = newest.get(account_id)
            if state.stopped is not None or key in self._running:
                continue
            due = self._due_at(key, kept, state.newest_data_at)
            if due is not None and due <= now:
                self._start(key)

    async def _resolve(self, now: float) -> dict[str, int]:
        """The account id of each kept token's account; drop the tokens of deleted accounts.

        Accounts already known are checked by id; the store's whole list is read only while a
        token's account is new to the service.
        """
        known = {key: s.account_id for key, s in self._accounts.items() if key in self._held}
        found = {
            account.account_key: account.id
            for account in await self._store.accounts_of(
                [i for i in known.values() if i is not None]
            )
        }
        if any(key not in found for key in self._held):
            found = {account.account_key: account.id for account in await self._store.accounts()}
        resolved: dict[str, int] = {}
        for key, held in list(self._held.items()):
            state = self._state(key)
            account_id = found.get(key)
            if account_id is None:
                # Deleted, or not written yet (its first batch is on its way): wait a little.
                if state.account_id is not None or now - held.tracked_since > self.options.grace:
                    self._held.pop(key, None)
                    self._accounts.pop(key, None)
                continue
            state.account_id = account_id
            resolved[key] = account_id
        return resolved

    def start(self) -> None:
        """Start the task that looks at the kept accounts every tick."""
        self._task = asyncio.create_task(self._run(), name="codexgate-refresh")

    async def stop(self) -> None:
        """Cancel the task and every refresh in flight, then forget every token."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        running = list(self._running.values())
        for refresh in running:
            refresh.cancel()
        for refresh in running:
            try:
                await refresh
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self._running.clear()
        self._held.clear()
        self._accounts.clear()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick)
            try:
                await self.run_once()
            except StorageUnavailable as exc:
                log.warning("idle refresh: could not read the accounts, trying again: %s", exc)
            except Exception:  # a bug here must cost this look, not the task
                log.exception("unexpected error in the idle refresh")

    def _state(self, key: str) -> _Account:
        state = self._accounts.get(key)
        if state is None:
            state = _Account(factor=jitter_factor(self.options.draw()))
            self._accounts[key] = state
        return state

    def _due_at(self, key: str, held: _Held, newest_data_at: float | None) -> float | None:
        state = self._state(key)
        return next_refresh_at(
            newest_data_at=newest_data_at,
            tracked_since=held.tracked_since,
            last_attempt_at=state.last_attempt_at,
            interval=self.interval,
            factor=state.factor,
            retry_at=state.retry_at,
            expires_at=held.expires_at(),
        )

    def _start(self, key: str) -> asyncio.Task[RefreshOutcome]:
        task = asyncio.create_task(self._refresh(key), name="codexgate-refresh-account")
        self._running[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: str, task: asyncio.Task[RefreshOutcome]) -> None:
        if self._running.get(key) is task:
            del self._running[key]

    async def _refresh(self, key: str) -> RefreshOutcome:
        async with self._slots:
            held = self._held.get(key)
            if held is None or not usable(held.expires_at(), self._clock()):
                return RefreshOutcome("no_token")
            state = self._state(key)
            state.last_attempt_at = self._clock()
            state.factor = jitter_factor(self.options.draw())
            try:
                status, body = await self._ask(held)
            except (ClientError, TimeoutError) as exc:
                self._retry(state, f"no answer ({exc.__class__.__name__})")
                return RefreshOutcome("failed")
            return self._answered(key, held, state, status, body)

    async def _ask(self, held: _Held) -> tuple[int, bytes | None]:
        """GET the usage endpoint as the Codex CLI does; the status and the decoded body."""
        headers: dict[str, str] = {
            hdrs.AUTHORIZATION: held.authorization,
            hdrs.ACCEPT: "application/json",
            hdrs.USER_AGENT: USER_AGENT,
        }
        if held.account_id_header:
            headers[ACCOUNT_ID_HEADER] = held.account_id_header
        async with self._session.get(
            self._url,
            headers=headers,
            allow_redirects=False,
            timeout=ClientTimeout(total=self.options.timeout),
        ) as response:
            if response.status != 200:
                return response.status, None
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > MAX_ANSWER:
                    return response.status, None
                chunks.append(chunk)
            encoding = response.headers.get(hdrs.CONTENT_ENCODING)
            return response.status, decode_body(b"".join(chunks), encoding, MAX_ANSWER)

    def _answered(
        self, key: str, held: _Held, state: _Account, status: int, body: bytes | None
    ) -> RefreshOutcome:
        match verdict(status):
            case "ok":
                now = time.time()
                report = parse_usage_body(body, now) if body is not None else None
                if report is None:
                    self._retry(state, f"an answer that is not a usage report ({status})")
                    return RefreshOutcome("failed", status)
                self._recorder.offer(
                    Snapshot(
                        identity=held.identity,
                        captured_at=now,
                        source="usage_body",
                        report=report,
                        http_status=status,
                    )
                )
                self._ok += 1
                state.last_ok_at = self._clock()
                state.failures = 0
                state.retry_at = None
                state.stopped = None
                log.debug("idle refresh: account %s refreshed", state.account_id)
                return RefreshOutcome("ok", status)
            case "stop":
                reason = stop_reason(status)
                state.stopped = reason
                if reason in ("unauthorized", "forbidden") and self._held.get(key) is held:
                    del self._held[key]  # the upstream refused it: of no more use
                self._failed += 1
                log.warning(
                    "idle refresh stopped for account %s: the upstream answered %d (%s)",
                    state.account_id,
                    status,
                    reason,
                )
                return RefreshOutcome("stopped", status)
            case _:
                self._retry(state, f"the upstream answered {status}")
                return RefreshOutcome("failed", status)

    def _retry(self, state: _Account, why: str) -> None:
        self._failed += 1
        state.failures += 1
        delay = retry_delay(state.failures, self.interval)
        state.retry_at = self._clock() + delay
        log.info(
            "idle refresh of account %s failed (%s); next try in %.0f s",
            state.account_id,
            why,
            delay,
        )


async def refresh_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the idle refresh when --refresh-idle is on (after the recorder it feeds)."""
    config = app[CONFIG]
    if not config.refresh_idle:
        yield
        return
    if not config.capture:
        log.warning("--refresh-idle is on but --capture is off: no token is seen, none refreshed")
        yield
        return
    refresh = IdleRefresh(
        app[STORE],
        app[UPSTREAM_SESSION],
        app[RECORDER],
        config.upstream,
        interval=config.refresh_after * 60.0,
        options=app.get(REFRESH_OPTIONS),
    )
    app[REFRESH] = refresh
    refresh.start()
    try:
        yield
    finally:
        await refresh.stop()
