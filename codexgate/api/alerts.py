"""Alerting in the app: its rules and webhooks (config file, changed through the API), the engine
and the notifier as one cleanup context, and the API routes under api/v1/alerts.

Rules set through the API are kept in the `settings` table and win over the config file's until
they are deleted (DELETE alerts/rules). Webhooks come from both: the config file's are listed
read-only, those added through the API are stored. A webhook URL is a secret and is only ever
shown as its origin.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any, Final, cast

import orjson
from aiohttp import web
from yarl import URL

from codexgate.api.errors import ApiError, invalid, not_found
from codexgate.api.rest import (
    Handler,
    decode_cursor,
    encode_cursor,
    json_response,
    parse_id,
    parse_limit,
    query_one,
    read_object,
)
from codexgate.config import AlertConfig
from codexgate.core.rows import AlertRow, WebhookRow
from codexgate.core.text import iso
from codexgate.keys import ALERT_SETTINGS, ALERTS, CONFIG, FORECASTS, NOTIFIER, RECORDER, STORE
from codexgate.services import notify
from codexgate.services.alerts import AlertEngine, Decision, test_alert
from codexgate.storage.sqlite.store import Store

log = logging.getLogger(__name__)

RULES_SETTING: Final = "alert_rules"
FORMATS: Final = ("json", "slack", "discord")
DEFAULT_ALERTS_PAGE: Final = 50
MAX_URL: Final = 2048
_RULE_FIELDS: Final = ("thresholds", "limit_hit", "limit_reset", "forecast", "stale_minutes")


class AlertSettings:
    """The rules in force and every webhook, for the engine, the notifier and the API."""

    def __init__(
        self, from_file: AlertConfig, from_api: AlertConfig | None, stored: Sequence[WebhookRow]
    ) -> None:
        self.from_file = from_file
        self.from_api = from_api
        self.stored = list(stored)

    def rules(self) -> AlertConfig:
        """The rules in force: those set through the API, else the config file's."""
        return self.from_api or self.from_file

    def webhooks(self) -> list[notify.Webhook]:
        """Every destination: the config file's, then those added through the API."""
        return [
            notify.Webhook(str(hook.url), hook.format, hook.name)
            for hook in self.from_file.webhooks
        ] + [
            notify.Webhook(row.url, cast(notify.WebhookFormat, row.format), row.name)
            for row in self.stored
        ]


def rules_json(rules: AlertConfig, source: str) -> dict[str, Any]:
    """The rules as the API shows them."""
    return {
        "thresholds": list(rules.thresholds),
        "limit_hit": rules.limit_hit,
        "limit_reset": rules.limit_reset,
        "forecast": rules.forecast,
        "stale_minutes": rules.stale_minutes,
        "source": source,
    }


def alert_json(row: AlertRow) -> dict[str, Any]:
    """One alert as the API shows it (the feed sends the row as it is)."""
    return {
        **asdict(row),
        "at_iso": iso(row.at),
        "resets_at_iso": iso(row.resets_at),
        "exhausts_at_iso": iso(row.exhausts_at),
    }


def to_notification(row: AlertRow) -> notify.Alert:
    """A stored alert as the notifier delivers it."""
    return notify.Alert(
        kind=row.kind,
        at=row.at,
        account_id=row.account_id,
        account=row.account,
        limit_id=row.limit_id,
        window=row.window,
        used_percent=row.used_percent,
        threshold=row.threshold,
        resets_at=row.resets_at,
        exhausts_at=row.exhausts_at,
        message=row.message,
        id=row.id,
    )


def _stored_rules(raw: str | None, base: AlertConfig) -> AlertConfig | None:
    """The rules stored through the API: unknown fields ignored; damaged ones, the file's."""
    if raw is None:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        log.warning("stored alert rules are not a JSON object: the settings file's rules apply")
        return None
    unknown = sorted(set(body) - set(_RULE_FIELDS))
    if unknown:
        # Written by a newer codexgate: the fields this one knows still apply.
        log.warning(
            "stored alert rules: ignoring unknown field(s) %s",
            ", ".join(repr(name[:40]) for name in unknown[:10]),
        )
    try:
        return _rules_from({k: v for k, v in body.items() if k in _RULE_FIELDS}, base)
    except ApiError as error:
        log.warning("stored alert rules: %s; the settings file's rules apply", error)
        return None


def _rules_from(body: Mapping[str, Any], base: AlertConfig) -> AlertConfig:
    """Rules from a JSON object: the given fields over `base`; a bad field is a 400."""
    unknown = sorted(set(body) - set(_RULE_FIELDS))
    if unknown:
        raise invalid(unknown[0], f"unknown field {unknown[0][:40]!r}")
    changes: dict[str, Any] = {}
    if "thresholds" in body:
        values = body["thresholds"]
        if not isinstance(values, list) or len(values) > 10:
            raise invalid("thresholds", "thresholds must be a list of at most 10 percents")
        checked = []
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid("thresholds", "each threshold must be a number")
            if not (math.isfinite(value) and 0 < value <= 100):
                raise invalid("thresholds", "each threshold must be above 0 and at most 100")
            checked.append(float(value))
        changes["thresholds"] = tuple(sorted(set(checked)))
    for name in ("limit_hit", "limit_reset", "forecast"):
        if name in body:
            if not isinstance(body[name], bool):
                raise invalid(name, f"{name} must be true or false")
            changes[name] = body[name]
    if "stale_minutes" in body:
        value = body["stale_minutes"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= 525_600
        ):
            raise invalid("stale_minutes", "stale_minutes must be 0 (off) to 525600")
        changes["stale_minutes"] = float(value)
    return replace(base, webhooks=(), **changes)


def webhook_json(
    url: str, format_: str, name: str | None, *, webhook_id: int | None, source: str
) -> dict[str, Any]:
    """A webhook as the API shows it: never its whole URL."""
    return {
        "id": webhook_id,
        "name": name,
        "format": format_,
        "url": notify.redact_url(url),
        "source": source,
    }


def _webhooks_json(settings: AlertSettings) -> list[dict[str, Any]]:
    from_file = [
        webhook_json(str(h.url), h.format, h.name, webhook_id=None, source="config")
        for h in settings.from_file.webhooks
    ]
    stored = [
        webhook_json(r.url, r.format, r.name, webhook_id=r.id, source="api")
        for r in settings.stored
    ]
    return from_file + stored


# -- the cleanup context ------------------------------------------------------------------------


async def load_settings(store: Store, from_file: AlertConfig) -> AlertSettings:
    """The alert settings as the config file and the database say."""
    from_api = _stored_rules(await store.get_setting(RULES_SETTING), from_file)
    return AlertSettings(from_file, from_api, await store.webhooks())


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: settings, notifier and engine; after the recorder, before the feed."""
    store = app[STORE]
    settings = await load_settings(store, app[CONFIG].alerts)
    app[ALERT_SETTINGS] = settings
    session = notify.new_session()
    notifier = notify.Notifier(session, settings.webhooks)
    notifier.start()
    app[NOTIFIER] = notifier
    engine = AlertEngine(store, app[FORECASTS], settings.rules)

    def deliver(rows: Sequence[AlertRow]) -> None:
        for row in rows:
            if row.kind != "test":  # a test alert is sent by its own request, at once
                notifier.submit(to_notification(row))

    engine.listeners.append(deliver)
    await engine.start()
    app[ALERTS] = engine
    recorder = app[RECORDER]
    recorder.on_commit.append(engine.committed)
    try:
        yield
    finally:
        recorder.on_commit.remove(engine.committed)
        await engine.stop()
        await notifier.stop()
        await session.close()


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
    rules = _rules_from(await read_object(request), settings.rules())
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
    """POST alerts/webhooks {url, format?, name?}: add a destination."""
    body = await read_object(request)
    unknown = sorted(set(body) - {"url", "format", "name"})
    if unknown:
        raise invalid(unknown[0], f"unknown field {unknown[0][:40]!r}")
    url = body.get("url")
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL:
        raise invalid("url", f"url is required: an http or https URL of at most {MAX_URL} chars")
    try:
        parsed = URL(url.strip())
    except ValueError:
        raise invalid("url", "url is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise invalid("url", "url must be an http:// or https:// URL")
    format_ = body.get("format", "json")
    if format_ not in FORMATS:
        raise invalid("format", f"format must be one of {', '.join(FORMATS)}")
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
    results: list[dict[str, Any]] = []
    if notification is not None:
        for hook, error in await request.app[NOTIFIER].send_now(notification):
            results.append(
                {
                    **webhook_json(hook.url, hook.format, hook.name, webhook_id=None, source=""),
                    "ok": error is None,
                    "error": error,
                }
            )
    for result in results:
        del result["id"], result["source"]
    return json_response(
        {"alert": alert_json(rows[0]) if rows else None, "webhooks": results},
    )


def routes(prefix: str) -> Sequence[tuple[str, Mapping[str, Handler]]]:
    """The alert paths and their handlers by method."""
    base = f"/{prefix}/api/v1/alerts"
    return (
        (base, {"GET": list_alerts}),
        (f"{base}/rules", {"GET": get_rules, "PUT": put_rules, "DELETE": delete_rules}),
        (f"{base}/webhooks", {"GET": list_webhooks, "POST": add_webhook}),
        (f"{base}/webhooks/{{id}}", {"DELETE": delete_webhook}),
        (f"{base}/test", {"POST": send_test}),
    )
