"""Telegram, Feishu, DingTalk, WeCom, ntfy and email delivery against real local receivers:
an aiohttp server that records each request as it came, and an aiosmtpd server with STARTTLS."""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from codexgate.config import EmailConfig
from codexgate.services.notify import (
    Notifier,
    Webhook,
    email_message,
    new_session,
    webhook_body,
)
from tests.helpers.builders import make_alert
from tests.helpers.smtp import PASSWORD, Certificate, SmtpServer, make_certificate, start_smtp
from tests.helpers.waiting import eventually

BOT_TOKEN = "123456:XbotXtokenXsecretX"
SIGNING = "SECxsigningxsecretx0123456789"
NTFY_TOKEN = "tk_xntfyxtokenxsecretx"


# -- the HTTP receiver ---------------------------------------------------------------------------


@dataclass
class Hit:
    """One request as it arrived."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


# What each chat service answers when a message went through.
OK_ANSWERS: dict[str, Any] = {
    "telegram": {"ok": True, "result": {"message_id": 1}},
    "feishu": {"code": 0, "msg": "success", "data": {}},
    "dingtalk": {"errcode": 0, "errmsg": "ok"},
    "wecom": {"errcode": 0, "errmsg": "ok"},
    "ntfy": {"id": "abc", "event": "message"},
}


@dataclass
class Receiver:
    """Every format's endpoint on loopback, shaped like the real service's URL."""

    hits: dict[str, list[Hit]] = field(default_factory=dict)
    # Per service, answers to give before the good one: (status, JSON body).
    scripts: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    port: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._handle("telegram"))
        app.router.add_post("/open-apis/bot/v2/hook/{id}", self._handle("feishu"))
        app.router.add_post("/robot/send", self._handle("dingtalk"))
        app.router.add_post("/cgi-bin/webhook/send", self._handle("wecom"))
        app.router.add_post("/{topic}", self._handle("ntfy"))
        return app

    def _handle(self, service: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            hit = Hit(
                request.path, dict(request.query), dict(request.headers), await request.read()
            )
            self.hits.setdefault(service, []).append(hit)
            script = self.scripts.get(service)
            status, answer = script.pop(0) if script else (200, OK_ANSWERS[service])
            return web.Response(status=status, body=orjson.dumps(answer))

        return handle

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, service: str) -> list[Hit]:
        return self.hits.get(service, [])


# The notifier's session trusts the environment: loopback must not go through a proxy.
pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    found = Receiver()
    server = await aiohttp_server(found.app())
    assert server.port is not None
    found.port = server.port
    return found


MakeNotifier = Callable[..., Notifier]


@pytest.fixture
async def notifiers() -> AsyncIterator[MakeNotifier]:
    """Started notifiers with small backoffs; each is stopped and its session closed."""
    made: list[tuple[Notifier, Any]] = []

    def make(hooks: list[Webhook], **options: Any) -> Notifier:
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
        notifier.start()
        made.append((notifier, session))
        return notifier

    yield make
    for notifier, session in made:
        await notifier.stop()
        await session.close()


async def delivered(notifier: Notifier, count: int = 1) -> None:
    await eventually(
        notifier.stats, accept=lambda s: s.sent + s.failed >= count and s.queued == 0, timeout=10
    )


# -- bodies, per format --------------------------------------------------------------------------


async def test_telegram_gets_send_message_with_html_and_the_chat(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/bot{BOT_TOKEN}/sendMessage"
    alert = make_alert(account="<b>bob</b> & co")
    notifier = notifiers([Webhook(url, "telegram", "tg", chat_id="-1001234567890")])
    notifier.submit(alert)
    await delivered(notifier)
    assert notifier.stats().sent == 1
    [hit] = receiver.of("telegram")
    assert hit.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert hit.headers["Content-Type"] == "application/json"
    body = hit.json
    assert body == webhook_body(alert, "telegram", chat_id="-1001234567890")
    assert body["chat_id"] == "-1001234567890"
    assert body["parse_mode"] == "HTML"
    assert body["link_preview_options"] == {"is_disabled": True}
    assert body["disable_notification"] is False  # a warning makes a sound
    text = body["text"]
    assert text.startswith("🟠 <b>Usage threshold crossed</b>\n")
    assert "<b>Account:</b> &lt;b&gt;bob&lt;/b&gt; &amp; co" in text
    assert "<b>Resets:</b> 2026-03-01 14:10 UTC (in 2h 10m)" in text
    assert "<b>Severity:</b> warning" in text
    assert text.endswith("<i>codexgate alert #17</i>")


async def test_telegram_reads_the_chat_from_the_url_an_api_webhook_stores(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/bot{BOT_TOKEN}/sendMessage?chat_id=%40ops_alerts"
    notifier = notifiers([Webhook(url, "telegram")])
    notifier.submit(make_alert(kind="limit_reset", severity="info"))
    await delivered(notifier)
    [hit] = receiver.of("telegram")
    assert hit.query == {}  # the chat goes in the body, once
    assert hit.json["chat_id"] == "@ops_alerts"
    assert hit.json["disable_notification"] is True  # good news is silent


async def test_telegram_errors_say_what_telegram_said_and_429_waits(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/bot{BOT_TOKEN}/sendMessage"
    receiver.scripts["telegram"] = [
        (429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 0}}),
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
    ]
    notifier = notifiers([Webhook(url, "telegram", chat_id="42")])
    notifier.submit(make_alert())
    await delivered(notifier)
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 1)
    assert stats.last_error is not None
    assert stats.last_error.endswith(": 400 Bad Request: chat not found")
    assert BOT_TOKEN not in stats.last_error


def feishu_signature(timestamp: str, secret: str) -> str:
    """Feishu's documented recipe, written out again here to check ours."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, msg=b"", digestmod=hashlib.sha256).digest()).decode()


async def test_feishu_gets_a_signed_interactive_card(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/open-apis/bot/v2/hook/Xhook-idX"
    alert = make_alert(kind="limit_hit", severity="critical", account='<at user_id="all"></at>')
    notifier = notifiers([Webhook(url, "feishu", secret=SIGNING)])
    before = int(time.time())
    notifier.submit(alert)
    await delivered(notifier)
    assert notifier.stats().sent == 1
    [hit] = receiver.of("feishu")
    body = hit.json
    timestamp = body.pop("timestamp")
    assert before <= int(timestamp) <= time.time()  # seconds, as Feishu wants
    assert body.pop("sign") == feishu_signature(timestamp, SIGNING)
    assert body == webhook_body(alert, "feishu")
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"] == {
        "template": "red",
        "title": {"tag": "plain_text", "content": "Rate limit reached"},
    }
    # plain_text everywhere: an <at> in a name is shown, never a mention.
    fields = card["elements"][1]["fields"]
    assert {
        "is_short": True,
        "text": {"tag": "plain_text", "content": 'Account: <at user_id="all"></at>'},
    } in fields
    assert card["elements"][2] == {
        "tag": "note",
        "elements": [{"tag": "plain_text", "content": "codexgate alert #17"}],
    }


async def test_feishu_unsigned_without_a_secret_and_a_code_in_a_200_is_an_error(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/open-apis/bot/v2/hook/Xhook-idX"
    receiver.scripts["feishu"] = [
        (200, {"code": 11232, "msg": "frequency limited"}),  # busy: tried again
        (200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}),
    ]
    notifier = notifiers([Webhook(url, "feishu")])
    notifier.submit(make_alert())
    await delivered(notifier)
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 1)
    assert stats.last_error is not None
    assert stats.last_error.endswith(
        "feishu code 19021: sign match fail or timestamp is not within one hour"
    )
    assert all("sign" not in hit.json for hit in receiver.of("feishu"))


async def test_dingtalk_gets_signed_markdown_with_names_escaped(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/robot/send?access_token=XaccessXtokenX"
    alert = make_alert(account="**bob** <@all> [x](y)")
    notifier = notifiers([Webhook(url, "dingtalk", secret=SIGNING)])
    before = int(time.time() * 1000)
    notifier.submit(alert)
    await delivered(notifier)
    assert notifier.stats().sent == 1
    [hit] = receiver.of("dingtalk")
    assert hit.query["access_token"] == "XaccessXtokenX"
    timestamp = hit.query["timestamp"]
    assert before <= int(timestamp) <= time.time() * 1000  # milliseconds, as DingTalk wants
    # DingTalk's recipe: HMAC-SHA256 keyed with the secret over "timestamp\nsecret", base64.
    expected = hmac.new(SIGNING.encode(), f"{timestamp}\n{SIGNING}".encode(), hashlib.sha256)
    assert hit.query["sign"] == base64.b64encode(expected.digest()).decode()
    body = hit.json
    assert body == webhook_body(alert, "dingtalk")
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "codexgate: Usage threshold crossed"
    text = body["markdown"]["text"]
    assert text.startswith("#### 🟠 Usage threshold crossed\n")
    assert "- **Account:** \\*\\*bob\\*\\* \uff1c@all\uff1e \\[x\\]\\(y\\)" in text
    assert "<@all>" not in text
    assert body["at"] == {"isAtAll": False}


async def test_wecom_gets_markdown_within_4096_bytes(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/cgi-bin/webhook/send?key=XwecomXkeyX"
    long_alert = make_alert(message="用量告警" * 2000, account="<@zhangsan>")
    notifier = notifiers([Webhook(url, "wecom")])
    notifier.submit(long_alert)
    notifier.submit(make_alert(kind="limit_reset"))
    await delivered(notifier, 2)
    assert notifier.stats().sent == 2
    first, second = receiver.of("wecom")
    assert first.query == {"key": "XwecomXkeyX"}
    content = first.json["markdown"]["content"]
    assert first.json["msgtype"] == "markdown"
    assert len(content.encode()) <= 4096
    assert content.startswith('**<font color="warning">Usage threshold crossed</font>**\n用量告警')
    assert "…" in content
    assert "> Account: \uff1c@zhangsan\uff1e" in content
    assert "<@" not in content
    assert content.endswith('<font color="comment">codexgate alert #17</font>')
    # A reset is good news: green.
    assert second.json["markdown"]["content"].startswith('**<font color="info">Rate limit reset')


async def test_wecom_error_codes_are_failures_and_busy_is_retried(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    url = f"{receiver.base()}/cgi-bin/webhook/send?key=XwecomXkeyX"
    receiver.scripts["wecom"] = [(200, {"errcode": 45009, "errmsg": "api freq out of limit"})]
    notifier = notifiers([Webhook(url, "wecom")])
    notifier.submit(make_alert())
    await delivered(notifier)
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries) == (1, 0, 1)


@pytest.mark.parametrize(
    ("kind", "severity", "priority", "tag"),
    [
        ("limit_hit", None, "5", "no_entry"),
        ("threshold", None, "4", "warning"),
        ("threshold", "critical", "5", "warning"),  # the alert's own severity wins
        ("stale", None, "3", "zzz"),
        ("test", None, "2", "test_tube"),
    ],
)
async def test_ntfy_gets_the_message_as_body_and_the_rest_in_headers(
    receiver: Receiver,
    notifiers: MakeNotifier,
    kind: str,
    severity: str | None,
    priority: str,
    tag: str,
) -> None:
    url = f"{receiver.base()}/codexgate_Xtopic_secretX"
    alert = make_alert(kind=kind, severity=severity)
    notifier = notifiers([Webhook(url, "ntfy", token=NTFY_TOKEN)])
    notifier.submit(alert)
    await delivered(notifier)
    assert notifier.stats().sent == 1
    [hit] = receiver.of("ntfy")
    assert hit.path == "/codexgate_Xtopic_secretX"
    assert (
        hit.headers["Title"]
        == {
            "limit_hit": "Rate limit reached",
            "threshold": "Usage threshold crossed",
            "stale": "Usage data is stale",
            "test": "Test alert",
        }[kind]
    )
    assert hit.headers["Priority"] == priority
    assert hit.headers["Tags"] == f"{tag},codexgate"
    assert hit.headers["Authorization"] == f"Bearer {NTFY_TOKEN}"
    assert hit.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = hit.body.decode()
    assert text.startswith(alert.message + "\n\nAccount: alice@example.com\n")
    assert text.endswith("\ncodexgate alert #17")


async def test_ntfy_body_stays_within_4096_bytes(
    receiver: Receiver, notifiers: MakeNotifier
) -> None:
    notifier = notifiers([Webhook(f"{receiver.base()}/topic", "ntfy")])
    notifier.submit(make_alert(message="é" * 5000))
    await delivered(notifier)
    [hit] = receiver.of("ntfy")
    assert len(hit.body) <= 4096
    assert hit.body.decode().endswith("…")  # cut at a character, never inside one
    assert "Authorization" not in hit.headers


def test_size_limits_hold_for_every_chat_body() -> None:
    huge = make_alert(message="x" * 50_000, account="y" * 5000, window="z" * 5000)
    telegram = webhook_body(huge, "telegram", chat_id="1")
    assert len(telegram["text"]) <= 4096
    assert len(orjson.dumps(webhook_body(huge, "feishu"))) <= 20 * 1024
    assert len(webhook_body(huge, "dingtalk")["markdown"]["text"]) <= 5000
    assert len(webhook_body(huge, "wecom")["markdown"]["content"].encode()) <= 4096
    with pytest.raises(ValueError, match="chat_id"):
        webhook_body(huge, "telegram")
    with pytest.raises(ValueError, match="no JSON body"):
        webhook_body(huge, "ntfy")


# -- email: a real SMTP server with STARTTLS -----------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


StartSmtp = Callable[..., Awaitable[SmtpServer]]


@pytest.fixture
async def smtp_servers(certificate: Certificate) -> AsyncIterator[StartSmtp]:
    """Start SMTP servers on loopback in this loop; STARTTLS with the test certificate."""
    servers: list[SmtpServer] = []

    async def start(*, tls: bool = True) -> SmtpServer:
        servers.append(await start_smtp(certificate if tls else None))
        return servers[-1]

    yield start
    for running in servers:
        running.server.close()


def mail_hook(
    port: int, ca_file: Path | None, *, password: str | None = PASSWORD, starttls: bool = True
) -> Webhook:
    settings = EmailConfig(
        host="127.0.0.1",
        port=port,
        sender="codexgate <alerts@example.com>",
        to=("ops@example.com", "Team Lead <lead@example.com>"),
        username=None if password is None else "alerts",
        password=password,
        starttls=starttls,
    )
    return Webhook(
        f"smtp://127.0.0.1:{port}",
        "email",
        "mail",
        ca_file=None if ca_file is None else str(ca_file),
        email=settings,
    )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="codexgate")
    return caplog


async def test_email_goes_through_starttls_with_login(
    smtp_servers: StartSmtp,
    certificate: Certificate,
    notifiers: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    server = await smtp_servers()
    alert = make_alert(kind="limit_hit", account="bob\r\nBcc: evil@example.com")
    notifier = notifiers([mail_hook(server.port, certificate.cert)])
    notifier.submit(alert)
    await delivered(notifier)
    assert notifier.stats().sent == 1, notifier.stats().last_error
    [mail] = server.inbox.mails
    message = mail.message
    assert mail.over_tls  # STARTTLS happened before anything was sent
    assert mail.login == b"alerts"
    assert mail.mail_from == "alerts@example.com"
    assert mail.rcpt_tos == ["ops@example.com", "lead@example.com"]  # no Bcc from a name
    assert message["Subject"] == "[codexgate] Rate limit reached: bob  Bcc: evil@example.com"
    assert message["From"] == "codexgate <alerts@example.com>"
    assert message["To"] == "ops@example.com, Team Lead <lead@example.com>"
    assert message["X-Priority"] == "1 (Highest)"
    assert message["X-Codexgate-Severity"] == "critical"
    assert message["Auto-Submitted"] == "auto-generated"
    assert email.utils.parsedate_to_datetime(message["Date"]).timestamp() == alert.at
    body = mail.text
    assert body.startswith(alert.message + "\n\n")
    assert "Resets: 2026-03-01 14:10 UTC (in 2h 10m)\n" in body
    assert body.endswith("-- codexgate alert #17\n")
    settings = mail_hook(server.port, None).email
    assert settings is not None
    assert email_message(alert, settings).get_content() == body
    assert "Account: bob  Bcc: evil@example.com\n" in body  # a name cannot add a line
    assert all(PASSWORD not in record.getMessage() for record in logs.records)


async def test_email_refuses_a_certificate_it_was_not_told_to_trust(
    smtp_servers: StartSmtp, notifiers: MakeNotifier
) -> None:
    server = await smtp_servers()
    notifier = notifiers([mail_hook(server.port, None)])  # the system's trust only
    notifier.submit(make_alert())
    await delivered(notifier)
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 0)  # final: no retry
    assert stats.last_error is not None
    assert "certificate not trusted" in stats.last_error
    assert server.inbox.mails == []


async def test_email_never_falls_back_to_plain_text(
    smtp_servers: StartSmtp,
    certificate: Certificate,
    notifiers: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    server = await smtp_servers(tls=False)
    notifier = notifiers([mail_hook(server.port, certificate.cert)])
    notifier.submit(make_alert())
    await delivered(notifier)
    stats = notifier.stats()
    assert (stats.sent, stats.failed) == (0, 1)
    assert (
        stats.last_error
        == "mail (smtp://127.0.0.1:" + f"{server.port}/…): the server does not offer STARTTLS"
    )
    assert server.inbox.mails == []
    assert all(PASSWORD not in record.getMessage() for record in logs.records)


async def test_email_a_wrong_password_is_final_and_a_4xx_is_retried(
    smtp_servers: StartSmtp, certificate: Certificate, notifiers: MakeNotifier
) -> None:
    server = await smtp_servers()
    wrong = notifiers([mail_hook(server.port, certificate.cert, password="not-it")])
    wrong.submit(make_alert())
    await delivered(wrong)
    stats = wrong.stats()
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 0)
    assert stats.last_error is not None
    assert "login refused: 535" in stats.last_error

    server.inbox.refusals.append("451 4.3.0 try again later")
    busy = notifiers([mail_hook(server.port, certificate.cert)])
    busy.submit(make_alert())
    await delivered(busy)
    stats = busy.stats()
    assert (stats.sent, stats.failed, stats.retries) == (1, 0, 1)
    assert len(server.inbox.mails) == 1


async def test_email_lanes_keep_order_and_a_slow_receiver_does_not_hold_http_ones(
    smtp_servers: StartSmtp,
    certificate: Certificate,
    receiver: Receiver,
    notifiers: MakeNotifier,
) -> None:
    server = await smtp_servers()
    hooks = [mail_hook(server.port, certificate.cert), Webhook(f"{receiver.base()}/t", "ntfy")]
    notifier = notifiers(hooks)
    for used in (76.0, 91.0, 96.0):
        notifier.submit(make_alert(used_percent=used))
    await delivered(notifier, 6)
    assert notifier.stats().sent == 6
    subjects = [mail.text.split("Used: ")[1].split("\n")[0] for mail in server.inbox.mails]
    assert subjects == ["76%", "91%", "96%"]
    assert len(receiver.of("ntfy")) == 3
