"""The alerts API under api/v1/alerts: the alerts fired, the rules, the webhooks, a test alert.

Rules set through the API are kept in the `settings` table and win over the config file's until
they are deleted (DELETE alerts/rules). Webhooks come from both: the config file's are listed
read-only, those added through the API are stored. A webhook URL is a secret and is only ever
shown as its origin. The rules' validation is `codexgate.core.alerts`; the settings, engine and
notifier are `codexgate.services.alerts`.
"""

from __future__ import annotations

import time
from typing import Final

import orjson
from aiohttp import web
from yarl import URL

from codexgate.api.common import (
    decode_cursor,
    encode_cursor,
    json_response,
    parse_id,
    parse_limit,
    query_one,
    read_object,
)
from codexgate.api.errors import invalid, not_found
from codexgate.api.schemas import (
    Webhook,
    WebhookResult,
    alert_json,
    rules_json,
    webhook_json,
    webhook_result_json,
)
from codexgate.config import (
    TELEGRAM_CHAT_HELP,
    WEBHOOK_FORMATS,
    telegram_chat,
    webhook_url_problem,
)
from codexgate.core.alerts import Decision, RuleError, rules_from, test_alert
from codexgate.keys import ALERT_SETTINGS, ALERTS, NOTIFIER, STORE
from codexgate.services.alerts import RULES_SETTING, AlertSettings, to_notification

# Email needs SMTP credentials, which live in the settings file only; so do signing secrets
# and ntfy tokens (a stored URL is shown nowhere, but a separate secret would need a home).
FORMATS: Final = tuple(f for f in WEBHOOK_FORMATS if f != "email")
FILE_ONLY: Final = frozenset({"secret", "token", "to", "from", "smtp", "username", "password"})
DEFAULT_ALERTS_PAGE: Final = 50
MAX_URL: Final = 2048


def _webhooks_json(settings: AlertSettings) -> list[Webhook]:
    from_file = [
        webhook_json(str(h.url), h.format, h.name, webhook_id=None, source="config")
        for h in settings.from_file.webhooks
    ]
    stored = [
        webhook_json(r.url, r.format, r.name, webhook_id=r.id, source="api")
        for r in settings.stored
    ]
    return from_file + stored


# -- handlers -----------------------------------------------------------------------------------


async def list_alerts(request: web.Request) -> web.Response:
    """GET alerts: alerts newest first, a page at a time."""
    query = request.query
    account_id = None
    raw = query_one(query, "account_id")
    if raw is not None:
        account_id = parse_id(raw)
        if account_id is None:
            raise invalid("account_id", "account_id must be a positive whole number")
    limit = parse_limit(query, DEFAULT_ALERTS_PAGE)
    before = None
    cursor = query_one(query, "cursor")
    if cursor is not None:
        parts = decode_cursor(cursor, "a")
        if len(parts) != 1 or not isinstance(parts[0], int):
            raise invalid("cursor", "cursor is not one this list gave out; start without it")
        before = parts[0]
    rows = await request.app[STORE].alerts(account_id=account_id, before_id=before, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor("a", page[-1].id) if len(rows) > limit else None
    return json_response({"items": [alert_json(row) for row in page], "next_cursor": next_cursor})


async def get_rules(request: web.Request) -> web.Response:
    """GET alerts/rules: the rules in force and where they come from."""
    settings = request.app[ALERT_SETTINGS]
    return json_response(rules_json(settings.rules(), "api" if settings.from_api else "config"))


async def put_rules(request: web.Request) -> web.Response:
    """PUT alerts/rules: change the given fields; they win over the config file's from now on."""
    settings = request.app[ALERT_SETTINGS]
    try:
        rules = rules_from(await read_object(request), settings.rules())
    except RuleError as error:
        raise invalid(error.field, error.message) from None
    stored = {name: value for name, value in rules_json(rules, "api").items() if name != "source"}
    await request.app[STORE].set_setting(RULES_SETTING, orjson.dumps(stored).decode())
    settings.from_api = rules
    return json_response(rules_json(rules, "api"))


async def delete_rules(request: web.Request) -> web.Response:
    """DELETE alerts/rules: back to the config file's rules."""
    settings = request.app[ALERT_SETTINGS]
    await request.app[STORE].delete_setting(RULES_SETTING)
    settings.from_api = None
    return json_response(rules_json(settings.rules(), "config"))


async def list_webhooks(request: web.Request) -> web.Response:
    """GET alerts/webhooks: every destination (URLs shown as their origin only)."""
    return json_response({"items": _webhooks_json(request.app[ALERT_SETTINGS])})


async def add_webhook(request: web.Request) -> web.Response:
    """POST alerts/webhooks {url, format?, name?, chat_id?}: add a destination."""
    body = await read_object(request)
    format_ = body.get("format", "json")
    if format_ == "email":
        raise invalid(
            "format",
            "email webhooks hold SMTP credentials: set them in the settings file's "
            "[[alerts.webhooks]]",
        )
    if format_ not in FORMATS:
        raise invalid("format", f"format must be one of {', '.join(FORMATS)}")
    file_only = sorted(set(body) & FILE_ONLY)
    if file_only:
        raise invalid(file_only[0], f"{file_only[0]} is kept in the settings file only")
    unknown = sorted(set(body) - {"url", "format", "name", "chat_id"})
    if unknown:
        raise invalid(unknown[0], f"unknown field {unknown[0][:40]!r}")
    url = body.get("url")
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL:
        raise invalid("url", f"url is required: an http or https URL of at most {MAX_URL} chars")
    try:
        parsed = URL(url.strip())
    except ValueError:
        raise invalid("url", "url is not a URL") from None
    problem = webhook_url_problem(parsed, format_)
    if problem is not None:
        raise invalid("url", f"url {problem}")
    if "chat_id" in body and format_ != "telegram":
        raise invalid("chat_id", "chat_id applies only to format telegram")
    if format_ == "telegram":
        # Kept in the URL's query, where the Bot API also reads it; the body carries it too.
        chat_id = telegram_chat(body.get("chat_id", parsed.query.get("chat_id")))
        if chat_id is None:
            raise invalid("chat_id", f"chat_id {TELEGRAM_CHAT_HELP}")
        parsed = parsed.update_query(chat_id=chat_id)
        if len(str(parsed)) > MAX_URL:
            raise invalid("url", f"url is longer than {MAX_URL} chars with the chat_id")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 100):
        raise invalid("name", "name must be a string of 1 to 100 characters, or null")
    row, created = await request.app[STORE].add_webhook(str(parsed), format_, name, time.time())
    settings = request.app[ALERT_SETTINGS]
    settings.stored = await request.app[STORE].webhooks()
    answer = webhook_json(row.url, row.format, row.name, webhook_id=row.id, source="api")
    return json_response(answer, status=201 if created else 200)


async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE alerts/webhooks/{id}: remove a destination added through the API."""
    webhook_id = parse_id(request.match_info["id"])
    store = request.app[STORE]
    if webhook_id is None or not await store.delete_webhook(webhook_id):
        raise not_found(f"no webhook with id {request.match_info['id']!r}"[:120])
    request.app[ALERT_SETTINGS].stored = await store.webhooks()
    return web.Response(status=204)


async def send_test(request: web.Request) -> web.Response:
    """POST alerts/test: send a test alert to every webhook now; say how each went."""
    engine = request.app[ALERTS]
    decision = Decision(fired=[test_alert(time.time())])
    rows = await engine.record(decision)
    notification = to_notification(rows[0]) if rows else None
    results: list[WebhookResult] = []
    if notification is not None:
        for hook, error in await request.app[NOTIFIER].send_now(notification):
            results.append(webhook_result_json(hook.url, hook.format, hook.name, error))
    return json_response(
        {"alert": alert_json(rows[0]) if rows else None, "webhooks": results},
    )
