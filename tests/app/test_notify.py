"""Webhook delivery (bodies, retries, isolation, limits, shutdown) against a real receiver."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from aiohttp import ClientSession, web
from pytest_aiohttp import AiohttpServer
from yarl import URL

from codexgate.config import AlertConfig, WebhookConfig
from codexgate.keys import NOTIFIER
from codexgate.services import notify
from codexgate.services.notify import (
    Alert,
    Notifier,
    Webhook,
    new_session,
    redact_url,
    webhook_body,
)
from tests.helpers.builders import make_alert
from tests.helpers.gateway import StartGateway, app_of
from tests.helpers.waiting import eventually

SECRET = "T0000/B0000/XsecretXpathX"
QUERY_SECRET = "XsecretXqueryX"

Reply = tuple[int, dict[str, str]]


@dataclass
class Hit:
    """One request the receiver got."""

    name: str
    at: float
    body: Any
    content_type: str


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records bodies and answers scripted statuses."""

    hits: list[Hit] = field(default_factory=list)
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)  # these answer only once `release` is set
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook/{name}/{secret:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits.append(Hit(name, time.monotonic(), await request.json(), request.content_type))
        if name in self.held:
            await self.release.wait()
        script = self.scripts.get(name)
        status, headers = script.pop(0) if script else (200, {})
        return web.Response(status=status, headers=headers, text="ok")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}/{SECRET}?key={QUERY_SECRET}"

    def hook(self, name: str, format: notify.WebhookFormat = "json") -> Webhook:
        return Webhook(self.url(name), format, name)

    def of(self, name: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.name == name]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The notifier's session trusts the environment: loopback must not go through a proxy."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> AsyncIterator[Receiver]:
    """The receiver, listening; held requests are let go before the server stops."""
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    assert server.port is not None
    receiver.port = server.port
    yield receiver
    receiver.release.set()


MakeNotifier = Callable[..., Notifier]


@pytest.fixture
async def notifiers() -> AsyncIterator[MakeNotifier]:
    """Build started notifiers with small backoffs; each is stopped and its session closed."""
    made: list[tuple[Notifier, Any]] = []

    def make(hooks: list[Webhook], *, start: bool = True, **options: Any) -> Notifier:
        settings: dict[str, Any] = {
            "attempts": 3,
            "backoff": 0.01,
            "max_backoff": 0.05,
            "timeout": 5.0,
            "grace": 0.1,
        }
        settings.update(options)
        session = new_session()
        notifier = Notifier(session, lambda: hooks, **settings)
        made.append((notifier, session))
        if start:
            notifier.start()
        return notifier

    yield make
    for notifier, session in made:
        await notifier.stop()
        await session.close()


# -- bodies ------------------------------------------------------------------------------------


def assert_slack_payload(body: dict[str, Any]) -> None:
    """Slack's incoming-webhook rules: text, and blocks (section/context) within their limits."""
    assert set(body) <= {"text", "blocks"}
    assert isinstance(body["text"], str)
    assert 0 < len(body["text"]) <= 3000
    blocks = body["blocks"]
    assert 0 < len(blocks) <= 50
    assert [block["type"] for block in blocks] == ["section", "context"]
    section = blocks[0]["text"]
    assert section["type"] == "mrkdwn"
    assert 0 < len(section["text"]) <= 3000
    elements = blocks[1]["elements"]
    assert 0 < len(elements) <= 10
    for element in elements:
        assert element["type"] in {"mrkdwn", "plain_text"}
        assert 0 < len(element["text"]) <= 3000


def assert_discord_payload(body: dict[str, Any]) -> None:
    """Discord's execute-webhook rules: content and embed fields within their documented limits."""
    assert set(body) <= {"content", "embeds", "allowed_mentions", "username", "avatar_url"}
    assert 0 < len(body["content"]) <= 2000
    assert body["allowed_mentions"] == {"parse": []}
    embeds = body["embeds"]
    assert 0 < len(embeds) <= 10
    for embed in embeds:
        assert 0 < len(embed["title"]) <= 256
        assert len(embed["description"]) <= 4096
        assert isinstance(embed["color"], int)
        assert 0 <= embed["color"] <= 0xFFFFFF
        datetime.fromisoformat(embed["timestamp"])
        fields = embed["fields"]
        assert len(fields) <= 25
        for item in fields:
            assert 0 < len(item["name"]) <= 256
            assert 0 < len(item["value"]) <= 1024
            assert isinstance(item["inline"], bool)
        assert len(embed["footer"]["text"]) <= 2048
        total = len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"])
        total += sum(len(item["name"]) + len(item["value"]) for item in fields)
        assert total <= 6000


def test_json_body_has_every_field_and_iso_times() -> None:
    body = webhook_body(make_alert(exhausts_at=1_772_370_000.5), "json")
    assert body == {
        "type": "codexgate.alert",
        "alert": {
            "kind": "threshold",
            "at": 1_772_366_400.0,
            "account_id": 3,
            "account": "alice@example.com",
            "limit_id": "codex",
            "window": "5h",
            "used_percent": 91.0,
            "threshold": 90.0,
            "resets_at": 1_772_374_200,
            "exhausts_at": 1_772_370_000.5,
            "message": "alice@example.com: 5h window at 91% (crossed 90%), resets in 2h 10m",
            "id": 17,
            "severity": "warning",  # the alert carries none: its kind's
            "at_iso": "2026-03-01T12:00:00Z",
            "resets_at_iso": "2026-03-01T14:10:00Z",
            "exhausts_at_iso": "2026-03-01T13:00:00.500Z",
        },
    }


@pytest.mark.parametrize(
    "kind", ["threshold", "limit_hit", "limit_reset", "forecast", "stale", "test"]
)
def test_slack_and_discord_bodies_are_valid_for_every_kind(kind: notify.AlertKind) -> None:
    alert = make_alert(kind=kind, exhausts_at=1_772_370_000.0 if kind == "forecast" else None)
    slack = webhook_body(alert, "slack")
    assert_slack_payload(slack)
    assert slack["text"] == alert.message
    assert "91%" in slack["blocks"][1]["elements"][0]["text"]
    assert "<!date^1772374200^" in slack["blocks"][1]["elements"][0]["text"]
    discord = webhook_body(alert, "discord")
    assert_discord_payload(discord)
    assert discord["embeds"][0]["timestamp"] == "2026-03-01T12:00:00Z"
    names = [item["name"] for item in discord["embeds"][0]["fields"]]
    assert names[:5] == ["Account", "Window", "Used", "Threshold", "Resets"]


def test_a_test_alert_without_account_is_valid() -> None:
    alert = Alert("test", 1_772_366_400.0, None, None, None, None, None, None, None, None, "Hi.")
    assert_slack_payload(webhook_body(alert, "slack"))
    discord = webhook_body(alert, "discord")
    assert_discord_payload(discord)
    assert discord["embeds"][0]["fields"] == []
    assert webhook_body(alert, "json")["alert"]["resets_at_iso"] is None


def test_bodies_stay_within_limits_and_escape_mentions() -> None:
    account = "<!channel> @everyone " + "a_b*" * 2000
    alert = make_alert(account=account, window="5h" * 600, message=f"{account}: " + "x" * 9000)
    slack = webhook_body(alert, "slack")
    assert_slack_payload(slack)
    texts = [slack["text"], slack["blocks"][0]["text"]["text"]]
    texts.append(slack["blocks"][1]["elements"][0]["text"])
    assert all("<!channel>" not in text and "&lt;!channel&gt;" in text for text in texts)
    discord = webhook_body(alert, "discord")
    assert_discord_payload(discord)
    assert discord["content"].startswith(r"\<!channel\> @everyone a\_b\*")
    assert discord["content"].endswith("…")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="teams"):
        webhook_body(make_alert(), "teams")


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com/…"),
        ("https://user:pw@discord.com/api/webhooks/1/tok?wait=true", "https://discord.com/…"),
        ("http://127.0.0.1:8123/hook?token=x", "http://127.0.0.1:8123/…"),
        ("http://[::1]:80/x", "http://[::1]/…"),
        ("not a url/secret", "…"),
        ("https://hooks.slack.com", "https://hooks.slack.com/…"),
        ("/relative/secret", "…"),
    ],
)
def test_redact_url_keeps_scheme_and_host_only(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("7", 7.0),
        ("-3", 0.0),
        ("soon", None),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),
    ],
)
def test_retry_after_reads_seconds_and_dates(header: str | None, seconds: float | None) -> None:
    assert notify._retry_after(header, 1_772_366_400.0) == seconds


# -- delivery ----------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["json", "slack", "discord"])
async def test_each_format_arrives_as_json(
    receiver: Receiver, notifiers: MakeNotifier, format: notify.WebhookFormat
) -> None:
    notifier = notifiers([receiver.hook("a", format)])
    alert = make_alert()
    notifier.submit(alert)
    await eventually(lambda: notifier.stats().sent == 1)
    [hit] = receiver.hits
    assert hit.content_type == "application/json"
    assert hit.body == webhook_body(alert, format)
    stats = notifier.stats()
    assert (stats.queued, stats.failed, stats.retries, stats.dropped) == (0, 0, 0, 0)
    assert stats.last_sent_at is not None
    assert stats.last_sent_at == pytest.approx(time.time(), abs=5)


async def test_a_500_is_retried_and_delivered_once(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.scripts["a"] = [(500, {}), (200, {})]
    notifier = notifiers([receiver.hook("a")])
    notifier.submit(make_alert())
    await eventually(lambda: notifier.stats().sent == 1)
    await asyncio.sleep(0.1)
    assert len(receiver.of("a")) == 2
    assert receiver.hits[0].body == receiver.hits[1].body
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries) == (1, 0, 1)
    assert stats.last_error == f"a (http://127.0.0.1:{receiver.port}/…): 500 Internal Server Error"


async def test_a_400_is_final(receiver: Receiver, notifiers: MakeNotifier) -> None:
    receiver.scripts["a"] = [(400, {}), (200, {})]
    notifier = notifiers([receiver.hook("a")])
    notifier.submit(make_alert())
    await eventually(lambda: notifier.stats().failed == 1)
    await asyncio.sleep(0.1)
    assert len(receiver.of("a")) == 1
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 0)
    assert stats.last_error is not None
    assert stats.last_error.endswith("/…): 400 Bad Request")
    assert stats.last_error_at == pytest.approx(time.time(), abs=5)


async def test_a_429_waits_for_retry_after(receiver: Receiver, notifiers: MakeNotifier) -> None:
    receiver.scripts["a"] = [(429, {"Retry-After": "1"}), (200, {})]
    notifier = notifiers([receiver.hook("a")], max_backoff=5.0)
    notifier.submit(make_alert())
    await eventually(lambda: notifier.stats().sent == 1)
    first, second = receiver.of("a")
    assert 0.95 <= second.at - first.at < 2.5  # the backoff alone would wait 0.01 s


async def test_retry_after_is_capped_by_max_backoff(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.scripts["a"] = [(429, {"Retry-After": "3600"}), (200, {})]
    notifier = notifiers([receiver.hook("a")], max_backoff=0.2)
    notifier.submit(make_alert())
    await eventually(lambda: notifier.stats().sent == 1, timeout=3.0)
    first, second = receiver.of("a")
    assert 0.15 <= second.at - first.at < 1.5


def closed_port() -> int:
    """A loopback port where nothing listens: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_dead_receiver_fails_after_every_attempt(notifiers: MakeNotifier) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/api/webhooks/{SECRET}"
    notifier = notifiers([Webhook(url, "discord")], attempts=3)
    notifier.submit(make_alert())
    await eventually(lambda: notifier.stats().failed == 1)
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries, stats.queued) == (0, 1, 2, 0)
    assert stats.last_error is not None
    assert stats.last_error.startswith(f"http://127.0.0.1:{port}/…: cannot connect (")
    assert SECRET not in stats.last_error


async def test_a_receiver_that_does_not_answer_times_out(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.held.add("slow")
    notifier = notifiers([receiver.hook("slow")], timeout=0.2, attempts=2)
    notifier.submit(make_alert())
    await eventually(lambda: notifier.stats().failed == 1)
    assert len(receiver.of("slow")) == 2
    assert notifier.stats().last_error == (
        f"slow (http://127.0.0.1:{receiver.port}/…): no answer within 0.2s"
    )


async def test_a_slow_webhook_does_not_delay_another(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.held.add("slow")
    notifier = notifiers([receiver.hook("slow"), receiver.hook("fast")], timeout=30.0)
    started = time.monotonic()
    for index in range(3):
        notifier.submit(make_alert(id=index))
    await eventually(lambda: len(receiver.of("fast")) == 3, timeout=2.0)
    assert time.monotonic() - started < 1.0
    assert [hit.body["alert"]["id"] for hit in receiver.of("fast")] == [0, 1, 2]
    assert len(receiver.of("slow")) == 1  # its first alert is still waiting for an answer
    stats = notifier.stats()
    assert (stats.sent, stats.queued) == (3, 3)


async def test_webhooks_are_read_at_delivery_time(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    hooks: list[Webhook] = []
    notifier = notifiers(hooks)
    notifier.submit(make_alert(id=1))
    await eventually(lambda: notifier.stats().queued == 0)
    hooks.append(receiver.hook("late"))
    notifier.submit(make_alert(id=2))
    await eventually(lambda: notifier.stats().sent == 1)
    assert [hit.body["alert"]["id"] for hit in receiver.hits] == [2]
    assert notifier.stats().dropped == 0


async def test_a_full_queue_drops_and_counts(receiver: Receiver, notifiers: MakeNotifier) -> None:
    notifier = notifiers([receiver.hook("a")], start=False, queue_size=2)
    for index in range(5):
        notifier.submit(make_alert(id=index))
    stats = notifier.stats()
    assert (stats.queued, stats.dropped) == (2, 3)
    notifier.start()
    await eventually(lambda: notifier.stats().sent == 2)
    assert [hit.body["alert"]["id"] for hit in receiver.hits] == [0, 1]


async def test_a_full_webhook_lane_drops_and_counts(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.held.add("slow")
    notifier = notifiers([receiver.hook("slow")], queue_size=2, timeout=30.0)
    notifier.submit(make_alert(id=0))
    await eventually(lambda: len(receiver.hits) == 1)
    for index in range(1, 4):
        notifier.submit(make_alert(id=index))
        await eventually(lambda: notifier._queue.empty())
    stats = notifier.stats()
    assert (stats.queued, stats.dropped) == (3, 1)  # one in flight, two waiting


async def test_send_now_tries_each_webhook_once(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.scripts["bad"] = [(500, {}), (200, {})]
    dead = Webhook(f"http://127.0.0.1:{closed_port()}/{SECRET}", "slack")
    hooks = [receiver.hook("ok", "slack"), receiver.hook("bad", "discord"), dead]
    notifier = notifiers(hooks, start=False)
    results = await notifier.send_now(make_alert(kind="test"))
    assert [hook for hook, _ in results] == hooks
    errors = [error for _, error in results]
    assert errors[:2] == [None, "500 Internal Server Error"]
    assert errors[2] is not None
    assert errors[2].startswith("cannot connect")
    assert sorted(hit.name for hit in receiver.hits) == ["bad", "ok"]
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries) == (1, 2, 0)


async def test_stop_is_clean_with_deliveries_pending(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.held.add("slow")
    receiver.scripts["down"] = [(503, {})] * 100
    hooks = [receiver.hook("slow"), receiver.hook("down")]
    notifier = notifiers(hooks, timeout=30.0, backoff=10.0, max_backoff=10.0, grace=0.2)
    for index in range(3):
        notifier.submit(make_alert(id=index))
    await eventually(lambda: len(receiver.of("slow")) == 1 and len(receiver.of("down")) == 1)
    started = time.monotonic()
    await notifier.stop()
    assert 0.15 <= time.monotonic() - started < 1.0
    stats = notifier.stats()
    assert (stats.queued, stats.dropped, stats.sent) == (0, 6, 0)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("codexgate-notify")]
    notifier.submit(make_alert())
    assert notifier.stats().dropped == 7


async def test_stop_waits_for_a_delivery_that_finishes_within_the_grace(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    receiver.scripts["a"] = [(500, {}), (200, {})]
    notifier = notifiers([receiver.hook("a")], backoff=0.1, max_backoff=0.1, grace=2.0)
    notifier.submit(make_alert())
    await eventually(lambda: len(receiver.hits) == 1)
    await notifier.stop()
    stats = notifier.stats()
    assert (stats.sent, stats.dropped, stats.queued) == (1, 0, 0)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at every level, for a test to search."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


async def test_no_log_line_carries_a_webhook_url(
    receiver: Receiver, notifiers: MakeNotifier, logs: pytest.LogCaptureFixture
) -> None:
    receiver.scripts["e500"] = [(500, {})] * 3
    receiver.scripts["e400"] = [(400, {})]
    receiver.scripts["e429"] = [(429, {"Retry-After": "0"})] * 3
    receiver.held.add("slow")
    dead = Webhook(f"http://127.0.0.1:{closed_port()}/{SECRET}?key={QUERY_SECRET}")
    names = ["e500", "e400", "e429", "slow"]
    hooks = [receiver.hook(name) for name in names] + [dead]
    notifier = notifiers(hooks, timeout=0.2, attempts=3)
    notifier.submit(make_alert())
    await eventually(lambda: notifier.stats().failed == 5)
    await notifier.send_now(make_alert(kind="test"))
    notifier.submit(make_alert())
    await notifier.stop()
    # The receiver's own access log names its paths; everything else must not.
    records = [record for record in logs.records if record.name != "aiohttp.access"]
    lines = [logging.Formatter().format(record) for record in records]
    assert any("retrying" in line for line in lines)
    assert any(f"http://127.0.0.1:{receiver.port}/…" in line for line in lines)
    for line in lines:
        assert SECRET not in line
        assert QUERY_SECRET not in line
        assert "/hook/" not in line


async def test_healthz_shows_the_notifier(
    start_gateway: StartGateway, receiver: Receiver, http: ClientSession
) -> None:
    receiver.scripts["a"] = [(404, {})]
    hook = WebhookConfig(URL(receiver.url("a")), name="a")
    server = await start_gateway(alerts=AlertConfig(webhooks=(hook,)))
    [(_, error)] = await app_of(server)[NOTIFIER].send_now(make_alert(kind="test"))
    assert error == "404 Not Found"
    async with http.get(f"http://127.0.0.1:{server.port}/codexgate/healthz") as response:
        part = (await response.json())["notifier"]
    assert (part["queued"], part["sent"], part["failed"], part["dropped"]) == (0, 0, 1, 0)
    assert part["last_error"] == f"a (http://127.0.0.1:{receiver.port}/…): 404 Not Found"
    assert part["last_error_at"].endswith("Z")
    assert part["last_sent_at"] is None
