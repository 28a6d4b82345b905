"""codexgate's own routes under the admin prefix: health, and a 404 for anything unknown."""

from __future__ import annotations

import orjson
from aiohttp import web

from . import __version__, api, compat, openapi
from .errors import error_response
from .keys import CONFIG, RECORDER


async def healthz(request: web.Request) -> web.Response:
    """Liveness and the state of the monitoring: the proxy works even when this says degraded."""
    config = request.app[CONFIG]
    stats = request.app[RECORDER].stats()
    body = {
        "status": "ok" if stats.db_state == "ok" else "degraded",
        "version": __version__,
        "upstream": str(config.upstream),
        "capture": config.capture,
        "websocket": config.websocket,
        "db": {"state": stats.db_state, "last_error": stats.last_error},
        "queue": {"depth": stats.queue_depth, "capacity": stats.queue_capacity},
        "snapshots": {
            "recorded": stats.recorded,
            "dropped": stats.dropped,
            "unattributed": stats.unattributed,
        },
        "requests": {"logged": stats.requests_logged, "dropped": stats.requests_dropped},
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def not_found(request: web.Request) -> web.Response:
    """Paths under the admin prefix are never proxied; unknown ones answer 404 here."""
    return error_response(404, "not_found", f"codexgate has no page at {request.path}")


def add_routes(app: web.Application, prefix: str) -> None:
    """Register the admin routes; they must come before the proxy's catch-all."""
    app.router.add_get(f"/{prefix}/healthz", healthz)
    api.add_routes(app, prefix)
    openapi.add_routes(app, prefix)
    compat.add_routes(app, prefix)
    app.router.add_route("*", f"/{prefix}", not_found)
    app.router.add_route("*", f"/{prefix}/{{tail:.*}}", not_found)
