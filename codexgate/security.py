"""The admin credential, sign-in, the auth middleware and the security headers of own answers.

The admin token is stored only as its SHA-256 (setting `admin_token_sha256`). A browser signs in
once with the token and then carries a session cookie signed with a key kept in the database
(setting `cookie_key`); the signature covers the token's hash, so setting a new token ends every
session. Scripts send `Authorization: Bearer <admin token>`. Cookie-authenticated requests that
change state must come from codexgate's own origin. Prometheus may instead send the separate
metrics token (setting `metrics_token`), which opens `GET /<prefix>/metrics` and nothing else.
Proxied paths are never looked at here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from . import pages
from .errors import error_response
from .keys import ADMIN_AUTH, CONFIG, STORE

if TYPE_CHECKING:
    from .config import Config
    from .store import Store

log = logging.getLogger(__name__)

TOKEN_SETTING: Final = "admin_token_sha256"  # noqa: S105 - a setting name, not a secret
COOKIE_KEY_SETTING: Final = "cookie_key"
SESSION_COOKIE: Final = "codexgate_session"
# What a Cookie header holds when it carries the session; a cheap test before any parsing.
SESSION_COOKIE_MARK: Final = SESSION_COOKIE + "="
SESSION_MAX_AGE: Final = 30 * 24 * 3600
# Methods that cannot change state; every other one needs the origin check with a cookie.
SAFE_METHODS: Final = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})
WWW_AUTHENTICATE: Final = 'Bearer realm="codexgate"'

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Added to every answer codexgate gives itself, never to a relayed one. A handler that sets one
# of these (an SSE feed its own Cache-Control) keeps its value.
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # the login URL carries the token in its query
    ("X-Frame-Options", "DENY"),
)
NO_STORE: Final = ("Cache-Control", "no-store")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of an admin token, the only form in which it is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class AdminAuth:
    """The admin credential as loaded at start."""

    # None only under --no-auth when no token was ever set; then nothing matches it.
    token_sha256: str | None
    cookie_key: bytes
    enabled: bool = True
    # The metrics token's hash (setting metrics_token): it opens GET /<prefix>/metrics only.
    metrics_token_sha256: str | None = None

    def token_matches(self, token: str) -> bool:
        """Whether `token` is the admin token, compared in constant time."""
        if self.token_sha256 is None:
            return False
        return hmac.compare_digest(hash_token(token).encode(), self.token_sha256.encode())

    def metrics_token_matches(self, token: str) -> bool:
        """Whether `token` is the metrics token, compared in constant time."""
        if self.metrics_token_sha256 is None:
            return False
        return hmac.compare_digest(hash_token(token).encode(), self.metrics_token_sha256.encode())

    def session_value(self, expires: int) -> str:
        """The session cookie's value: `<expiry unix>.<hmac>`."""
        return f"{expires}.{self._signature(str(expires))}"

    def session_valid(self, value: str, now: float) -> bool:
        """Whether a session cookie is unexpired and signed for the current token."""
        if self.token_sha256 is None:
            return False
        expires, dot, signature = value.partition(".")
        if not dot or not (0 < len(expires) <= 12 and expires.isascii() and expires.isdigit()):
            return False
        if int(expires) <= now:
            return False
        expected = self._signature(expires).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))

    def _signature(self, expires: str) -> str:
        message = f"{expires}.{self.token_sha256}".encode()
        return hmac.new(self.cookie_key, message, hashlib.sha256).hexdigest()


async def _admin_token_sha256(config: Config, store: Store) -> str | None:
    """Store the configured token's hash, or generate a token on first start and log it once."""
    if config.admin_token is not None:
        digest = hash_token(config.admin_token)
        previous = await store.get_setting(TOKEN_SETTING)
        await store.set_setting(TOKEN_SETTING, digest)
        if previous is not None and previous != digest:
            log.info("admin token replaced from --admin-token; earlier sessions have ended")
        return digest
    if config.no_auth:
        # Nobody needs a token now; one is made (and shown) on the first start with auth.
        return await store.get_setting(TOKEN_SETTING)
    token = secrets.token_urlsafe(32)
    digest = hash_token(token)
    stored = await store.set_setting_if_absent(TOKEN_SETTING, digest)
    if stored == digest:
        log.warning(
            "admin login (shown only this once; codexgate keeps only a hash of the token): "
            "%s/%s/login?token=%s ; to set a new token later, start with --admin-token TOKEN "
            "(or CODEXGATE_ADMIN_TOKEN)",
            config.public_base,
            config.admin_prefix,
            token,
        )
    else:
        log.info(
            "an admin token is set (only its hash is stored); to set a new one, start with "
            "--admin-token TOKEN (or CODEXGATE_ADMIN_TOKEN)"
        )
    return stored


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load (or create) the admin token's hash and the cookie key; runs after the store's."""
    config = app[CONFIG]
    store = app[STORE]
    token_sha256 = await _admin_token_sha256(config, store)
    cookie_key = await store.set_setting_if_absent(COOKIE_KEY_SETTING, secrets.token_hex(32))
    app[ADMIN_AUTH] = AdminAuth(
        token_sha256=token_sha256,
        cookie_key=cookie_key.encode(),
        enabled=not config.no_auth,
        metrics_token_sha256=hash_token(config.metrics_token) if config.metrics_token else None,
    )
    if config.no_auth:
        log.warning(
            "AUTHENTICATION IS OFF (--no-auth): anyone who can reach %s/%s/ can read and change "
            "codexgate's accounts and usage. Use it only on a machine nobody else uses.",
            config.public_base,
            config.admin_prefix,
        )
    yield


def strip_admin_cookie(cookie_header: str) -> str | None:
    """A Cookie header without codexgate's session cookie; None when no other cookie remains."""
    if SESSION_COOKIE_MARK not in cookie_header:
        return cookie_header
    kept = [
        pair.strip()
        for pair in cookie_header.split(";")
        if pair.strip() and pair.split("=", 1)[0].strip() != SESSION_COOKIE
    ]
    return "; ".join(kept) or None


def _same_origin(request: web.Request) -> bool:
    """Whether Origin (or, without it, Referer's origin) is this request's own origin."""
    own = f"{request.scheme}://{request.host}".lower()
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        referer = request.headers.get(hdrs.REFERER)
        if referer is None:
            return False
        try:
            url = URL(referer)
        except ValueError:
            return False
        if not url.absolute or not url.host:
            return False
        origin = f"{url.scheme}://{url.host_port_subcomponent}"
    return origin.strip().lower() == own


def _unauthorized(message: str) -> web.Response:
    return error_response(
        401, "unauthorized", message, headers={hdrs.WWW_AUTHENTICATE: WWW_AUTHENTICATE}
    )


def _refusal(
    request: web.Request, auth: AdminAuth, prefix: str, *, metrics_scrape: bool
) -> web.Response | None:
    """None when the request carries a valid credential (a scrape: or the metrics token)."""
    authorization = request.headers.get(hdrs.AUTHORIZATION)
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            # No origin check: a browser never adds this header to a cross-site request.
            token = token.strip()
            if auth.token_matches(token):
                return None
            if metrics_scrape and auth.metrics_token_matches(token):
                return None
            return _unauthorized("the admin token is not valid")
    session = request.cookies.get(SESSION_COOKIE)
    if session is None:
        return _unauthorized(
            f"sign in at /{prefix}/login, or send Authorization: Bearer <admin token>"
        )
    if not auth.session_valid(session, time.time()):
        return _unauthorized(f"the session has ended; sign in again at /{prefix}/login")
    if request.method not in SAFE_METHODS and not _same_origin(request):
        return error_response(
            403,
            "csrf_rejected",
            "a signed-in browser request that changes something must come from this origin",
        )
    return None


def auth_middleware(prefix: str) -> Middleware:
    """The middleware that guards every path under /<prefix>/ but healthz, login, language and
    static/; a browser opening a page without a session is sent to sign in first."""
    own = f"/{prefix}"
    under = f"{own}/"
    # The language switch only sets a cookie; the sign-in page has one too.
    open_paths = frozenset({f"{under}healthz", f"{under}login", f"{under}language"})
    static = f"{under}static/"
    metrics = f"{under}metrics"  # the one path the metrics token opens

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        # request.path is decoded, so it covers every path the router gives an own handler.
        path = request.path
        if not path.startswith(own):  # the proxy's path: one string test and out
            return await handler(request)
        if (path != own and not path.startswith(under)) or path in open_paths:
            return await handler(request)
        if path.startswith(static):
            return await handler(request)
        auth = request.app[ADMIN_AUTH]
        if auth.enabled:
            scrape = path == metrics and request.method in SAFE_METHODS
            refusal = _refusal(request, auth, prefix, metrics_scrape=scrape)
            if refusal is not None:
                if refusal.status == 401 and _page_navigation(request):
                    return _see_other(f"{under}login?next={quote(request.path_qs, safe='/')}")
                return refusal
        return await handler(request)

    return authenticate


def _page_navigation(request: web.Request) -> bool:
    """A browser opening a page (not a script calling the API): it is sent to sign in."""
    return request.method == hdrs.METH_GET and "text/html" in request.headers.get(hdrs.ACCEPT, "")


ResponseSignal = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def security_headers(prefix: str, own_error_header: str) -> ResponseSignal:
    """The on_response_prepare handler adding SECURITY_HEADERS to codexgate's own answers.

    Own answers are those under the prefix and the proxy's own error answers, which carry
    `own_error_header`; relayed answers keep exactly the upstream's headers.
    """
    own = f"/{prefix}"
    under = f"{own}/"
    static = f"{under}static/"

    async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
        path = request.rel_url.path_safe  # what the router matched on
        if not (path == own or path.startswith(under) or own_error_header in response.headers):
            return
        headers = response.headers
        for name, value in SECURITY_HEADERS:
            headers.setdefault(name, value)
        if not path.startswith(static):  # static files may be cached; API and pages never
            headers.setdefault(*NO_STORE)

    return add_security_headers


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={hdrs.LOCATION: location})


async def login(request: web.Request) -> web.Response:
    """Sign in with `token` (query or form): set the session cookie, or show the form."""
    prefix = request.app[CONFIG].admin_prefix
    auth = request.app[ADMIN_AUTH]
    token: str | None
    next_field: object = request.query.get("next")
    if request.method == hdrs.METH_POST:
        form = await request.post()
        field = form.get("token")
        token = field if isinstance(field, str) else None
        next_field = form.get("next", next_field)
    else:
        token = request.query.get("token")
    next_path = pages.local_path(next_field if isinstance(next_field, str) else None, prefix)
    if not auth.enabled:
        return _see_other(next_path)
    if not token:
        return pages.login_page(request, rejected=False, next_path=next_path)
    if not auth.token_matches(token):
        rejected = pages.login_page(request, rejected=True, next_path=next_path)
        rejected.headers[hdrs.WWW_AUTHENTICATE] = WWW_AUTHENTICATE
        return rejected
    response = _see_other(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        auth.session_value(int(time.time()) + SESSION_MAX_AGE),
        max_age=SESSION_MAX_AGE,
        path=f"/{prefix}",
        httponly=True,
        samesite="Strict",
        secure=request.secure or None,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """End the browser's session: the cookie is cleared, and the sign-in page follows."""
    prefix = request.app[CONFIG].admin_prefix
    response = _see_other(f"/{prefix}/login")
    response.del_cookie(
        SESSION_COOKIE,
        path=f"/{prefix}",
        httponly=True,
        samesite="Strict",
        secure=request.secure or None,
    )
    return response


def add_routes(app: web.Application, prefix: str) -> None:
    """Register sign-in and sign-out; before the admin catch-all."""
    app.router.add_get(f"/{prefix}/login", login)
    app.router.add_post(f"/{prefix}/login", login)
    app.router.add_post(f"/{prefix}/logout", logout)
