"""codexgate's own routes under the admin prefix: health, and the 404 for anything unknown."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
from aiohttp import web

from codexgate import __version__
from codexgate.api.errors import error_response
from codexgate.core.text import iso
from codexgate.keys import (
    ALERTS,
    CONFIG,
    CONNECTIONS,
    EVENT_BUS,
    INSTANCE,
    NOTIFIER,
    RECORDER,
    REFRESH,
    RETENTION,
)


async def healthz(request: web.Request) -> web.Response:
    """Liveness and the state of the monitoring: the proxy works even when this says degraded."""
    config = request.app[CONFIG]
    stats = request.app[RECORDER].stats()
    body = {
        "status": "ok" if stats.db_state == "ok" else "degraded",
        "version": __version__,
        # No upstream origin: healthz answers anyone, and it may name an internal host:port.
        "capture": config.capture,
        "websocket": config.websocket,
        # Every open connection and background job is one task: a count that keeps growing
        # while traffic does not is a leak (the reliability suite watches it).
        "tasks": len(asyncio.all_tasks()),
        "instance": _instance(request.app),
        "db": {
            "state": stats.db_state,
            "last_error": stats.last_error,
            "failing_since": iso(stats.failing_since),
            "failed_writes": stats.failed_writes,
        },
        "queue": {"depth": stats.queue_depth, "capacity": stats.queue_capacity},
        "snapshots": {
            "recorded": stats.recorded,
            "dropped": stats.dropped,
            "coalesced": stats.coalesced,
            "unattributed": stats.unattributed,
        },
        "requests": {"logged": stats.requests_logged, "dropped": stats.requests_dropped},
        "accounts": {"max": config.max_accounts, "refused": stats.accounts_refused},
        "alerts": _alerts(request.app),
        "notifier": _notifier(request.app),
        "retention": _retention(request.app),
        "connections": _connections(request.app),
        "feed": _feed(request.app),
        "refresh": _refresh(request.app),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _instance(app: web.Application) -> dict[str, object]:
    """Which instance answered, its role in the singleton work, and when the database last took
    its heartbeat. The hostname names this machine, so that behind a balancer one can tell which
    answered; never the database's URL."""
    coordinator = app[INSTANCE]
    lease = coordinator.lease
    return {
        "id": coordinator.id,
        "hostname": coordinator.hostname,
        "pid": coordinator.pid,
        "role": coordinator.role,
        "leader": None if lease is None else lease.holder,
        "started_at": iso(coordinator.started_at),
        "db_seen_at": iso(coordinator.db_seen_at),
        "takeovers": coordinator.takeovers,
    }


def _alerts(app: web.Application) -> dict[str, object] | None:
    """The alert engine's counters; None when the app runs no engine."""
    engine = app.get(ALERTS)
    if engine is None:
        return None
    stats = engine.stats
    return {
        "fired": stats.fired,
        "evaluated_rows": stats.evaluated_rows,
        "failures": stats.failures,
        "last_error": stats.last_error,
        "last_error_at": iso(stats.last_error_at),
    }


def _notifier(app: web.Application) -> dict[str, object] | None:
    """Webhook delivery counters; None when the app runs no notifier."""
    notifier = app.get(NOTIFIER)
    if notifier is None:
        return None
    stats = notifier.stats()
    return {
        "queued": stats.queued,
        "sent": stats.sent,
        "failed": stats.failed,
        "dropped": stats.dropped,
        "retries": stats.retries,
        "last_error": stats.last_error,
        "last_error_at": iso(stats.last_error_at),
        "last_sent_at": iso(stats.last_sent_at),
    }


def _connections(app: web.Application) -> dict[str, object] | None:
    """Client connections and their caps; None when the app is not behind codexgate's listener."""
    connections = app[CONNECTIONS]
    if not connections.listening:
        return None
    return dataclasses.asdict(connections.stats())


def _feed(app: web.Application) -> dict[str, object]:
    """The live feed's streams, and the events it framed once each for all of them."""
    bus = app[EVENT_BUS]
    return {
        "subscribers": bus.subscribers,
        "max_subscribers": bus.max_subscribers,
        "refused": bus.refused,
        "published": bus.published,
        "dropped": bus.dropped,
    }


def _refresh(app: web.Application) -> dict[str, object]:
    """The idle refresh's counters (--refresh-idle); never a token."""
    refresh = app.get(REFRESH)
    if refresh is None:
        return {"enabled": False}
    stats = refresh.stats()
    return {
        "enabled": True,
        "after_minutes": stats.interval_seconds / 60.0,
        "tracked_tokens": stats.tracked,
        "in_flight": stats.in_flight,
        "ok": stats.ok,
        "failed": stats.failed,
        "stopped_accounts": stats.stopped,
    }


def _retention(app: web.Application) -> dict[str, object]:
    """The retention task's settings and counters since start."""
    config = app[CONFIG]
    stats = app[RETENTION].stats()
    return {
        "history_days": config.history_retention_days,
        "request_days": config.request_retention_days,
        "downsample": config.downsample_history,
        "last_run_at": iso(stats.last_run_at),
        "last_run_seconds": stats.last_run_seconds,
        "history_pruned": stats.history_pruned,
        "requests_pruned": stats.requests_pruned,
        "downsampled": stats.downsampled,
        "errors": stats.errors,
        "last_error": stats.last_error,
    }


async def not_found(request: web.Request) -> web.Response:
    """Paths under the admin prefix are never proxied; unknown ones answer 404 here."""
    return error_response(404, "not_found", f"codexgate has no page at {request.path}")
