"""The OpenAPI 3.1 document of codexgate's API, its event feed and the compat routes."""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import hdrs, web

from codexgate import __version__
from codexgate.api.rest import (
    DEFAULT_ACCOUNTS_PAGE,
    DEFAULT_HISTORY_PAGE,
    DEFAULT_REQUESTS_PAGE,
    MAX_NAME,
    MAX_PAGE,
    MAX_TOKEN,
    add_resource,
)
from codexgate.core.text import STALE_AFTER_SECONDS
from codexgate.security import SESSION_COOKIE

Schema = dict[str, Any]

_MAX_ID: Final = 2**63 - 1
_JSON: Final = "application/json"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _null(schema: Schema) -> Schema:
    """schema or null (3.1: a type list, or anyOf for a reference)."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    return {**schema, "type": [kind, "null"]}


def _object(properties: dict[str, Schema], *, description: str | None = None) -> Schema:
    """A closed object whose properties are all present (answers always carry every key)."""
    schema: Schema = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


_STR: Final[Schema] = {"type": "string"}
_NUM: Final[Schema] = {"type": "number"}
_INT: Final[Schema] = {"type": "integer"}
_BOOL: Final[Schema] = {"type": "boolean"}
_ID: Final[Schema] = {"type": "integer", "minimum": 1, "maximum": _MAX_ID}
_UNIX: Final[Schema] = {"type": "number", "description": "unix seconds"}
_ISO: Final[Schema] = {"type": ["string", "null"], "format": "date-time"}
_NAME: Final[Schema] = {
    "type": ["string", "null"],
    "minLength": 1,
    "maxLength": MAX_NAME,
    "description": "display name; null clears it",
}


def _time(name: str, *, nullable: bool = False) -> dict[str, Schema]:
    """`name` in unix seconds and `name_iso` as ISO-8601 UTC."""
    return {
        name: _null(_UNIX) if nullable else _UNIX,
        f"{name}_iso": _ISO,
    }


def _schemas() -> dict[str, Schema]:
    window_fields: dict[str, Schema] = {
        "used_percent": {
            "type": ["number", "null"],
            "description": "null when the upstream did not report it (never 0 for unknown)",
        },
        "window_minutes": _null(_INT),
        **_time("resets_at", nullable=True),
    }
    reset_in: Schema = {
        "type": ["number", "null"],
        "description": "seconds until resets_at, negative once it has passed",
    }
    windows = {label: _null(_ref("LimitWindow")) for label in ("5h", "7d", "monthly")}
    history_windows = {label: _null(_ref("HistoryWindow")) for label in ("5h", "7d", "monthly")}
    spend_fields: dict[str, Schema] = {
        "reached": _null(_BOOL),
        "limit": _null({"type": "string", "description": "amount as the upstream sent it"}),
        "used": _null(_STR),
        "used_percent": _null(_NUM),
        **_time("resets_at", nullable=True),
    }
    error_detail = {
        "type": "object",
        "required": ["type", "message"],
        "properties": {
            "type": {
                "type": "string",
                "description": "invalid_request, unauthorized, csrf_rejected, not_found, "
                "method_not_allowed, request_too_large, internal_error",
            },
            "message": _STR,
            "field": {"type": "string", "description": "the input a 400 is about"},
        },
        "additionalProperties": False,
    }
    request_fields: dict[str, Schema] = {
        "id": _ID,
        **_time("started_at"),
        "account_id": _null(_INT),
        "method": _STR,
        "path": {"type": "string", "description": "without the query string"},
        "transport": {"type": "string", "enum": ["http", "sse", "websocket"]},
        "status": _null(_INT),
        "model": _null(_STR),
        "upstream_request_id": _null(_STR),
        "response_id": _null(_STR),
        "ttfb_ms": _null(_NUM),
        "duration_ms": _null(_NUM),
        "bytes_in": _INT,
        "bytes_out": _INT,
        "input_tokens": _null(_INT),
        "cached_input_tokens": _null(_INT),
        "output_tokens": _null(_INT),
        "reasoning_tokens": _null(_INT),
        "total_tokens": _null(_INT),
        "error_code": _null(_STR),
    }
    compat_usage = _object(
        {
            "key": {"type": "string", "description": "the account id"},
            "name": _null(_STR),
            "email": _null(_STR),
            "plan_type": _null(_STR),
            "five_hour": _null(_ref("Window")),
            "seven_day": _null(_ref("Window")),
            "monthly": _null(_ref("Window")),
            **_time("updated_at", nullable=True),
        }
    )
    compat_token = _object(
        {
            "key": {"type": "string", "description": "the account id"},
            "name": _null(_STR),
            "email": _null(_STR),
            "fingerprint": _null(
                {"type": "string", "description": "first 8 hex characters of the SHA-256"}
            ),
        }
    )
    return {
        "Error": _object({"error": error_detail}, description="codexgate's one error envelope"),
        "CompatError": _object(
            {
                "status": {"type": "string", "enum": ["error", "not_found"]},
                "message": _STR,
                "error": error_detail,
            },
            description="the plan's error shape around the envelope",
        ),
        "Window": _object({**window_fields, "reset_in_seconds": reset_in}),
        "LimitWindow": _object(
            {**window_fields, "reset_in_seconds": reset_in, "forecast": _null(_ref("Forecast"))}
        ),
        "Forecast": _object(
            {
                "status": {
                    "type": "string",
                    "enum": ["insufficient_data", "idle", "runs_out", "lasts"],
                    "description": "runs_out: 100% is reached at the current pace (before the "
                    "reset when runs_out_before_reset_seconds > 0); lasts: it is not; idle: no "
                    "use since the reset; insufficient_data: too few reports to say",
                },
                "rate_per_hour": _null(
                    {"type": "number", "description": "smoothed burn rate, percent per hour"}
                ),
                **_time("exhausts_at", nullable=True),
                "runs_out_before_reset_seconds": _null(_NUM),
                "sustainable_rate_per_hour": _null(
                    {"type": "number", "description": "the rate that would last until the reset"}
                ),
                **_time("since_reset", nullable=True),
                "samples": _INT,
            },
            description="a window's forecast from its history since its last reset",
        ),
        "HistoryWindow": _object(window_fields),
        "Slot": _object(
            {
                "window": _null({"type": "string", "description": "the label it was given"}),
                "classified_by": _null({"type": "string", "enum": ["length", "slot"]}),
                **window_fields,
            }
        ),
        "LimitHit": _object(
            {
                "type": {"type": "string", "description": "usage_limit_reached, ..."},
                **_time("resets_at", nullable=True),
                "reset_in_seconds": reset_in,
            }
        ),
        "HistoryLimitHit": _object(
            {"type": _STR, **_time("resets_at", nullable=True)},
        ),
        "Credits": _object(
            {"has_credits": _null(_BOOL), "unlimited": _null(_BOOL), "balance": _null(_STR)}
        ),
        "SpendControl": _object(
            {**spend_fields, "reset_in_seconds": reset_in, "source": _null(_STR)}
        ),
        "HistorySpendControl": _object({**spend_fields, "source": _null(_STR)}),
        "Limit": _object(
            {
                "limit_id": {"type": "string", "description": "codex, codex_bengalfox, ..."},
                "limit_name": _null(_STR),
                "source": {"type": "string", "enum": ["headers", "event", "usage_body", "error"]},
                **_time("captured_at"),
                **_time("confirmed_at"),
                "age_seconds": {"type": "number", "description": "since confirmed_at"},
                "stale": {
                    "type": "boolean",
                    "description": f"age_seconds > {STALE_AFTER_SECONDS:g}",
                },
                "http_status": _null(_INT),
                "plan_type": _null(_STR),
                "active_limit": _null(_STR),
                "rate_limit_reached_type": _null(_STR),
                "windows": _object(windows),
                "limit_hit": _null(_ref("LimitHit")),
                "credits": _null(_ref("Credits")),
                "spend_control": _null(_ref("SpendControl")),
            },
            description="the newest values of one limit family",
        ),
        "Account": _object(
            {
                "id": _ID,
                "account_key": {
                    "type": "string",
                    "description": "seat:<workspace>:<user>, or token:<first 8 hex of the SHA-256>",
                },
                "display_name": _null(_STR),
                "email": _null(_STR),
                "plan_type": _null(_STR),
                "token_fingerprint": _null(
                    {"type": "string", "maxLength": 8, "description": "start of the SHA-256"}
                ),
                **_time("first_seen_at"),
                **_time("last_seen_at"),
                "limits": {"type": "array", "items": _ref("Limit")},
            }
        ),
        "AccountList": _object(
            {
                "accounts": {"type": "array", "items": _ref("Account")},
                "next_cursor": _null(_STR),
            }
        ),
        "HistoryRow": _object(
            {
                "id": _ID,
                "limit_id": _STR,
                "limit_name": _null(_STR),
                "source": {"type": "string", "enum": ["headers", "event", "usage_body", "error"]},
                **_time("captured_at"),
                **_time("confirmed_at"),
                "http_status": _null(_INT),
                "plan_type": _null(_STR),
                "active_limit": _null(_STR),
                "rate_limit_reached_type": _null(_STR),
                "windows": _object(history_windows),
                "slots": _object(
                    {"primary": _null(_ref("Slot")), "secondary": _null(_ref("Slot"))}
                ),
                "over_secondary_limit_percent": _null(_NUM),
                "limit_hit": _null(_ref("HistoryLimitHit")),
                "credits": _null(_ref("Credits")),
                "spend_control": _null(_ref("HistorySpendControl")),
            },
            description="what one report said about one limit family",
        ),
        "HistoryPage": _object(
            {
                "items": {"type": "array", "items": _ref("HistoryRow")},
                "next_cursor": _null(_STR),
            }
        ),
        "Request": _object(request_fields, description="one proxied request or WebSocket turn"),
        "RequestPage": _object(
            {"items": {"type": "array", "items": _ref("Request")}, "next_cursor": _null(_STR)}
        ),
        "NewAccount": {
            "type": "object",
            "required": ["token"],
            "properties": {
                "name": _NAME,
                "display_name": _NAME,
                "token": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TOKEN,
                    "description": "the seat's bearer token; identifies it, is never stored",
                },
            },
            "additionalProperties": False,
        },
        "AccountUpdate": {
            "type": "object",
            "minProperties": 1,
            "properties": {"display_name": _NAME, "name": _NAME},
            "additionalProperties": False,
        },
        "Alert": _object(
            {
                "id": _ID,
                **_time("at"),
                "kind": {
                    "type": "string",
                    "enum": ["threshold", "limit_hit", "limit_reset", "forecast", "stale", "test"],
                },
                "account_id": _null(_INT),
                "account": _null({"type": "string", "description": "its name when it fired"}),
                "limit_id": _null(_STR),
                "window": _null(_STR),
                "used_percent": _null(_NUM),
                "threshold": _null(_NUM),
                **_time("resets_at", nullable=True),
                **_time("exhausts_at", nullable=True),
                "message": _STR,
            },
            description="an alert that fired",
        ),
        "AlertPage": _object(
            {"items": {"type": "array", "items": _ref("Alert")}, "next_cursor": _null(_STR)}
        ),
        "AlertRules": _object(
            {
                "thresholds": {"type": "array", "items": _NUM},
                "limit_hit": _BOOL,
                "limit_reset": _BOOL,
                "forecast": _BOOL,
                "stale_minutes": _NUM,
                "source": {"type": "string", "enum": ["config", "api"]},
            }
        ),
        "AlertRulesUpdate": {
            "type": "object",
            "properties": {
                "thresholds": {
                    "type": "array",
                    "maxItems": 10,
                    "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                },
                "limit_hit": _BOOL,
                "limit_reset": _BOOL,
                "forecast": _BOOL,
                "stale_minutes": {"type": "number", "minimum": 0, "maximum": 525600},
            },
            "additionalProperties": False,
        },
        "Webhook": _object(
            {
                "id": _null(_INT),
                "name": _null(_STR),
                "format": {"type": "string", "enum": ["json", "slack", "discord"]},
                "url": {"type": "string", "description": "its origin only: the URL is a secret"},
                "source": {"type": "string", "enum": ["config", "api"]},
            }
        ),
        "WebhookList": _object({"items": {"type": "array", "items": _ref("Webhook")}}),
        "NewWebhook": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": 2048},
                "format": {"type": "string", "enum": ["json", "slack", "discord"]},
                "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 100},
            },
            "additionalProperties": False,
        },
        "SessionsEnded": _object(
            {"ended": {"type": "integer", "minimum": 0, "description": "sessions ended"}}
        ),
        "TestAlert": _object(
            {
                "alert": _null(_ref("Alert")),
                "webhooks": {
                    "type": "array",
                    "items": _object(
                        {
                            "name": _null(_STR),
                            "format": _STR,
                            "url": _STR,
                            "ok": _BOOL,
                            "error": _null(_STR),
                        }
                    ),
                },
            }
        ),
        "CompatUsage": compat_usage,
        "CompatUsageList": _object(
            {
                "status": {"const": "success"},
                "data": {"type": "array", "items": _ref("CompatUsage")},
            }
        ),
        "CompatUsageOne": _object({"status": {"const": "success"}, "data": _ref("CompatUsage")}),
        "CompatToken": compat_token,
        "CompatTokenList": _object(
            {
                "status": {"const": "success"},
                "data": {"type": "array", "items": _ref("CompatToken")},
            }
        ),
        "CompatTokenOne": _object({"status": {"const": "success"}, "data": _ref("CompatToken")}),
        "CompatSuccess": _object({"status": {"const": "success"}}),
        "CompatNewToken": {
            "type": "object",
            "required": ["token"],
            "properties": {
                "token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN},
                "name": _NAME,
            },
        },
        "CompatRename": {"type": "object", "required": ["name"], "properties": {"name": _NAME}},
    }


def _error_response(description: str, schema: str = "Error") -> Schema:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


_ERRORS: Final = {
    "BadRequest": ("400", "invalid input; error.field names it"),
    "Unauthorized": ("401", "no valid admin credential"),
    "Forbidden": ("403", "a change without a bearer token from another origin"),
    "NotFound": ("404", "no such id"),
    "MethodNotAllowed": ("405", "another method than the path's; Allow lists them"),
    "RequestTooLarge": ("413", "the body is too large"),
    "InternalError": ("500", "an unexpected error; the server log has the details"),
}
# The compat routes' errors carry the plan's status and message too.
_COMPAT_ERRORS: Final = {
    "CompatBadRequest": ("400", "invalid input; error.field names it"),
    "CompatNotFound": ("404", "no such key"),
}
_STATUS: Final = {name: status for name, (status, _) in (_ERRORS | _COMPAT_ERRORS).items()}


def _responses() -> dict[str, Schema]:
    responses = {name: _error_response(text) for name, (_, text) in _ERRORS.items()}
    responses["MethodNotAllowed"]["headers"] = {
        "Allow": {"schema": _STR, "description": "the methods the path answers"}
    }
    for name, (_, text) in _COMPAT_ERRORS.items():
        responses[name] = _error_response(text, "CompatError")
    return responses


def _ok(schema: str, description: str = "OK") -> Schema:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


def _op(
    summary: str,
    ok: dict[str, Schema],
    errors: tuple[str, ...],
    *,
    parameters: list[Schema] | None = None,
    body: str | None = None,
    operation_id: str,
) -> Schema:
    """One operation: its answers, then the shared error answers it can give."""
    responses: dict[str, Schema] = dict(ok)
    for name in (*errors, "Unauthorized", "InternalError"):
        responses[_STATUS[name]] = {"$ref": f"#/components/responses/{name}"}
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "responses": dict(sorted(responses.items())),
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {_JSON: {"schema": _ref(body)}},
        }
    return operation


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path_id(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": _ID, "description": description}


def _page_parameters(default: int) -> list[Schema]:
    return [
        _query("since", _NUM, "unix seconds; only rows at or after it"),
        _query("until", _NUM, "unix seconds; only rows before it"),
        _query("cursor", _STR, "next_cursor of the previous page"),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": default},
            "rows per page",
        ),
    ]


def document(prefix: str) -> dict[str, Any]:
    """The OpenAPI document for an instance whose admin prefix is `prefix`."""
    api = f"/{prefix}/api/v1"
    compat = f"/{prefix}/codex"
    account_id = _path_id("id", "the account's id")
    token_key = {
        **_path_id("token_key", "the account's id"),
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
    changes = ("BadRequest", "Forbidden", "RequestTooLarge")
    paths: dict[str, Any] = {
        f"{api}/openapi.json": {
            "get": _op(
                "This document",
                {"200": {"description": "OK", "content": {_JSON: {"schema": {"type": "object"}}}}},
                (),
                operation_id="getOpenAPI",
            )
        },
        f"{api}/accounts": {
            "get": _op(
                "Every account with its latest usage, by id (a page of them with limit or cursor)",
                {"200": _ok("AccountList")},
                ("BadRequest",),
                parameters=[
                    _query("cursor", _STR, "next_cursor of the previous page"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                        f"accounts per page ({DEFAULT_ACCOUNTS_PAGE} with a cursor alone); "
                        "without limit and cursor, every account in one answer",
                    ),
                ],
                operation_id="listAccounts",
            ),
            "post": _op(
                "Register a seat by its token (the token is not stored)",
                {
                    "201": {
                        **_ok("Account", "created"),
                        "headers": {
                            "Location": {"schema": _STR, "description": "the new account's URL"}
                        },
                    },
                    "200": _ok("Account", "it existed already"),
                },
                changes,
                body="NewAccount",
                operation_id="createAccount",
            ),
        },
        f"{api}/accounts/{{id}}": {
            "parameters": [account_id],
            "get": _op(
                "One account with its latest usage",
                {"200": _ok("Account")},
                ("NotFound",),
                operation_id="getAccount",
            ),
            "patch": _op(
                "Rename an account",
                {"200": _ok("Account")},
                (*changes, "NotFound"),
                body="AccountUpdate",
                operation_id="updateAccount",
            ),
            "delete": _op(
                "Delete an account with its history and requests",
                {"204": {"description": "deleted"}},
                ("Forbidden", "NotFound"),
                operation_id="deleteAccount",
            ),
        },
        f"{api}/accounts/{{id}}/history": {
            "parameters": [account_id],
            "get": _op(
                "An account's usage history, oldest first",
                {"200": _ok("HistoryPage")},
                ("BadRequest", "NotFound"),
                parameters=[
                    _query(
                        "limit_id", {"type": "string", "minLength": 1, "maxLength": 200}, "family"
                    ),
                    _query(
                        "window",
                        {"type": "string", "enum": ["5h", "7d", "monthly"]},
                        "only rows that reported this window",
                    ),
                    *_page_parameters(DEFAULT_HISTORY_PAGE),
                ],
                operation_id="getAccountHistory",
            ),
        },
        f"{api}/accounts/{{id}}/requests": {
            "parameters": [account_id],
            "get": _op(
                "An account's requests, newest first",
                {"200": _ok("RequestPage")},
                ("BadRequest", "NotFound"),
                parameters=_page_parameters(DEFAULT_REQUESTS_PAGE),
                operation_id="getAccountRequests",
            ),
        },
        f"{api}/requests": {
            "get": _op(
                "Every request, newest first",
                {"200": _ok("RequestPage")},
                ("BadRequest",),
                parameters=[
                    _query("account_id", _ID, "only this account's requests"),
                    *_page_parameters(DEFAULT_REQUESTS_PAGE),
                ],
                operation_id="listRequests",
            ),
        },
        f"{api}/events": {
            "get": _op(
                "Live feed: server-sent events usage, request and account",
                {
                    "200": {
                        "description": "an endless text/event-stream; event ids are store row "
                        "ids, so a reconnect with Last-Event-ID replays what was missed",
                        "content": {"text/event-stream": {"schema": _STR}},
                    }
                },
                (),
                parameters=[
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": _STR,
                        "description": "the id of the last event received",
                    },
                    _query(
                        "last_event_id",
                        _STR,
                        "the same position as Last-Event-ID, for a first connection that cannot "
                        "set the header (a page's EventSource); the header wins",
                    ),
                ],
                operation_id="events",
            )
        },
        f"{api}/alerts": {
            "get": _op(
                "Alerts, newest first",
                {"200": _ok("AlertPage")},
                ("BadRequest",),
                parameters=[
                    _query("account_id", _ID, "only this account's alerts"),
                    _query("cursor", _STR, "next_cursor of the previous page"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
                        "alerts per page",
                    ),
                ],
                operation_id="listAlerts",
            )
        },
        f"{api}/alerts/rules": {
            "get": _op(
                "The alert rules in force", {"200": _ok("AlertRules")}, (), operation_id="getRules"
            ),
            "put": _op(
                "Change alert rules (they win over the config file's until deleted)",
                {"200": _ok("AlertRules")},
                changes,
                body="AlertRulesUpdate",
                operation_id="putRules",
            ),
            "delete": _op(
                "Go back to the config file's alert rules",
                {"200": _ok("AlertRules")},
                ("Forbidden",),
                operation_id="deleteRules",
            ),
        },
        f"{api}/alerts/webhooks": {
            "get": _op(
                "Every webhook alerts go to (URLs as their origin only)",
                {"200": _ok("WebhookList")},
                (),
                operation_id="listWebhooks",
            ),
            "post": _op(
                "Add a webhook",
                {"201": _ok("Webhook", "added"), "200": _ok("Webhook", "it was there already")},
                changes,
                body="NewWebhook",
                operation_id="addWebhook",
            ),
        },
        f"{api}/alerts/webhooks/{{id}}": {
            "parameters": [_path_id("id", "the webhook's id")],
            "delete": _op(
                "Remove a webhook added through the API",
                {"204": {"description": "removed"}},
                ("Forbidden", "NotFound"),
                operation_id="deleteWebhook",
            ),
        },
        f"{api}/sessions": {
            "delete": _op(
                "Sign out everywhere: end every browser session (bearer tokens keep working)",
                {"200": _ok("SessionsEnded")},
                ("Forbidden",),
                operation_id="endSessions",
            )
        },
        f"{api}/alerts/test": {
            "post": _op(
                "Send a test alert to every webhook now, and say how each went",
                {"200": _ok("TestAlert")},
                ("Forbidden",),
                operation_id="sendTestAlert",
            )
        },
        f"{compat}/usage": {
            "get": _op(
                "Compat: every account's codex windows",
                {"200": _ok("CompatUsageList")},
                (),
                operation_id="compatListUsage",
            )
        },
        f"{compat}/usage/{{token_key}}": {
            "parameters": [token_key],
            "get": _op(
                "Compat: one account's codex windows",
                {"200": _ok("CompatUsageOne")},
                ("CompatNotFound",),
                operation_id="compatGetUsage",
            ),
        },
        f"{compat}/tokens": {
            "get": _op(
                "Compat: every account",
                {"200": _ok("CompatTokenList")},
                (),
                operation_id="compatListTokens",
            ),
            "post": _op(
                "Compat: register a seat by its token",
                {"200": _ok("CompatTokenOne")},
                ("CompatBadRequest", "Forbidden", "RequestTooLarge"),
                body="CompatNewToken",
                operation_id="compatAddToken",
            ),
        },
        f"{compat}/tokens/{{token_key}}": {
            "parameters": [token_key],
            "put": _op(
                "Compat: rename",
                {"200": _ok("CompatTokenOne")},
                ("CompatBadRequest", "Forbidden", "RequestTooLarge", "CompatNotFound"),
                body="CompatRename",
                operation_id="compatRenameToken",
            ),
            "delete": _op(
                "Compat: delete with history and requests",
                {"200": _ok("CompatSuccess")},
                ("Forbidden", "CompatNotFound"),
                operation_id="compatDeleteToken",
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "codexgate",
            "version": __version__,
            "description": "codexgate's own API: accounts and their rate-limit windows, usage "
            "history, the request log, a live feed, and the original plan's compat routes. "
            "Times are unix seconds with an ISO-8601 `_iso` twin. Every error is "
            '`{"error": {"type", "message", "field"?}}`; a path answers other methods 405.',
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the admin token"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "the signed-in browser's session; changes need same origin",
                },
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


def add_routes(app: web.Application, prefix: str) -> None:
    """Serve the document at /<prefix>/api/v1/openapi.json (built once, here)."""
    body = orjson.dumps(document(prefix))

    async def openapi_json(request: web.Request) -> web.Response:
        """GET openapi.json."""
        return web.Response(body=body, content_type=_JSON)

    add_resource(app, f"/{prefix}/api/v1/openapi.json", {hdrs.METH_GET: openapi_json})
