"""The settings file's webhooks for every format: what each needs, and secrets kept out of
errors and reprs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from yarl import URL

from codexgate.config import ConfigError, EmailConfig, WebhookConfig, load


def webhooks(tmp_path: Path, text: str) -> tuple[WebhookConfig, ...]:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return load({"config": str(path)}, environ={}).alerts.webhooks


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        webhooks(tmp_path, text)
    return str(caught.value)


def test_every_format_reads_what_it_needs(tmp_path: Path) -> None:
    hooks = webhooks(
        tmp_path,
        """
[[alerts.webhooks]]
format = "telegram"
url = "https://api.telegram.org/bot123:sekrit/sendMessage"
chat_id = -1001234567890
[[alerts.webhooks]]
format = "feishu"
url = "https://open.feishu.cn/open-apis/bot/v2/hook/sekrit"
secret = "sekrit-signing"
[[alerts.webhooks]]
format = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=sekrit"
[[alerts.webhooks]]
format = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=sekrit"
[[alerts.webhooks]]
format = "ntfy"
url = "https://ntfy.sh/sekrit_topic"
token = "tk_sekrit"
[[alerts.webhooks]]
format = "email"
name = "on call"
to = ["ops@example.com", "Lead <lead@example.com>"]
from = "codexgate <alerts@example.com>"
smtp = "smtp.example.com"
username = "alerts"
password = "sekrit-password"
""",
    )
    telegram, feishu, dingtalk, wecom, ntfy, mail = hooks
    assert telegram.chat_id == "-1001234567890"
    assert feishu.secret == "sekrit-signing"
    assert dingtalk.secret is None
    assert wecom.format == "wecom"
    assert ntfy.token == "tk_sekrit"
    assert mail.url == URL("smtp://smtp.example.com:587")
    assert mail.email == EmailConfig(
        host="smtp.example.com",
        port=587,
        sender="codexgate <alerts@example.com>",
        to=("ops@example.com", "Lead <lead@example.com>"),
        username="alerts",
        password="sekrit-password",
        starttls=True,
    )
    for hook in hooks:
        assert "sekrit" not in repr(hook)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        (
            'format = "telegram"\nurl = "https://api.telegram.org/bot1:sekrit/sendMessage"',
            "alerts.webhooks[0].chat_id in {file}: is required",
        ),
        (
            'format = "telegram"\nurl = "https://api.telegram.org/bot1:sekrit/getMe"\nchat_id = 1',
            "alerts.webhooks[0].url in {file}: must be the Bot API's sendMessage URL",
        ),
        (
            'format = "ntfy"\nurl = "https://ntfy.sh/"',
            "alerts.webhooks[0].url in {file}: must be the topic's URL",
        ),
        (
            'format = "slack"\nurl = "https://hooks.slack.com/sekrit"\nsecret = "sekrit"',
            "alerts.webhooks[0].secret in {file}: applies only to format feishu or dingtalk",
        ),
        (
            'format = "email"\nto = "a@example.com"\nfrom = "b@example.com"\nsmtp = "h:25"\n'
            'username = "u"\npassword = "sekrit"\nstarttls = false',
            "alerts.webhooks[0].starttls in {file}: must be true when a password is set",
        ),
        (
            'format = "email"\nto = "a@example.com"\nfrom = "b@example.com"\nsmtp = "h"\n'
            'password = "sekrit"',
            "alerts.webhooks[0].username in {file}: username and password go together",
        ),
        (
            'format = "email"\nto = "not an address"\nfrom = "b@example.com"\nsmtp = "h"',
            "alerts.webhooks[0].to in {file}: must be an email address",
        ),
        (
            'format = "email"\nto = "a@example.com"\nfrom = "b@example.com"\nsmtp = "h/x"',
            "alerts.webhooks[0].smtp in {file}: must be host or host:port",
        ),
        (
            'format = "email"\nurl = "https://sekrit.example.com/"\nto = "a@example.com"',
            "alerts.webhooks[0].url in {file}: an email webhook has smtp, from and to instead",
        ),
        (
            'format = "json"\nurl = "https://x.example.com/sekrit"\nca_file = "/nonexistent.pem"',
            "alerts.webhooks[0].ca_file in {file}: cannot use '/nonexistent.pem' as certificates",
        ),
        (
            'format = "teams"\nurl = "https://x.example.com/sekrit"',
            "must be one of json, slack, discord, telegram, feishu, dingtalk, wecom, ntfy, email",
        ),
    ],
)
def test_a_webhook_missing_what_its_format_needs_is_named(
    tmp_path: Path, table: str, words: str
) -> None:
    message = error(tmp_path, f"[[alerts.webhooks]]\n{table}\n")
    assert words.format(file=tmp_path / "settings.toml") in message
    assert "sekrit" not in message


def test_a_ca_file_must_hold_certificates(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    table = f'url = "https://x.example.com/"\nca_file = "{junk}"'
    assert "as certificates: not PEM" in error(tmp_path, f"[[alerts.webhooks]]\n{table}\n")
    openssl = shutil.which("openssl")
    if openssl is None:
        return
    cert = tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=test", "-keyout", str(tmp_path / "key.pem"),
            "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    [hook] = webhooks(
        tmp_path, f'[[alerts.webhooks]]\nurl = "https://x.example.com/"\nca_file = "{cert}"\n'
    )
    assert hook.ca_file == cert
