"""Alert delivery to webhooks (plain JSON, Slack, Discord), with retries, off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import aiohttp
import orjson
from yarl import URL

from codexgate import __version__
from codexgate.config import mask_url
from codexgate.core.text import iso, percent

log = logging.getLogger(__name__)

AlertKind = Literal["threshold", "limit_hit", "limit_reset", "forecast", "stale", "test"]
WebhookFormat = Literal["json", "slack", "discord"]

_TITLES: Final[dict[str, str]] = {
    "threshold": "Usage threshold crossed",
    "limit_hit": "Rate limit reached",
    "limit_reset": "Rate limit reset",
    "forecast": "Window forecast to run out",
    "stale": "Usage data is stale",
    "test": "Test alert",
}
_DISCORD_COLORS: Final[dict[str, int]] = {
    "threshold": 0xF5A623,
    "limit_hit": 0xE5484D,
    "limit_reset": 0x30A46C,
    "forecast": 0xF76B15,
    "stale": 0x8B8D98,
    "test": 0x3E63DD,
}
# Documented limits: Discord content 2000, embed title 256, description 4096, field value 1024,
# 6000 characters per embed in all; Slack section and context texts 3000.
_DISCORD_CONTENT: Final = 2000
_DISCORD_FIELD: Final = 1024
_SLACK_TEXT: Final = 3000
_NAME: Final = 200  # an account name longer than this says nothing more in a notification
_DROP_WARNING_INTERVAL: Final = 60.0
_HEADERS: Final = {"Content-Type": "application/json", "User-Agent": f"codexgate/{__version__}"}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as the rules raise it and the webhooks receive it."""

    kind: AlertKind
    at: float  # unix seconds when it fired
    account_id: int | None  # None for a test alert
    account: str | None  # display name or email (never a token)
    limit_id: str | None  # "codex", ...
    window: str | None  # "5h", "7d", "monthly", ...
    used_percent: float | None
    threshold: float | None  # the crossed threshold, for kind "threshold"
    resets_at: int | None
    exhausts_at: float | None  # for kind "forecast"
    message: str  # one English sentence
    id: int | None = None  # the stored alert's id, when stored


@dataclass(frozen=True, slots=True)
class Webhook:
    """One destination; its URL is a secret (never logged or shown whole: use `redact_url`)."""

    url: str = field(repr=False)
    format: WebhookFormat = "json"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class NotifierStats:
    """Delivery counters for healthz; each counts deliveries of one alert to one webhook."""

    queued: int  # waiting or in progress now
    sent: int
    failed: int
    dropped: int  # a full queue, a stop with deliveries pending
    retries: int
    last_error: str | None  # "https://hooks.slack.com/…: 500 Internal Server Error"
    last_error_at: float | None
    last_sent_at: float | None


def redact_url(url: str) -> str:
    """The URL's scheme, host and explicit port, `https://hooks.slack.com/…`: no secret parts."""
    try:
        parsed = URL(url)
    except ValueError:
        return "…"
    return mask_url(parsed) if parsed.absolute and parsed.scheme else "…"


def new_session() -> aiohttp.ClientSession:
    """The session a Notifier should use (call it inside the running loop)."""
    # No cookie jar: a webhook's cookies must not reach another. trust_env: alerts leave for the
    # internet (Slack, Discord), where a host often has to go through HTTP(S)_PROXY; at a few
    # requests per alert its per-request lookup costs nothing (the proxy avoids it for speed).
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=True,
        connector=aiohttp.TCPConnector(limit=20, ttl_dns_cache=300),
    )


def webhook_body(alert: Alert, format: str) -> dict[str, Any]:
    """The JSON body that `format` ("json", "slack" or "discord") expects for `alert`."""
    if format == "json":
        return _json_body(alert)
    if format == "slack":
        return _slack_body(alert)
    if format == "discord":
        return _discord_body(alert)
    raise ValueError(f"unknown webhook format {format!r}")


def _json_body(alert: Alert) -> dict[str, Any]:
    fields = asdict(alert)
    fields["at_iso"] = iso(alert.at)
    fields["resets_at_iso"] = iso(alert.resets_at)
    fields["exhausts_at_iso"] = iso(alert.exhausts_at)
    return {"type": "codexgate.alert", "alert": fields}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _window(alert: Alert) -> str | None:
    if alert.window is None:
        return None
    return alert.window if alert.limit_id is None else f"{alert.window} ({alert.limit_id})"


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions (<!channel> would ping everyone).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_time(at: float) -> str:
    """A Slack date token: the reader's own time zone, with an ISO fallback."""
    return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{iso(at)}>"


def _slack_body(alert: Alert) -> dict[str, Any]:
    message = _clip(_slack_escape(alert.message), _SLACK_TEXT - 100)  # room for the title line
    details: list[str] = []
    if alert.account is not None:
        details.append(f"*Account:* {_slack_escape(_clip(alert.account, _NAME))}")
    window = _window(alert)
    if window is not None:
        details.append(f"*Window:* {_slack_escape(_clip(window, _NAME))}")
    if alert.used_percent is not None:
        details.append(f"*Used:* {percent(alert.used_percent)}")
    if alert.threshold is not None:
        details.append(f"*Threshold:* {percent(alert.threshold)}")
    if alert.resets_at is not None and iso(alert.resets_at) is not None:
        details.append(f"*Resets:* {_slack_time(alert.resets_at)}")
    if alert.exhausts_at is not None and iso(alert.exhausts_at) is not None:
        details.append(f"*Runs out:* {_slack_time(alert.exhausts_at)}")
    details.append("codexgate" if alert.id is None else f"codexgate alert #{alert.id}")
    return {
        "text": message,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{_TITLES[alert.kind]}*\n{message}"},
            },
            # A context block holds at most 10 elements: one line, fields apart.
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _clip("  ·  ".join(details), _SLACK_TEXT)}],
            },
        ],
    }


def _discord_escape(text: str) -> str:
    # Markdown in an account name must show as typed (pings are off: allowed_mentions).
    for char in "\\*_~`|<>#[]":
        text = text.replace(char, "\\" + char)
    return text


def _discord_time(at: float) -> str:
    """A Discord timestamp: the reader's own time zone, and how far away it is."""
    return f"<t:{int(at)}:f> (<t:{int(at)}:R>)"


def _discord_body(alert: Alert) -> dict[str, Any]:
    fields: list[dict[str, Any]] = []

    def add(name: str, value: str) -> None:
        fields.append({"name": name, "value": _clip(value, _DISCORD_FIELD), "inline": True})

    if alert.account is not None:
        add("Account", _discord_escape(_clip(alert.account, _NAME)))
    window = _window(alert)
    if window is not None:
        add("Window", _discord_escape(_clip(window, _NAME)))
    if alert.used_percent is not None:
        add("Used", percent(alert.used_percent))
    if alert.threshold is not None:
        add("Threshold", percent(alert.threshold))
    if alert.resets_at is not None and iso(alert.resets_at) is not None:
        add("Resets", _discord_time(alert.resets_at))
    if alert.exhausts_at is not None and iso(alert.exhausts_at) is not None:
        add("Runs out", _discord_time(alert.exhausts_at))
    embed: dict[str, Any] = {
        "title": _TITLES[alert.kind],
        # Under the content's 2000 so that the embed stays inside its 6000 in all.
        "description": _clip(_discord_escape(alert.message), _DISCORD_CONTENT),
        "color": _DISCORD_COLORS[alert.kind],
        "fields": fields,
        "footer": {"text": "codexgate" if alert.id is None else f"codexgate alert #{alert.id}"},
    }
    at = iso(alert.at)
    if at is not None:
        embed["timestamp"] = at
    return {
        "content": _clip(_discord_escape(alert.message), _DISCORD_CONTENT),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},  # an "@everyone" in an account name pings nobody
    }


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One attempt's result: an error (None when delivered), and whether to try again."""

    error: str | None
    retry: bool = False
    retry_after: float | None = None


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _describe(exc: aiohttp.ClientError) -> str:
    """An error without the URL: aiohttp's own messages may quote it whole."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error.__class__.__name__})"
    return exc.__class__.__name__


@dataclass(slots=True)
class _Lane:
    """One webhook's deliveries, in order, run by one task."""

    webhook: Webhook
    pending: deque[Alert] = field(default_factory=deque)
    in_flight: int = 0
    task: asyncio.Task[None] | None = None


class Notifier:
    """Delivers alerts on its own tasks, one lane per webhook; submitting never waits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        webhooks: Callable[[], Sequence[Webhook]],
        *,
        attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 10.0,
        queue_size: int = 1000,
        grace: float = 2.0,
    ) -> None:
        self._session = session
        self._webhooks = webhooks
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._queue_size = queue_size
        self._grace = grace
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=queue_size)
        # Deliveries run per webhook, so that a slow or dead one delays only its own alerts;
        # the lanes are as many as the configured webhooks, which bounds concurrency.
        self._lanes: dict[Webhook, _Lane] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()
        self._settled.set()
        self._stopping = False
        self._last_drop_warning = -math.inf
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._retries = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._last_sent_at: float | None = None

    def submit(self, alert: Alert) -> None:
        """Queue an alert for every webhook; when the queue is full (or stopped), count a drop."""
        if self._stopping:
            self._drop(1, "the notifier has stopped")
            return
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._drop(1, "the alert queue is full")
            return
        self._settled.clear()

    async def send_now(self, alert: Alert) -> list[tuple[Webhook, str | None]]:
        """Send `alert` once to every webhook now; each webhook's error, or None when delivered."""
        hooks = tuple(self._webhooks())
        outcomes = await asyncio.gather(*(self._attempt(hook, alert) for hook in hooks))
        results: list[tuple[Webhook, str | None]] = []
        for hook, outcome in zip(hooks, outcomes, strict=True):
            if outcome.error is None:
                self._delivered()
            else:
                self._failed += 1
                self._note_error(hook, outcome.error)
                log.warning("webhook %s: test alert failed: %s", _label(hook), outcome.error)
            results.append((hook, outcome.error))
        return results

    def start(self) -> None:
        """Start the task that hands queued alerts to the webhooks."""
        self._dispatcher = asyncio.create_task(self._dispatch(), name="codexgate-notify")

    async def stop(self) -> None:
        """Give pending deliveries a short grace, then drop (and count) the rest and stop."""
        self._stopping = True
        if self._dispatcher is not None and not self._settled.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._grace):
                    await self._settled.wait()
        pending = self._pending()
        if pending:
            self._dropped += pending
            log.warning("stopping: dropped %d undelivered alert delivery(ies)", pending)
        while not self._queue.empty():
            self._queue.get_nowait()
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("a notifier task had failed", exc_info=result)
        self._lanes.clear()
        self._dispatcher = None
        self._settled.set()

    def stats(self) -> NotifierStats:
        """A consistent view of the counters."""
        return NotifierStats(
            queued=self._pending(),
            sent=self._sent,
            failed=self._failed,
            dropped=self._dropped,
            retries=self._retries,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            last_sent_at=self._last_sent_at,
        )

    def _pending(self) -> int:
        lanes = sum(len(lane.pending) + lane.in_flight for lane in self._lanes.values())
        return self._queue.qsize() + lanes

    async def _dispatch(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                hooks = tuple(self._webhooks())
            except Exception:  # a bug in the caller's list must cost this alert, not the task
                log.exception("could not read the webhooks; alert dropped")
                self._dropped += 1
                hooks = ()
            for hook in hooks:
                self._enqueue(hook, alert)
            self._settle()

    def _enqueue(self, hook: Webhook, alert: Alert) -> None:
        lane = self._lanes.get(hook)
        if lane is None:
            lane = self._lanes[hook] = _Lane(hook)
            lane.task = asyncio.create_task(self._run_lane(lane), name="codexgate-notify-lane")
        if len(lane.pending) >= self._queue_size:
            self._drop(1, f"the queue of {_label(hook)} is full")
            return
        lane.pending.append(alert)

    async def _run_lane(self, lane: _Lane) -> None:
        try:
            while lane.pending:
                alert = lane.pending.popleft()
                lane.in_flight = 1
                try:
                    await self._deliver(lane.webhook, alert)
                except Exception:  # a bug must cost this delivery, not the webhook's lane
                    log.exception("webhook %s: delivery failed", _label(lane.webhook))
                    self._failed += 1
                finally:
                    lane.in_flight = 0
        finally:
            # An idle lane ends; the next alert for its webhook starts a new one.
            if self._lanes.get(lane.webhook) is lane:
                del self._lanes[lane.webhook]
            self._settle()

    async def _deliver(self, hook: Webhook, alert: Alert) -> None:
        for attempt in range(1, self._attempts + 1):
            outcome = await self._attempt(hook, alert)
            if outcome.error is None:
                self._delivered()
                return
            self._note_error(hook, outcome.error)
            if not outcome.retry or attempt == self._attempts:
                self._failed += 1
                log.warning(
                    "webhook %s: %s alert not delivered after %d attempt(s): %s",
                    _label(hook),
                    alert.kind,
                    attempt,
                    outcome.error,
                )
                return
            delay = self._delay(attempt, outcome.retry_after)
            self._retries += 1
            log.warning(
                "webhook %s: attempt %d of %d failed: %s; retrying in %.1fs",
                _label(hook),
                attempt,
                self._attempts,
                outcome.error,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(self, hook: Webhook, alert: Alert) -> _Outcome:
        """POST the alert once; errors become an outcome, never an exception."""
        try:
            body = orjson.dumps(webhook_body(alert, hook.format))
            async with self._session.post(
                hook.url,
                data=body,
                headers=_HEADERS,
                timeout=self._timeout,
                allow_redirects=False,  # a redirect would resend the alert somewhere unchecked
            ) as response:
                if 200 <= response.status < 300:
                    return _Outcome(None)
                error = f"{response.status} {response.reason or ''}".rstrip()
                if response.status == 429 or response.status >= 500:
                    wait = _retry_after(response.headers.get("Retry-After"), time.time())
                    return _Outcome(error, retry=True, retry_after=wait)
                return _Outcome(error)
        except TimeoutError:
            return _Outcome(f"no answer within {self._timeout.total:g}s", retry=True)
        except aiohttp.InvalidURL:
            return _Outcome("invalid URL")
        except aiohttp.ClientError as exc:
            return _Outcome(_describe(exc), retry=True)
        except ValueError as exc:  # an unknown format, or a URL yarl cannot parse
            return _Outcome(f"cannot send ({exc.__class__.__name__})")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_backoff)
        delay = min(self._max_backoff, self._backoff * 2.0 ** (attempt - 1))
        # Jitter, so that webhooks failing together do not retry together; not a secret.
        return delay * random.uniform(0.5, 1.0)  # noqa: S311

    def _delivered(self) -> None:
        self._sent += 1
        self._last_sent_at = time.time()

    def _note_error(self, hook: Webhook, error: str) -> None:
        self._last_error = f"{_label(hook)}: {error}"
        self._last_error_at = time.time()

    def _drop(self, count: int, reason: str) -> None:
        self._dropped += count
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL:
            self._last_drop_warning = now
            log.warning(
                "dropped %d alert delivery(ies): %s; since start: %d", count, reason, self._dropped
            )

    def _settle(self) -> None:
        if self._pending() == 0:
            self._settled.set()


def _label(hook: Webhook) -> str:
    """How logs and stats name a webhook: its name and redacted URL, never the URL whole."""
    redacted = redact_url(hook.url)
    return redacted if hook.name is None else f"{hook.name} ({redacted})"
