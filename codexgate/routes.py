"""The whole URL map: codexgate's own routes under the admin prefix, then the proxy's catch-all.

Order matters: aiohttp tries resources in the order they are added, so every own path comes
before the prefix's 404 catch-all, and that before the proxy's. A JSON path is a resource whose
other methods answer 405 with `Allow` (`add_resource`) rather than falling through.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from codexgate import security
from codexgate.api import (
    accounts,
    admin,
    alerts,
    compat,
    feed,
    history,
    instances,
    openapi,
    refresh,
    requests,
    use_next,
)
from codexgate.api.common import add_resource
from codexgate.dashboard import handlers as dashboard
from codexgate.dashboard import pages
from codexgate.keys import STATIC_VERSION
from codexgate.proxy import relay as proxy
from codexgate.services import metrics

GET, POST, PUT, PATCH, DELETE = (
    hdrs.METH_GET,
    hdrs.METH_POST,
    hdrs.METH_PUT,
    hdrs.METH_PATCH,
    hdrs.METH_DELETE,
)


def add_routes(app: web.Application, prefix: str) -> None:
    """Register every route of an app whose admin prefix is `prefix` (after dashboard setup)."""
    base = f"/{prefix}"
    api = f"{base}/api/v1"
    router = app.router

    # The dashboard's static files: versioned (cacheable for good), and unversioned for pages
    # rendered by the release before this one while it is replaced; the language switch.
    static = pages.static_folder()
    router.add_get(f"{base}/static/{app[STATIC_VERSION]}/{{path:.+}}", pages.static_handler(static))
    router.add_static(f"{base}/static/", static, append_version=False)
    router.add_get(f"{base}/language", pages.choose_language)

    # Signing in and out.
    router.add_get(f"{base}/login", security.login)
    router.add_post(f"{base}/login", security.login)
    router.add_post(f"{base}/logout", security.logout)
    router.add_post(f"{base}/logout/everywhere", security.logout_everywhere)
    add_resource(app, f"{api}/sessions", {DELETE: security.end_sessions})

    # The dashboard's pages and the Prometheus scrape.
    router.add_get(f"{base}/", dashboard.overview)
    router.add_get(f"{base}/codex/dashboard", dashboard.overview)
    router.add_get(f"{base}/accounts/manage", dashboard.manage_page)
    router.add_get(f"{base}/accounts/{{id}}", dashboard.account_page)
    router.add_get(f"{base}/metrics", metrics.scrape)

    # The REST API, the live feed (a stream has no HEAD) and the OpenAPI document.
    add_resource(app, f"{api}/events", {GET: feed.stream_events}, head=False)
    add_resource(app, f"{api}/alerts", {GET: alerts.list_alerts})
    add_resource(
        app,
        f"{api}/alerts/rules",
        {GET: alerts.get_rules, PUT: alerts.put_rules, DELETE: alerts.delete_rules},
    )
    add_resource(
        app, f"{api}/alerts/webhooks", {GET: alerts.list_webhooks, POST: alerts.add_webhook}
    )
    add_resource(app, f"{api}/alerts/webhooks/{{id}}", {DELETE: alerts.delete_webhook})
    add_resource(app, f"{api}/alerts/test", {POST: alerts.send_test})
    router.add_get(f"{base}/healthz", admin.healthz)
    add_resource(
        app, f"{api}/accounts", {GET: accounts.list_accounts, POST: accounts.create_account}
    )
    add_resource(
        app,
        f"{api}/accounts/{{id}}",
        {
            GET: accounts.get_account,
            PATCH: accounts.update_account,
            DELETE: accounts.delete_account,
        },
    )
    add_resource(app, f"{api}/accounts/{{id}}/history", {GET: history.account_history})
    add_resource(app, f"{api}/accounts/{{id}}/refresh", {POST: refresh.refresh_account})
    add_resource(app, f"{api}/use-next", {GET: use_next.get_use_next})
    add_resource(app, f"{api}/accounts/{{id}}/requests", {GET: requests.account_requests})
    add_resource(app, f"{api}/requests", {GET: requests.list_requests})
    add_resource(app, f"{api}/instances", {GET: instances.list_instances})
    add_resource(app, f"{api}/openapi.json", {GET: openapi.handler(prefix)})

    # The original plan's routes.
    add_resource(app, f"{base}/codex/usage", {GET: compat.list_usage})
    add_resource(app, f"{base}/codex/usage/{{token_key}}", {GET: compat.get_usage})
    add_resource(app, f"{base}/codex/tokens", {GET: compat.list_tokens, POST: compat.add_token})
    add_resource(
        app,
        f"{base}/codex/tokens/{{token_key}}",
        {PUT: compat.rename_token, DELETE: compat.delete_token},
    )

    # Anything else under the prefix is never proxied.
    router.add_route("*", base, admin.not_found)
    router.add_route("*", f"{base}/{{tail:.*}}", admin.not_found)
    # (?s): a path whose decoded form holds a newline (%0A) still reaches the proxy's rules.
    router.add_route("*", "/{tail:(?s:.*)}", proxy.forward)
