"""Alert delivery to webhooks (JSON, Slack, Discord, Telegram, Feishu, DingTalk, WeCom, ntfy) and
by email (SMTP with STARTTLS), with retries and one ordered lane per destination, off the
request path."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import logging
import math
import random
import smtplib
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final, Literal

import aiohttp
import orjson
from yarl import URL

from codexgate import __version__
from codexgate.config import EmailConfig, WebhookConfig, mask_url
from codexgate.config import WebhookFormat as WebhookFormat  # re-exported: services and tests
from codexgate.core.alerts import Severity
from codexgate.core.alerts import severity as kind_severity
from codexgate.core.text import duration, iso, percent

log = logging.getLogger(__name__)

AlertKind = Literal["threshold", "limit_hit", "limit_reset", "forecast", "stale", "test"]
_SEVERITIES: Final[dict[str, Severity]] = {
    "critical": "critical",
    "warning": "warning",
    "info": "info",
    "test": "test",
}

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
_MARKS: Final[dict[Severity, str]] = {
    "critical": "🔴",
    "warning": "🟠",
    "info": "🔵",
    "test": "🧪",
}
# ntfy priorities: 5 max/urgent, 4 high, 3 default, 2 low (a test alert makes no noise).
_NTFY_PRIORITY: Final[dict[Severity, int]] = {"critical": 5, "warning": 4, "info": 3, "test": 2}
_NTFY_TAGS: Final[dict[str, str]] = {
    "threshold": "warning",
    "limit_hit": "no_entry",
    "limit_reset": "white_check_mark",
    "forecast": "hourglass_flowing_sand",
    "stale": "zzz",
    "test": "test_tube",
}
# Feishu card header templates; a reset is good news whatever its severity.
_FEISHU_TEMPLATES: Final[dict[Severity, str]] = {
    "critical": "red",
    "warning": "orange",
    "info": "blue",
    "test": "grey",
}
# WeCom markdown knows three font colours: info (green), comment (grey), warning (orange-red).
_WECOM_COLORS: Final[dict[Severity, str]] = {
    "critical": "warning",
    "warning": "warning",
    "info": "comment",
    "test": "comment",
}
# RFC 1327 / common mail clients: 1 highest, 3 normal, 5 lowest.
_MAIL_PRIORITY: Final[dict[Severity, str]] = {
    "critical": "1 (Highest)",
    "warning": "3 (Normal)",
    "info": "5 (Lowest)",
    "test": "5 (Lowest)",
}
# Documented limits: Discord content 2000, embed title 256, description 4096, field value 1024,
# 6000 characters per embed in all; Slack section and context texts 3000; Telegram text 4096
# characters after entity parsing; WeCom markdown content 4096 bytes; ntfy's default message
# size limit 4096 bytes (beyond it a message becomes an attachment); Feishu request body 20 KB.
_DISCORD_CONTENT: Final = 2000
_DISCORD_FIELD: Final = 1024
_SLACK_TEXT: Final = 3000
_TELEGRAM_MESSAGE: Final = 3000  # leaves room for the title and details within 4096
_CHAT_MESSAGE: Final = 3000  # Feishu, DingTalk: the sentence, well within their body limits
_WECOM_BYTES: Final = 4096
_NTFY_BYTES: Final = 4096
_MAIL_MESSAGE: Final = 10_000
_NAME: Final = 200  # an account name longer than this says nothing more in a notification
_ANSWER_BYTES: Final = 64 * 1024  # read this much of a chat service's answer, no more
_DROP_WARNING_INTERVAL: Final = 60.0
_USER_AGENT: Final = f"codexgate/{__version__}"
_HEADERS: Final = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
# Chat services that answer 200 with an error code in the body; their codes that mean "too many
# requests, try later": Feishu 11232, DingTalk 130101, WeCom 45009 (and -1, system busy).
_ANSWERS_IN_BODY: Final = frozenset({"telegram", "feishu", "dingtalk", "wecom"})
_BUSY_CODES: Final[dict[str, frozenset[int]]] = {
    "feishu": frozenset({11232}),
    "dingtalk": frozenset({130101}),
    "wecom": frozenset({45009, -1}),
}


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
    severity: str | None = None  # "critical", "warning", "info" or "test"; None: by kind


@dataclass(frozen=True, slots=True)
class Webhook:
    """One destination; its URL and secrets are never logged or shown whole (`redact_url`)."""

    url: str = field(repr=False)
    format: WebhookFormat = "json"
    name: str | None = None
    chat_id: str | None = None  # telegram; else the URL's chat_id query parameter
    secret: str | None = field(default=None, repr=False)  # feishu and dingtalk signing
    token: str | None = field(default=None, repr=False)  # ntfy access token
    ca_file: str | None = None  # the certificates to trust instead of the system's (PEM)
    email: EmailConfig | None = None  # format "email": the SMTP server and addresses


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


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What one delivery POSTs: the URL (a secret), the body and its headers."""

    url: str = field(repr=False)
    body: bytes
    headers: Mapping[str, str] = field(repr=False)


def from_config(hook: WebhookConfig) -> Webhook:
    """A destination from the settings file's `[[alerts.webhooks]]`."""
    return Webhook(
        url=str(hook.url),
        format=hook.format,
        name=hook.name,
        chat_id=hook.chat_id,
        secret=hook.secret,
        token=hook.token,
        ca_file=None if hook.ca_file is None else str(hook.ca_file),
        email=hook.email,
    )


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


def severity_of(alert: Alert) -> Severity:
    """The alert's severity: the one it carries when known, else its kind's (core.alerts)."""
    given = None if alert.severity is None else _SEVERITIES.get(alert.severity)
    return given or kind_severity(alert.kind)


def webhook_body(alert: Alert, format: str, *, chat_id: str | None = None) -> dict[str, Any]:
    """The JSON body `format` expects for `alert` (unsigned; Telegram needs the `chat_id`)."""
    match format:
        case "json":
            return _json_body(alert)
        case "slack":
            return _slack_body(alert)
        case "discord":
            return _discord_body(alert)
        case "telegram":
            if chat_id is None:
                raise ValueError("a telegram body needs a chat_id")
            return _telegram_body(alert, chat_id)
        case "feishu":
            return _feishu_body(alert)
        case "dingtalk":
            return _dingtalk_body(alert)
        case "wecom":
            return _wecom_body(alert)
    raise ValueError(f"no JSON body for webhook format {format!r}")


def webhook_request(alert: Alert, hook: Webhook, now: float) -> HttpRequest:
    """The request that delivers `alert` to an HTTP webhook, signed at `now` where it has to be."""
    if hook.format == "ntfy":
        return _ntfy_request(alert, hook)
    url = URL(hook.url)
    chat_id = None
    if hook.format == "telegram":
        # Added through the API, the chat travels in the stored URL; the body says it instead.
        chat_id = hook.chat_id or url.query.get("chat_id")
        url = url.without_query_params("chat_id")
    body = webhook_body(alert, hook.format, chat_id=chat_id)
    if hook.secret is not None and hook.format == "feishu":
        seconds = str(int(now))
        body = {"timestamp": seconds, "sign": feishu_sign(hook.secret, seconds), **body}
    elif hook.secret is not None and hook.format == "dingtalk":
        millis = str(int(now * 1000))
        url = url.update_query(timestamp=millis, sign=dingtalk_sign(hook.secret, millis))
    return HttpRequest(str(url), orjson.dumps(body), _HEADERS)


def feishu_sign(secret: str, timestamp: str) -> str:
    """Feishu/Lark's signature: base64 of HMAC-SHA256 keyed with "timestamp\\nsecret" over b""."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(secret: str, timestamp: str) -> str:
    """DingTalk's signature: base64 of HMAC-SHA256 keyed with the secret over "timestamp\\nsecret"
    (the URL's query encoding adds the percent-escapes DingTalk asks for)."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def _json_body(alert: Alert) -> dict[str, Any]:
    fields = asdict(alert)
    fields["severity"] = severity_of(alert)
    fields["at_iso"] = iso(alert.at)
    fields["resets_at_iso"] = iso(alert.resets_at)
    fields["exhausts_at_iso"] = iso(alert.exhausts_at)
    return {"type": "codexgate.alert", "alert": fields}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, at a character boundary, ending in "…"."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: max(0, limit - 3)].decode(errors="ignore") + "…"


def _window(alert: Alert) -> str | None:
    if alert.window is None:
        return None
    return alert.window if alert.limit_id is None else f"{alert.window} ({alert.limit_id})"


def _footer(alert: Alert) -> str:
    return "codexgate" if alert.id is None else f"codexgate alert #{alert.id}"


def _plain_time(at: float, since: float) -> str | None:
    """A moment for readers whose app shows no local time: `2026-03-01 14:10 UTC (in 2h 10m)`."""
    if iso(at) is None:
        return None
    text = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{text} (in {duration(at - since)})" if at > since else text


def _one_line(text: str) -> str:
    """Control characters (line breaks above all) as spaces: a name cannot add a line."""
    return "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in text)


def _details(alert: Alert) -> list[tuple[str, str]]:
    """The alert's facts as (label, plain text) for the text channels: nothing escaped yet."""
    details: list[tuple[str, str]] = []
    if alert.account is not None:
        details.append(("Account", _one_line(_clip(alert.account, _NAME))))
    window = _window(alert)
    if window is not None:
        details.append(("Window", _one_line(_clip(window, _NAME))))
    if alert.used_percent is not None:
        details.append(("Used", percent(alert.used_percent)))
    if alert.threshold is not None:
        details.append(("Threshold", percent(alert.threshold)))
    resets = None if alert.resets_at is None else _plain_time(alert.resets_at, alert.at)
    if resets is not None:
        details.append(("Resets", resets))
    runs_out = None if alert.exhausts_at is None else _plain_time(alert.exhausts_at, alert.at)
    if runs_out is not None:
        details.append(("Runs out", runs_out))
    details.append(("Severity", severity_of(alert)))
    return details


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
    details.append(_footer(alert))
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
        "footer": {"text": _footer(alert)},
    }
    at = iso(alert.at)
    if at is not None:
        embed["timestamp"] = at
    return {
        "content": _clip(_discord_escape(alert.message), _DISCORD_CONTENT),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},  # an "@everyone" in an account name pings nobody
    }


def _telegram_escape(text: str) -> str:
    # parse_mode HTML: every <, > and & that is not markup must be an entity.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _telegram_body(alert: Alert, chat_id: str) -> dict[str, Any]:
    severity = severity_of(alert)
    lines = [
        f"{_MARKS[severity]} <b>{_TITLES[alert.kind]}</b>",
        _telegram_escape(_clip(alert.message, _TELEGRAM_MESSAGE)),
        "",
    ]
    lines += [f"<b>{label}:</b> {_telegram_escape(value)}" for label, value in _details(alert)]
    lines.append(f"<i>{_footer(alert)}</i>")
    return {
        "chat_id": chat_id,
        "text": "\n".join(lines),
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
        # Good news and test alerts arrive without a sound.
        "disable_notification": severity in ("info", "test"),
    }


def _feishu_text(text: str) -> dict[str, str]:
    # plain_text shows what it gets as it is: no markdown, no <at> mentions to escape.
    return {"tag": "plain_text", "content": text}


def _feishu_body(alert: Alert) -> dict[str, Any]:
    severity = severity_of(alert)
    template = "green" if alert.kind == "limit_reset" else _FEISHU_TEMPLATES[severity]
    fields = [
        {"is_short": True, "text": _feishu_text(f"{label}: {value}")}
        for label, value in _details(alert)
    ]
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {"template": template, "title": _feishu_text(_TITLES[alert.kind])},
            "elements": [
                {"tag": "div", "text": _feishu_text(_clip(alert.message, _CHAT_MESSAGE))},
                {"tag": "div", "fields": fields},
                {"tag": "note", "elements": [_feishu_text(_footer(alert))]},
            ],
        },
    }


def _markdown_escape(text: str) -> str:
    """An account name or sentence as typed in DingTalk's and WeCom's markdown."""
    for char in "\\`*_~[]()#|!":
        text = text.replace(char, "\\" + char)
    # Neither knows an entity for < and >, which would start a <font> tag or a <@user> mention:
    # the full-width forms read the same and mean nothing.
    return text.replace("<", "\uff1c").replace(">", "\uff1e").replace("\n", " ")


def _dingtalk_body(alert: Alert) -> dict[str, Any]:
    severity = severity_of(alert)
    title = _TITLES[alert.kind]
    lines = [
        f"#### {_MARKS[severity]} {title}",
        "",
        _markdown_escape(_clip(alert.message, _CHAT_MESSAGE)),
        "",
    ]
    lines += [f"- **{label}:** {_markdown_escape(value)}" for label, value in _details(alert)]
    lines += ["", f"###### {_footer(alert)}"]
    return {
        "msgtype": "markdown",
        # The title is what the chat list and the notification show.
        "markdown": {"title": f"codexgate: {title}", "text": "\n".join(lines)},
        "at": {"isAtAll": False},
    }


def _wecom_body(alert: Alert) -> dict[str, Any]:
    severity = severity_of(alert)
    color = "info" if alert.kind == "limit_reset" else _WECOM_COLORS[severity]
    head = f'**<font color="{color}">{_TITLES[alert.kind]}</font>**'
    details = [f"> {label}: {_markdown_escape(value)}" for label, value in _details(alert)]
    tail = "\n".join([*details, f'<font color="comment">{_footer(alert)}</font>'])
    room = _WECOM_BYTES - len(f"{head}\n\n{tail}".encode()) - 2
    message = _clip_bytes(_markdown_escape(alert.message), max(0, room))
    if message.endswith("\\…"):  # never leave an escape without the character it escaped
        message = message[:-2] + "…"
    return {"msgtype": "markdown", "markdown": {"content": f"{head}\n{message}\n\n{tail}"}}


def _ntfy_request(alert: Alert, hook: Webhook) -> HttpRequest:
    """ntfy: the message as the body of a POST to the topic URL, the rest in headers."""
    severity = severity_of(alert)
    lines = [alert.message, ""]
    lines += [f"{label}: {value}" for label, value in _details(alert)]
    lines.append(_footer(alert))
    priority = _NTFY_PRIORITY[severity]
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "User-Agent": _USER_AGENT,
        # Plain text needs no escaping; the title is one of ours, in ASCII.
        "Title": _TITLES[alert.kind],
        "Priority": str(priority),
        "Tags": f"{_NTFY_TAGS[alert.kind]},codexgate",
    }
    if hook.token is not None:
        headers["Authorization"] = f"Bearer {hook.token}"
    body = _clip_bytes("\n".join(lines), _NTFY_BYTES)
    return HttpRequest(hook.url, body.encode(), headers)


def email_message(alert: Alert, settings: EmailConfig) -> EmailMessage:
    """The mail an `email` webhook sends for `alert`: plain text, the details one per line."""
    severity = severity_of(alert)
    message = EmailMessage()
    subject = _TITLES[alert.kind]
    if alert.account is not None:
        subject = f"{subject}: {_clip(alert.account, _NAME)}"
    message["Subject"] = _one_line(f"[codexgate] {subject}")
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message["Date"] = email.utils.formatdate(alert.at, usegmt=True)
    # A domain of our own: make_msgid would otherwise ask DNS for this machine's name.
    message["Message-ID"] = email.utils.make_msgid("alert", domain="codexgate.invalid")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    message["X-Priority"] = _MAIL_PRIORITY[severity]
    message["X-Codexgate-Severity"] = severity
    lines = [_clip(alert.message, _MAIL_MESSAGE), ""]
    lines += [f"{label}: {value}" for label, value in _details(alert)]
    lines += ["", f"-- {_footer(alert)}"]
    message.set_content("\n".join(lines) + "\n")
    return message


def _send_mail(
    settings: EmailConfig, message: EmailMessage, context: ssl.SSLContext | None, timeout: float
) -> dict[str, tuple[int, bytes]]:
    """Send one mail, blocking (run it in a thread); the recipients refused, when some were."""
    with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
        smtp.ehlo()
        if context is not None:
            # Never falls back to plain text: a server without STARTTLS raises here.
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.username is not None and settings.password is not None:
            smtp.login(settings.username, settings.password)
        return smtp.send_message(message)


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
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "certificate not trusted (see ca_file)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error.__class__.__name__})"
    return exc.__class__.__name__


def _said(value: object) -> str:
    """What a service said, as one short line."""
    text = value if isinstance(value, str) else ""
    return _clip(" ".join(text.split()), 120)


def _answer(
    format: str, status: int, reason: str | None, retry_after: str | None, payload: bytes
) -> _Outcome:
    """How one HTTP answer went for `format`: chat services say success in the body too."""
    try:
        answer = orjson.loads(payload) if format in _ANSWERS_IN_BODY and payload else None
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        answer = None
    if not 200 <= status < 300:
        error = f"{status} {reason or ''}".rstrip()
        if format == "telegram" and answer is not None and answer.get("description"):
            error = f"{status} {_said(answer['description'])}"
        if status == 429 or status >= 500:
            wait = _retry_after(retry_after, time.time())
            parameters = answer.get("parameters") if answer is not None else None
            if wait is None and isinstance(parameters, dict):  # Telegram's own retry_after
                wait = _retry_after(str(parameters.get("retry_after")), time.time())
            return _Outcome(error, retry=True, retry_after=wait)
        return _Outcome(error)
    if format not in _ANSWERS_IN_BODY:
        return _Outcome(None)
    if answer is None:
        return _Outcome(f"{status}, but not the JSON answer {format} gives")
    if format == "telegram":
        ok = answer.get("ok") is True
        return _Outcome(None if ok else f"telegram: {_said(answer.get('description'))}")
    # Feishu answers {"code": 0, "msg": "success"} (older hooks {"StatusCode": 0, ...});
    # DingTalk and WeCom {"errcode": 0, "errmsg": "ok"}.
    code = answer.get("code", answer.get("StatusCode", answer.get("errcode")))
    if code == 0:
        return _Outcome(None)
    said = answer.get("msg", answer.get("StatusMessage", answer.get("errmsg")))
    error = f"{format} code {code}: {_said(said)}"
    return _Outcome(error, retry=isinstance(code, int) and code in _BUSY_CODES.get(format, ()))


async def _read_some(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of an answer's body: a receiver cannot make us hold more."""
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _smtp_said(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"{exc.smtp_code} {_said(text.splitlines()[0] if text else '')}".rstrip()


def _mail_outcome(exc: Exception) -> _Outcome:
    """How a failed mail went: 4xx answers and lost connections are worth another attempt."""
    match exc:
        case smtplib.SMTPNotSupportedError():
            return _Outcome("the server does not offer STARTTLS")
        case smtplib.SMTPAuthenticationError():
            return _Outcome(f"login refused: {_smtp_said(exc)}")
        case smtplib.SMTPRecipientsRefused():
            codes = [code for code, _ in exc.recipients.values()]
            return _Outcome(
                f"every recipient refused ({', '.join(map(str, sorted(set(codes))))})",
                retry=all(400 <= code < 500 for code in codes),
            )
        case smtplib.SMTPResponseException():
            return _Outcome(_smtp_said(exc), retry=400 <= exc.smtp_code < 500)
        case ssl.SSLCertVerificationError():
            return _Outcome(f"certificate not trusted ({exc.verify_message}; see ca_file)")
        case ssl.SSLError():
            return _Outcome(f"TLS failed ({exc.reason or exc.__class__.__name__})", retry=True)
        case smtplib.SMTPServerDisconnected():
            return _Outcome("the server closed the connection", retry=True)
        case smtplib.SMTPException():
            return _Outcome(f"SMTP failed: {_said(str(exc))}")
        case TimeoutError():
            return _Outcome("no answer in time", retry=True)
        case OSError():
            return _Outcome(
                f"cannot connect ({exc.strerror or exc.__class__.__name__})", retry=True
            )
    return _Outcome(f"cannot send ({exc.__class__.__name__})")


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
        on_done: Callable[[int], None] | None = None,
    ) -> None:
        """`on_done(alert id)` is called once every webhook had its attempts at a stored alert
        (delivered, failed or dropped for a full lane); never for one abandoned or still pending
        at stop: those stay in the outbox."""
        self._session = session
        self._on_done = on_done
        # Stored alerts queued or being delivered: their id -> the deliveries not done with it
        # (one while queued, then one per webhook).
        self._remaining: dict[int, int] = {}
        self._webhooks = webhooks
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._seconds = timeout
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
        # TLS contexts by ca_file (None: the system's), built once off the loop.
        self._contexts: dict[str | None, ssl.SSLContext] = {}

    def submit(self, alert: Alert, *, unless_pending: bool = False) -> None:
        """Queue an alert for every webhook; when the queue is full (or stopped), count a drop.
        With unless_pending, not when a stored alert of its id is queued or in flight."""
        if self._stopping:
            self._drop(1, "the notifier has stopped")
            return
        if alert.id is not None:
            if unless_pending and alert.id in self._remaining:
                return
            self._remaining[alert.id] = self._remaining.get(alert.id, 0) + 1
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._drop(1, "the alert queue is full")
            self._lane_done(alert)
            return
        self._settled.clear()

    def abandon(self) -> None:
        """Forget the alerts not in flight (another instance delivers them from the outbox);
        the deliveries in flight finish."""
        while not self._queue.empty():
            self._forget(self._queue.get_nowait())
        for lane in self._lanes.values():
            for alert in lane.pending:
                self._forget(alert)
            lane.pending.clear()
        self._settle()

    def _forget(self, alert: Alert) -> None:
        """One delivery of alert will not happen here: not done, it stays in the outbox."""
        if alert.id is not None and alert.id in self._remaining:
            self._remaining[alert.id] -= 1
            if self._remaining[alert.id] <= 0:
                del self._remaining[alert.id]

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
            if alert.id is not None and alert.id in self._remaining:
                self._remaining[alert.id] += len(hooks)
            for hook in hooks:
                self._enqueue(hook, alert)
            self._lane_done(alert)  # the queued delivery is now one per webhook
            self._settle()

    def _enqueue(self, hook: Webhook, alert: Alert) -> None:
        lane = self._lanes.get(hook)
        if lane is None:
            lane = self._lanes[hook] = _Lane(hook)
            lane.task = asyncio.create_task(self._run_lane(lane), name="codexgate-notify-lane")
        if len(lane.pending) >= self._queue_size:
            self._drop(1, f"the queue of {_label(hook)} is full")
            self._lane_done(alert)
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
                self._lane_done(alert)
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
        """Deliver the alert once; errors become an outcome, never an exception."""
        if hook.format == "email":
            return await self._attempt_mail(hook, alert)
        try:
            request = webhook_request(alert, hook, time.time())
            context: ssl.SSLContext | bool = True
            if hook.ca_file is not None:
                context = await self._context(hook.ca_file)
            async with self._session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._timeout,
                ssl=context,
                allow_redirects=False,  # a redirect would resend the alert somewhere unchecked
            ) as response:
                payload = b""
                if hook.format in _ANSWERS_IN_BODY:
                    payload = await _read_some(response, _ANSWER_BYTES)
                return _answer(
                    hook.format,
                    response.status,
                    response.reason,
                    response.headers.get("Retry-After"),
                    payload,
                )
        except TimeoutError:
            return _Outcome(f"no answer within {self._seconds:g}s", retry=True)
        except aiohttp.InvalidURL:
            return _Outcome("invalid URL")
        except aiohttp.ClientError as exc:
            return _Outcome(_describe(exc), retry=True)
        except (OSError, ssl.SSLError):  # the ca_file went away or broke since start
            return _Outcome("cannot read ca_file")
        except ValueError as exc:  # an unknown format, or a URL yarl cannot parse
            return _Outcome(f"cannot send ({exc.__class__.__name__})")

    async def _attempt_mail(self, hook: Webhook, alert: Alert) -> _Outcome:
        """Send the alert once by SMTP, in a thread (smtplib blocks)."""
        settings = hook.email
        if settings is None:
            return _Outcome("no SMTP settings")
        try:
            message = email_message(alert, settings)
            context = await self._context(hook.ca_file) if settings.starttls else None
            # Each socket operation has the timeout; this bounds a server that drips.
            async with asyncio.timeout(self._seconds * 3):
                refused = await asyncio.to_thread(
                    _send_mail, settings, message, context, self._seconds
                )
        except TimeoutError:
            return _Outcome(f"no answer within {self._seconds * 3:g}s", retry=True)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            return _mail_outcome(exc)
        if refused:
            # Some got it: trying again would send them a second copy.
            codes = sorted({code for code, _ in refused.values()})
            return _Outcome(f"{len(refused)} recipient(s) refused ({', '.join(map(str, codes))})")
        return _Outcome(None)

    async def _context(self, ca_file: str | None) -> ssl.SSLContext:
        """The TLS context that trusts `ca_file` (None: the system's certificates)."""
        context = self._contexts.get(ca_file)
        if context is None:
            # Reading certificate files blocks: do it once per file, off the loop.
            context = await asyncio.to_thread(ssl.create_default_context, cafile=ca_file)
            self._contexts[ca_file] = context
        return context

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

    def _lane_done(self, alert: Alert) -> None:
        """One webhook is done with alert; when it was the last, so is the notifier."""
        if alert.id is None or alert.id not in self._remaining:
            return
        self._remaining[alert.id] -= 1
        if self._remaining[alert.id] <= 0:
            self._done(alert)

    def _done(self, alert: Alert) -> None:
        if alert.id is None or self._remaining.pop(alert.id, None) is None:
            return
        if self._on_done is not None:
            try:
                self._on_done(alert.id)
            except Exception:  # the caller's bug must not stop the deliveries
                log.exception("the notifier's on_done callback failed")

    def _settle(self) -> None:
        if self._pending() == 0:
            self._settled.set()


def _label(hook: Webhook) -> str:
    """How logs and stats name a webhook: its name and redacted URL, never the URL whole."""
    redacted = redact_url(hook.url)
    return redacted if hook.name is None else f"{hook.name} ({redacted})"
