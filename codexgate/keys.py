"""Every typed key under which the app and its responses keep shared objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import ClientSession, web

if TYPE_CHECKING:
    from codexgate.capture.headers import IdentityCache, RateLimitHeaderParser
    from codexgate.capture.observe import Exchange
    from codexgate.config import Config
    from codexgate.dashboard.pages import Templates
    from codexgate.listener import Connections
    from codexgate.security import AdminAuth
    from codexgate.services.accounts import Accounts
    from codexgate.services.alerts import AlertEngine, AlertSettings
    from codexgate.services.feed import EventBus, FeedOptions
    from codexgate.services.forecasts import ForecastCache
    from codexgate.services.instances import Coordinator, InstanceOptions
    from codexgate.services.metrics import Metrics
    from codexgate.services.notify import Notifier
    from codexgate.services.recorder import Recorder
    from codexgate.services.refresh import IdleRefresh, RefreshOptions
    from codexgate.services.retention import Retention, RetentionOptions
    from codexgate.storage.interface import Storage

CONFIG: Final[web.AppKey[Config]] = web.AppKey("config")
STORE: Final[web.AppKey[Storage]] = web.AppKey("store")
UPSTREAM_SESSION: Final = web.AppKey("upstream_session", ClientSession)
# WebSocket upgrades use their own session: no idle timeout, and a trace that keeps handshakes.
UPSTREAM_WS_SESSION: Final = web.AppKey("upstream_ws_session", ClientSession)
RECORDER: Final[web.AppKey[Recorder]] = web.AppKey("recorder")
IDENTITIES: Final[web.AppKey[IdentityCache]] = web.AppKey("identities")
RATE_LIMIT_HEADERS: Final[web.AppKey[RateLimitHeaderParser]] = web.AppKey("rate_limit_headers")
# The live feed's bus (set by its cleanup context); FEED_OPTIONS, when set before the app starts,
# overrides the feed's defaults (queue size, ping interval: tests make them small).
EVENT_BUS: Final[web.AppKey[EventBus]] = web.AppKey("event_bus")
FEED_OPTIONS: Final[web.AppKey[FeedOptions]] = web.AppKey("feed_options")
# Creates, renames and deletes accounts by hand, then wakes the feed and the alerts.
ACCOUNTS: Final[web.AppKey[Accounts]] = web.AppKey("accounts")
# The retention task (set by its cleanup context); RETENTION_OPTIONS, when set before the app
# starts, overrides its defaults (first delay, interval, batch size: tests make them small).
RETENTION: Final[web.AppKey[Retention]] = web.AppKey("retention")
RETENTION_OPTIONS: Final[web.AppKey[RetentionOptions]] = web.AppKey("retention_options")
# The content hash of the static files, put in their URL so that a browser never runs a stale copy.
STATIC_VERSION: Final[web.AppKey[str]] = web.AppKey("static_version", str)
# The page templates (jinja2 is loaded with the first page).
TEMPLATES: Final[web.AppKey[Templates]] = web.AppKey("templates")
# Every account's window forecasts, kept current from the usage rows (shared by all readers).
FORECASTS: Final[web.AppKey[ForecastCache]] = web.AppKey("forecasts")
# Alerting: the rules and webhooks in force, and the engine that fires the rules.
ALERT_SETTINGS: Final[web.AppKey[AlertSettings]] = web.AppKey("alert_settings")
ALERTS: Final[web.AppKey[AlertEngine]] = web.AppKey("alerts")
# The admin credential (token hash, sessions, failure throttle, Host names) set up at start.
ADMIN_AUTH: Final[web.AppKey[AdminAuth]] = web.AppKey("admin_auth")
# The app's own Prometheus registry and traffic metrics (set by metrics.metrics_ctx).
METRICS: Final[web.AppKey[Metrics]] = web.AppKey("metrics")
# Delivers alerts to the configured webhooks (set by its cleanup context).
NOTIFIER: Final[web.AppKey[Notifier]] = web.AppKey("notifier")
# Client connections: caps, head deadline, counters (enforced by listener.Listener in serve()).
CONNECTIONS: Final[web.AppKey[Connections]] = web.AppKey("connections")

# The idle refresh (--refresh-idle), set by its cleanup context only when it is on; it keeps the
# accepted tokens in memory. REFRESH_OPTIONS, when set before the app starts, overrides its
# defaults (interval, tick, clock: tests make them small).
REFRESH: Final[web.AppKey[IdleRefresh]] = web.AppKey("refresh")
REFRESH_OPTIONS: Final[web.AppKey[RefreshOptions]] = web.AppKey("refresh_options")

# Set by the proxy on the responses it relays; the capture signal reads only those.
PROXIED: Final[web.ResponseKey[Exchange]] = web.ResponseKey("proxied")
# This instance among those sharing the database, and whether it does the singleton work.
INSTANCE: Final[web.AppKey[Coordinator]] = web.AppKey("instance")
INSTANCE_OPTIONS: Final[web.AppKey[InstanceOptions]] = web.AppKey("instance_options")
