"""The one JSON error shape codexgate answers with, in the upstream's style, and its middleware."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

LOG = logging.getLogger(__name__)

# The error type of each status codexgate's own routes can answer; others are "http_error".
ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    500: "internal_error",
}

# Headers of a converted HTTPException that describe its old body, not the envelope.
_BODY_HEADERS: Final = frozenset(
    name.lower() for name in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING)
)


class ApiError(Exception):
    """A request codexgate refuses; the middleware (or a compat handler) renders it."""

    def __init__(
        self, status: int, error_type: str, message: str, *, field: str | None = None
    ) -> None:
        """Keep what the envelope says; `field` names the offending input of a 400."""
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.field = field


def invalid(field: str, message: str) -> ApiError:
    """A 400 about one input (a query parameter, a body field, or "body" itself)."""
    return ApiError(400, "invalid_request", message, field=field)


def not_found(message: str) -> ApiError:
    """A 404 for an id or a page that does not exist."""
    return ApiError(404, "not_found", message)


def error_envelope(error_type: str, message: str, field: str | None = None) -> dict[str, Any]:
    """`{"error": {"type", "message"[, "field"]}}` as a dict, for answers that add to it."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_body(error_type: str, message: str, field: str | None = None) -> bytes:
    """Serialise `{"error": {"type", "message"}}` the way the upstream writes its errors."""
    return orjson.dumps(error_envelope(error_type, message, field))


def error_response(
    status: int,
    error_type: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    field: str | None = None,
) -> web.Response:
    """A JSON error answer from codexgate itself."""
    return web.Response(
        status=status,
        body=error_body(error_type, message, field),
        content_type="application/json",
        headers=headers,
    )


def api_error_response(exc: ApiError) -> web.Response:
    """The envelope of an ApiError."""
    return error_response(exc.status, exc.error_type, exc.message, field=exc.field)


def _from_http_exception(exc: web.HTTPException) -> web.StreamResponse:
    """The envelope for an HTTPException that a handler or the router raised."""
    if exc.content_type == "application/json":
        return exc  # already an envelope (written with error_body)
    status = exc.status
    error_type = ERROR_TYPES.get(status, "http_error")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"{exc.method} is not allowed here; use {allowed}"
    elif status == 404:
        message = "codexgate has no such page"
    else:
        text = exc.text or ""
        default = f"{status}: {exc.reason}"
        message = text if text and text != default else exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    return error_response(status, error_type, message, headers=headers)


def error_middleware(prefix: str) -> Middleware:
    """Answer every error under /<prefix> with the envelope; proxied paths pass untouched."""
    own = f"/{prefix}"
    own_tree = own + "/"

    @web.middleware
    async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.rel_url.path_safe  # what the router matched on
        if path != own and not path.startswith(own_tree):
            return await handler(request)
        try:
            return await handler(request)
        except ApiError as exc:
            return api_error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects are answers, not errors
            return _from_http_exception(exc)
        except Exception:
            if request.writer.output_size > 0:
                raise  # a stream already started: aiohttp closes the connection
            # The traceback goes to the log; the answer says nothing about the internals.
            LOG.exception("internal error answering %s %s", request.method, path)
            return error_response(
                500, "internal_error", "codexgate: internal error; the server log has the details"
            )

    return envelope
