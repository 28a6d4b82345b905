"""Chat and email webhooks through a running gateway: the settings file's, the API's, the test
alert reaching each real local receiver, and no secret in any answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from codexgate.config import AlertConfig, EmailConfig, WebhookConfig
from tests.helpers.admin_client import ADMIN, Admin, assert_envelope
from tests.helpers.gateway import StartGateway
from tests.helpers.smtp import PASSWORD, Certificate, SmtpServer, make_certificate, start_smtp
from tests.helpers.waiting import eventually

BOT_TOKEN = "123456:XbotXtokenXsecretX"
SIGNING = "SECxsigningxsecretx0123456789"
NTFY_TOKEN = "tk_xntfyxtokenxsecretx"
SECRETS = (BOT_TOKEN, SIGNING, NTFY_TOKEN, PASSWORD, "XhookXidX", "Xtopic_secretX")


# The notifier's session trusts the environment: loopback must not go through a proxy.
pytestmark = pytest.mark.usefixtures("no_proxy")


@dataclass
class Services:
    """Telegram, Feishu and ntfy look-alikes on loopback, recording each request."""

    requests: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._handle("telegram", {"ok": True}))
        app.router.add_post("/open-apis/bot/v2/hook/{id}", self._handle("feishu", {"code": 0}))
        app.router.add_post("/{topic}", self._handle("ntfy", {"id": "x"}))
        return app

    def _handle(self, service: str, answer: Any) -> Any:
        async def handle(request: web.Request) -> web.Response:
            found = self.requests.setdefault(service, [])
            found.append((dict(request.headers), await request.read()))
            return web.json_response(answer)

        return handle


@pytest.fixture
async def services(aiohttp_server: AiohttpServer) -> tuple[Services, TestServer]:
    found = Services()
    return found, await aiohttp_server(found.app())


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[tuple[SmtpServer, Certificate]]:
    certificate = make_certificate(tmp_path)
    server = await start_smtp(certificate)
    yield server, certificate
    server.server.close()


def assert_no_secret(body: Any) -> None:
    text = orjson.dumps(body).decode()
    for secret in SECRETS:
        assert secret not in text


async def test_file_webhooks_of_every_kind_get_the_test_alert(
    start_gateway: StartGateway,
    http: ClientSession,
    services: tuple[Services, TestServer],
    smtp: tuple[SmtpServer, Certificate],
) -> None:
    found, server = services
    mail_server, certificate = smtp
    base = f"http://127.0.0.1:{server.port}"
    hooks = (
        WebhookConfig(URL(f"{base}/bot{BOT_TOKEN}/sendMessage"), "telegram", "tg", chat_id="42"),
        WebhookConfig(URL(f"{base}/open-apis/bot/v2/hook/XhookIdX"), "feishu", secret=SIGNING),
        WebhookConfig(URL(f"{base}/Xtopic_secretX"), "ntfy", "phone", token=NTFY_TOKEN),
        WebhookConfig(
            URL(f"smtp://127.0.0.1:{mail_server.port}"),
            "email",
            "on call",
            ca_file=certificate.cert,
            email=EmailConfig(
                "127.0.0.1",
                mail_server.port,
                "alerts@example.com",
                ("ops@example.com",),
                "alerts",
                PASSWORD,
            ),
        ),
    )
    gateway = await start_gateway(admin_token=ADMIN, alerts=AlertConfig(webhooks=hooks))
    admin = Admin(http, gateway)

    listed = await admin.ok("GET", "api/v1/alerts/webhooks")
    assert [(w["format"], w["url"]) for w in listed["items"]] == [
        ("telegram", f"{base}/…"),
        ("feishu", f"{base}/…"),
        ("ntfy", f"{base}/…"),
        ("email", f"smtp://127.0.0.1:{mail_server.port}/…"),
    ]
    assert_no_secret(listed)

    sent = await admin.ok("POST", "api/v1/alerts/test")
    assert [(w["format"], w["ok"], w["error"]) for w in sent["webhooks"]] == [
        ("telegram", True, None),
        ("feishu", True, None),
        ("ntfy", True, None),
        ("email", True, None),
    ]
    assert_no_secret(sent)
    [(_, telegram)] = found.requests["telegram"]
    assert orjson.loads(telegram)["chat_id"] == "42"
    assert orjson.loads(telegram)["disable_notification"] is True  # a test alert is quiet
    [(_, feishu)] = found.requests["feishu"]
    signed = orjson.loads(feishu)
    key = f"{signed['timestamp']}\n{SIGNING}".encode()
    assert signed["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    [(headers, _)] = found.requests["ntfy"]
    assert headers["Priority"] == "2"
    assert headers["Title"] == "Test alert"
    [mail] = mail_server.inbox.mails
    assert mail.over_tls
    assert mail.message["Subject"] == "[codexgate] Test alert"

    health = await admin.ok("GET", "healthz", auth=None)
    assert health["notifier"]["sent"] == 4
    assert_no_secret(health)


async def test_the_api_adds_chat_webhooks_and_keeps_secrets_to_the_file(
    start_gateway: StartGateway, http: ClientSession, services: tuple[Services, TestServer]
) -> None:
    found, server = services
    base = f"http://127.0.0.1:{server.port}"
    gateway = await start_gateway(admin_token=ADMIN)
    admin = Admin(http, gateway)
    added = await admin.ok(
        "POST",
        "api/v1/alerts/webhooks",
        201,
        json={"url": f"{base}/bot{BOT_TOKEN}/sendMessage", "format": "telegram", "chat_id": -42},
    )
    assert (added["format"], added["url"]) == ("telegram", f"{base}/…")
    assert_no_secret(added)
    ntfy = {"url": f"{base}/Xtopic_secretX", "format": "ntfy", "name": "phone"}
    await admin.ok("POST", "api/v1/alerts/webhooks", 201, json=ntfy)
    sent = await admin.ok("POST", "api/v1/alerts/test")
    assert [w["ok"] for w in sent["webhooks"]] == [True, True]
    [(_, telegram)] = found.requests["telegram"]
    assert orjson.loads(telegram)["chat_id"] == "-42"
    assert len(found.requests["ntfy"]) == 1

    refused = {
        "format": {"url": "https://smtp.example.com/", "format": "email"},
        "secret": {
            "url": "https://open.feishu.cn/open-apis/bot/v2/hook/x",
            "format": "feishu",
            "secret": SIGNING,
        },
        "token": {"url": "https://ntfy.sh/topic", "format": "ntfy", "token": NTFY_TOKEN},
        "chat_id": {
            "url": f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage",
            "format": "telegram",
        },
        "url": {"url": "https://ntfy.sh/", "format": "ntfy"},
    }
    for field_name, body in refused.items():
        answer = await admin.call("POST", "api/v1/alerts/webhooks", json=body)
        envelope = assert_envelope(answer, 400, "invalid_request", field_name)
        assert_no_secret(envelope)
    slack_chat = {"url": "https://hooks.slack.com/x", "format": "slack", "chat_id": 1}
    answer = await admin.call("POST", "api/v1/alerts/webhooks", json=slack_chat)
    assert_envelope(answer, 400, "invalid_request", "chat_id")
    email_answer = await admin.call("POST", "api/v1/alerts/webhooks", json=refused["format"])
    assert "settings file" in email_answer.json["error"]["message"]
    await eventually(lambda: found.requests, accept=lambda r: len(r) == 2, timeout=1)
