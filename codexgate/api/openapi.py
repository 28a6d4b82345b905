"""The OpenAPI 3.1 document of codexgate's API, its event feed and the compat routes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, UnionType
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

import orjson
from aiohttp import web

from codexgate import __version__
from codexgate.api import schemas
from codexgate.api.accounts import DEFAULT_ACCOUNTS_PAGE
from codexgate.api.common import MAX_PAGE, Handler
from codexgate.api.history import DEFAULT_HISTORY_PAGE
from codexgate.api.requests import DEFAULT_REQUESTS_PAGE
from codexgate.api.schemas import Doc
from codexgate.api.use_next import MAX_ORDERED
from codexgate.core.accounts import MAX_ACCOUNT_ID, MAX_NAME, MAX_TOKEN
from codexgate.security import SESSION_COOKIE

Schema = dict[str, Any]

_MAX_ID: Final = 2**63 - 1
_JSON: Final = "application/json"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


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
_BOOL: Final[Schema] = {"type": "boolean"}
_ID: Final[Schema] = {"type": "integer", "minimum": 1, "maximum": _MAX_ID}
_NAME: Final[Schema] = {
    "type": ["string", "null"],
    "minLength": 1,
    "maxLength": MAX_NAME,
    "description": "display name; null clears it",
}


# -- components generated from the typed shapes ------------------------------------------------

_SIMPLE: Final[Mapping[object, str]] = MappingProxyType(
    {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
)


def _json_schema(hint: object, components: dict[str, Schema]) -> Schema:
    """The JSON Schema of a type of api/schemas.py; a TypedDict becomes a reference."""
    if hint is None:
        hint = type(None)
    origin = get_origin(hint)
    if origin is Annotated:
        base, *extras = get_args(hint)
        schema = _json_schema(base, components)
        for extra in extras:
            if isinstance(extra, Doc):
                if "$ref" in schema:  # 3.1 allows siblings of $ref, but keep the ref alone
                    schema = {"allOf": [schema]}
                schema = {**schema, **extra.keywords}
                if extra.text is not None:
                    schema["description"] = extra.text
        return schema
    if isinstance(hint, type) and is_typeddict(hint):
        _component(hint, components)
        return _ref(hint.__name__)
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if origin is Literal:
        values = list(get_args(hint))
        return {"type": "string", "enum": values}
    if origin in (Union, UnionType):
        members = [_json_schema(arg, components) for arg in get_args(hint)]
        if all(set(member) <= {"type", "enum"} for member in members):
            # Plain types (and enums) merge into one schema: {"type": ["string", "null"]}.
            kinds: list[object] = []
            for member in members:
                kind = member["type"]
                kinds += kind if isinstance(kind, list) else [kind]
            merged: Schema = {"type": kinds}
            enums = [member["enum"] for member in members if "enum" in member]
            if enums:
                merged["enum"] = [value for enum in enums for value in enum]
                if "null" in kinds:
                    merged["enum"].append(None)
            return merged
        return {"anyOf": members}
    if origin is list:
        (item,) = get_args(hint)
        return {"type": "array", "items": _json_schema(item, components)}
    if origin is dict:
        key, value = get_args(hint)
        if key is not str:
            raise TypeError(f"JSON object keys are strings, not {key!r}")
        return {"type": "object", "additionalProperties": _json_schema(value, components)}
    raise TypeError(f"no JSON Schema for {hint!r}")


def _component(shape: type, components: dict[str, Schema]) -> None:
    """Add a TypedDict (and every TypedDict it holds) to components, by its name."""
    name = shape.__name__
    if name in components:
        return
    components[name] = {}  # taken: a shape that holds itself refers to it
    hints = get_type_hints(shape, include_extras=True)
    properties = {field: _json_schema(hint, components) for field, hint in hints.items()}
    description = (shape.__doc__ or "").strip().split("\n")[0] or None
    if description is not None and description.startswith(f"{name}("):
        description = None  # the functional syntax's generated docstring says nothing
    components[name] = _object(properties, description=description)


def generated_components() -> dict[str, Schema]:
    """The components of every JSON shape in api/schemas.py that codexgate answers or sends."""
    components: dict[str, Schema] = {}
    for shape in SHAPES:
        _component(shape, components)
    return components


# The roots: every other shape is reached from one of them.
SHAPES: Final[tuple[type, ...]] = (
    schemas.AccountList,
    schemas.Account,
    schemas.RefreshResult,
    schemas.UseNext,
    schemas.HistoryPage,
    schemas.RequestPage,
    schemas.AlertPage,
    schemas.AlertRules,
    schemas.WebhookList,
    schemas.TestAlert,
    schemas.SessionsEnded,
    schemas.InstanceList,
    schemas.CompatUsage,
    schemas.CompatToken,
    schemas.UsageEvent,
    schemas.AccountEvent,
)


def _schemas() -> dict[str, Schema]:
    error_detail = {
        "type": "object",
        "required": ["type", "message"],
        "properties": {
            "type": {
                "type": "string",
                "description": "invalid_request, unauthorized, csrf_rejected, not_found, "
                "method_not_allowed, request_too_large, unsupported_media_type, "
                "misdirected_request, too_many_failures, too_many_subscribers, refresh_off, "
                "no_token, too_soon, internal_error",
            },
            "message": _STR,
            "field": {"type": "string", "description": "the input a 400 is about"},
        },
        "additionalProperties": False,
    }
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
        **generated_components(),
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
                "account_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ACCOUNT_ID,
                    "description": "the ChatGPT-Account-ID clients send with this token "
                    "(tokens.account_id in the Codex CLI's auth.json); optional",
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
        "NewWebhook": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": 2048},
                "format": {
                    "type": "string",
                    "enum": [
                        "json",
                        "slack",
                        "discord",
                        "telegram",
                        "feishu",
                        "dingtalk",
                        "wecom",
                        "ntfy",
                    ],
                },
                "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 100},
                "chat_id": {
                    "type": ["string", "integer"],
                    "description": "telegram only: the chat's number or a channel's @username",
                },
            },
            "additionalProperties": False,
        },
        "CompatUsageList": _object(
            {
                "status": {"const": "success"},
                "data": {"type": "array", "items": _ref("CompatUsage")},
            }
        ),
        "CompatUsageOne": _object({"status": {"const": "success"}, "data": _ref("CompatUsage")}),
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
    "UnsupportedMediaType": (
        "415",
        "a change with a body that is not declared as JSON and no bearer token",
    ),
    "MisdirectedRequest": ("421", "a Host name codexgate does not answer to"),
    "TooManyFailures": (
        "429",
        "too many refused credentials from this address lately; Retry-After says how long",
    ),
    "RefreshConflict": (
        "409",
        "refresh_off: --refresh-idle is off; no_token: no unexpired token of the account is at "
        "hand",
    ),
    "RefreshTooSoon": (
        "429",
        "the account was refreshed by hand moments ago; Retry-After says when to try again",
    ),
    "InternalError": ("500", "an unexpected error; the server log has the details"),
    "TooManySubscribers": (
        "503",
        "the live feed has --max-feed-subscribers streams open; Retry-After says when to retry",
    ),
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
    retry_after = {"schema": _STR, "description": "seconds to wait before trying again"}
    for name in ("TooManyFailures", "TooManySubscribers", "RefreshTooSoon"):
        responses[name]["headers"] = {"Retry-After": retry_after}
    for name, (_, text) in _COMPAT_ERRORS.items():
        responses[name] = _error_response(text, "CompatError")
    return responses


# What the guard in front of every path under the prefix may answer (security.auth_middleware):
# an unknown Host name, an address that keeps failing, and a change whose body is not JSON.
_GUARD: Final = ("MisdirectedRequest", "TooManyFailures")
_CHANGES: Final = frozenset({"post", "put", "patch", "delete"})


def _guarded(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation with the guard's answers added."""
    for item in paths.values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            names = (*_GUARD, "UnsupportedMediaType") if method in _CHANGES else _GUARD
            responses = operation["responses"]
            for name in names:
                responses[_STATUS[name]] = {"$ref": f"#/components/responses/{name}"}
            operation["responses"] = dict(sorted(responses.items()))
    return paths


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
        f"{api}/accounts/{{id}}/refresh": {
            "parameters": [account_id],
            "post": _op(
                "Refresh now: ask the upstream for the account's usage with the token kept from "
                "its traffic (--refresh-idle); the usage is recorded like any report",
                {"200": _ok("RefreshResult")},
                ("Forbidden", "NotFound", "RefreshConflict", "RefreshTooSoon"),
                operation_id="refreshAccount",
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
        f"{api}/use-next": {
            "get": _op(
                "The account to use now: the most room left across its windows, never one at "
                "its limit (nulls when none may be used)",
                {"200": _ok("UseNext")},
                ("BadRequest",),
                parameters=[
                    _query(
                        "accounts",
                        {
                            "type": "string",
                            "pattern": f"^([0-9]+(,[0-9]+){{0,{MAX_ORDERED - 1}}})?$",
                        },
                        f"up to {MAX_ORDERED} account ids, comma-separated: the answer's `order` "
                        'lists those that exist in the "most left" order',
                    )
                ],
                operation_id="getUseNext",
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
        f"{api}/instances": {
            "get": _op(
                "The codexgate instances sharing the database: which are alive (a heartbeat "
                "every 2 s), and which one does the singleton work",
                {"200": _ok("InstanceList")},
                (),
                operation_id="listInstances",
            )
        },
        f"{api}/events": {
            "get": _op(
                "Live feed: server-sent events usage, request, account and alert",
                {
                    "200": {
                        "description": "an endless text/event-stream; event ids are store row "
                        "ids, so a reconnect with Last-Event-ID replays what was missed. Each "
                        "event's data is one line of JSON: usage a UsageEvent (its row a "
                        "HistoryRow), request a Request, alert an Alert, account an "
                        "AccountEvent",
                        "content": {"text/event-stream": {"schema": _STR}},
                    }
                },
                ("TooManySubscribers",),
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
        "paths": _guarded(paths),
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


def handler(prefix: str) -> Handler:
    """The handler of GET /<prefix>/api/v1/openapi.json (the document is built once, here)."""
    body = orjson.dumps(document(prefix))

    async def openapi_json(request: web.Request) -> web.Response:
        """GET openapi.json."""
        return web.Response(body=body, content_type=_JSON)

    return openapi_json
