"""The admin credential, sessions, the auth middleware and the security headers of own answers.

The admin token is stored only as its SHA-256 (setting `admin_token_sha256`). A browser signs in
once with the token and then carries a session cookie holding a random id; the database keeps
only the id's SHA-256 (table `sessions`), so reading the file is not enough to sign in. Signing
out ends the session; "sign out everywhere" and a new admin token end them all. Scripts send
`Authorization: Bearer <admin token>`. Prometheus may instead send the separate metrics token
(setting `metrics_token`), which opens `GET /<prefix>/metrics` and nothing else.

Under the prefix, with or without auth: only known Host names are served (against DNS
rebinding); a request that changes something without a bearer token must come from codexgate's
own origin (or --public-url's) and, on the JSON API, carry JSON; an address whose credentials
keep failing is answered 429 for a while. Proxied paths are never looked at here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from codexgate.api.common import json_response
from codexgate.api.errors import error_response
from codexgate.core.sanitize import escape_unsafe
from codexgate.dashboard import pages
from codexgate.keys import ADMIN_AUTH, CONFIG, STORE

if TYPE_CHECKING:
    from codexgate.config import Config
    from codexgate.storage.interface import Storage

log = logging.getLogger(__name__)

# codexgate's own credentials: the admin token, and the metrics token that only scrapes.
TokenKind = Literal["admin", "metrics"]
TOKEN_SETTING: Final = "admin_token_sha256"  # noqa: S105 - a setting name, not a secret
SESSION_COOKIE: Final = "codexgate_session"
# What a Cookie header holds when it carries the session; a cheap test before any parsing.
SESSION_COOKIE_MARK: Final = SESSION_COOKIE + "="
SESSION_MAX_AGE: Final = 30 * 24 * 3600
SESSION_ID_BYTES: Final = 32
# secrets.token_urlsafe(SESSION_ID_BYTES): anything else is refused before any lookup.
_SESSION_VALUE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
# A session this instance knows is looked up again after this long, so that a sign-out made
# by another process sharing the database takes effect here too; this instance's own are at once.
SESSION_RECHECK_SECONDS: Final = 30.0
SESSION_TOUCH_SECONDS: Final = 60.0  # last_used_at is written at most this often per session
MAX_SESSIONS: Final = 1000  # a new sign-in beyond it ends the oldest session
MAX_CACHED_SESSIONS: Final = 1024

# Refused credentials: after FAILURE_LIMIT within FAILURE_WINDOW from one address, that address
# gets 429 for FIRST_BLOCK seconds, doubling on each new block up to MAX_BLOCK.
FAILURE_LIMIT: Final = 5
FAILURE_WINDOW: Final = 60.0
FIRST_BLOCK: Final = 15.0
MAX_BLOCK: Final = 300.0
MAX_TRACKED_ADDRESSES: Final = 4096

# Methods that cannot change state; every other one needs the origin check without a bearer.
SAFE_METHODS: Final = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})
WWW_AUTHENTICATE: Final = 'Bearer realm="codexgate"'
JSON_TYPE: Final = "application/json"

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Added to every answer codexgate gives itself, never to a relayed one. A handler that sets one
# of these (an SSE feed its own Cache-Control) keeps its value.
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    # The login URL carries the token in its query: never to another site. Not "no-referrer":
    # with it, browsers send `Origin: null` on the pages' own form posts, and those are refused.
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
)
NO_STORE: Final = ("Cache-Control", "no-store")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of an admin token, the only form in which it is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class _Known:
    """A session this instance has looked up."""

    expires_at: float
    checked_at: float
    touched_at: float


class Sessions:
    """Server-side sessions: the cookie holds a random id, the store only its SHA-256."""

    def __init__(
        self,
        store: Storage,
        *,
        max_age: float = SESSION_MAX_AGE,
        recheck_seconds: float = SESSION_RECHECK_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Sessions kept in `store`, each valid for `max_age` seconds."""
        self._store = store
        self._max_age = max_age
        self._recheck = recheck_seconds
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._endings = 0  # counts sign-outs, so that a lookup racing one is not cached

    async def create(self) -> str:
        """Start a session; the cookie value, which is never stored."""
        value = secrets.token_urlsafe(SESSION_ID_BYTES)
        digest = hash_token(value)
        now = self._clock()
        await self._store.create_session(digest, now, now + self._max_age, keep=MAX_SESSIONS)
        self._remember(digest, _Known(now + self._max_age, now, now))
        return value

    async def valid(self, value: str) -> bool:
        """Whether `value` is the cookie of a session that has neither ended nor expired."""
        if not _SESSION_VALUE.fullmatch(value):
            return False
        digest = hash_token(value)
        now = self._clock()
        known = self._known.get(digest)
        if known is None or now - known.checked_at >= self._recheck:
            endings = self._endings
            row = await self._store.session(digest)
            if row is None or row.expires_at <= now:
                self._known.pop(digest, None)
                return False
            known = _Known(row.expires_at, now, row.last_used_at)
            if endings != self._endings:
                return False  # signed out while we looked: it may be the one that ended
            self._remember(digest, known)
        if known.expires_at <= now:
            self._known.pop(digest, None)
            return False
        if now - known.touched_at >= SESSION_TOUCH_SECONDS:
            known.touched_at = now
            await self._store.touch_session(digest, now)
        return True

    async def end(self, value: str) -> bool:
        """End the session whose cookie is `value`; whether there was one."""
        if not _SESSION_VALUE.fullmatch(value):
            return False
        digest = hash_token(value)
        self._endings += 1
        self._known.pop(digest, None)
        return await self._store.delete_session(digest)

    async def end_all(self) -> int:
        """End every session; how many there were."""
        self._endings += 1
        self._known.clear()
        return await self._store.delete_sessions()

    def _remember(self, digest: str, known: _Known) -> None:
        self._known.pop(digest, None)
        while len(self._known) >= MAX_CACHED_SESSIONS:
            del self._known[next(iter(self._known))]  # the oldest lookup goes first
        self._known[digest] = known


@dataclass(slots=True)
class _Strikes:
    """Refused credentials from one address."""

    window_start: float
    failures: int = 0
    blocked_until: float = 0.0
    blocks: int = 0
    last_failure: float = 0.0
    logged_at: float = -math.inf
    unlogged: int = 0


class FailureThrottle:
    """Per client address: after too many refused credentials in a minute, 429 for a while."""

    def __init__(
        self,
        *,
        limit: int = FAILURE_LIMIT,
        window: float = FAILURE_WINDOW,
        first_block: float = FIRST_BLOCK,
        max_block: float = MAX_BLOCK,
        capacity: int = MAX_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A throttle with these limits; memory is bounded by `capacity` addresses."""
        self._limit = limit
        self._window = window
        self._first_block = first_block
        self._max_block = max_block
        self._capacity = capacity
        self._clock = clock
        self._by_address: dict[str, _Strikes] = {}

    def __len__(self) -> int:
        """How many addresses are tracked."""
        return len(self._by_address)

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until `address` may try again, or None when it is not blocked."""
        strikes = self._by_address.get(_address_key(address))
        if strikes is None:
            return None
        left = strikes.blocked_until - self._clock()
        return math.ceil(left) if left > 0 else None

    def failed(self, address: str | None) -> None:
        """Count one refused credential from `address`, block it at the limit, log it."""
        key = _address_key(address)
        now = self._clock()
        strikes = self._by_address.pop(key, None)
        if strikes is None:
            while len(self._by_address) >= self._capacity:
                del self._by_address[next(iter(self._by_address))]
            strikes = _Strikes(window_start=now)
        self._by_address[key] = strikes  # the most recent last: the oldest is evicted first
        if now - strikes.last_failure > 2 * self._max_block:
            strikes.blocks = 0  # quiet for long enough: the back-off starts over
        if now - strikes.window_start >= self._window:
            strikes.window_start, strikes.failures = now, 0
        strikes.failures += 1
        strikes.unlogged += 1
        strikes.last_failure = now
        if strikes.failures >= self._limit:
            strikes.blocks += 1
            block = self._first_block * 2 ** min(strikes.blocks - 1, 16)
            strikes.blocked_until = now + min(self._max_block, block)
            strikes.window_start, strikes.failures = now, 0
        if now - strikes.logged_at >= self._window:
            log.warning(
                "refused %d admin credential(s) (sign-in, bearer token or session cookie) from %s "
                "since the last such line%s",
                strikes.unlogged,
                escape_unsafe(key),
                "; answering 429 for now" if strikes.blocked_until > now else "",
            )
            strikes.logged_at, strikes.unlogged = now, 0

    def succeeded(self, address: str | None) -> None:
        """A valid credential from `address`: forget its failures."""
        if self._by_address:
            self._by_address.pop(_address_key(address), None)


def _address_key(address: str | None) -> str:
    """What failures are counted by: the address, or an IPv6 address's /64 (one subscriber)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def host_name(header: str) -> str:
    """The name in a Host header: no port, brackets or final dot, in lower case."""
    host = header.strip()
    if host.startswith("["):
        end = host.find("]")
        name = host[1:end] if end > 0 else host[1:]
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    else:
        name = host
    return name.rstrip(".").lower()


def known_hosts(config: Config) -> frozenset[str]:
    """The names, besides IP literals and localhost, that codexgate answers to under the prefix."""
    names: set[str] = set()
    machine = socket.gethostname().rstrip(".").lower()  # from the kernel: no lookup, no wait
    if machine:
        short = machine.partition(".")[0]
        names.update({machine, short, f"{short}.local"})
    names.add(host_name(config.host))
    if config.public_url is not None and config.public_url.host:
        names.add(host_name(config.public_url.host))
    names.discard("")
    return frozenset(names)


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    """Whether a request with this Host header may be served under the prefix.

    A DNS-rebinding page always reaches codexgate by a name of its own, never by an address, so
    every IP literal is safe; so are loopback names and codexgate's own names. A request with
    no Host at all (HTTP/1.0) names nothing to rebind.
    """
    if header is None:
        return True
    name = host_name(header)
    if name in names or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_of(text: str) -> str | None:
    """The `scheme://host[:port]` of an http(s) URL in lower case, or None for anything else."""
    try:
        url = URL(text.strip())
    except ValueError:
        return None
    if not url.absolute or not url.host or url.scheme not in ("http", "https"):
        return None
    return f"{url.scheme}://{url.host_port_subcomponent}".lower()


@dataclass(frozen=True, slots=True)
class AdminAuth:
    """The admin credential as loaded at start, and the state that guards it."""

    # None only under --no-auth when no token was ever set; then nothing matches it.
    token_sha256: str | None
    sessions: Sessions
    enabled: bool = True
    # The metrics token's hash (setting metrics_token): it opens GET /<prefix>/metrics only.
    metrics_token_sha256: str | None = None
    # Host names served under the prefix besides IP literals and localhost (known_hosts).
    hosts: frozenset[str] = frozenset()
    # --public-url's origin: browsers behind a TLS proxy send it as their Origin.
    public_origin: str | None = None
    throttle: FailureThrottle = field(default_factory=FailureThrottle)

    def identify(self, token: str) -> TokenKind | None:
        """Which of codexgate's tokens `token` is, if any: hashed once, compared in constant
        time against both."""
        if self.token_sha256 is None and self.metrics_token_sha256 is None:
            return None
        digest = hash_token(token).encode()
        admin = self.token_sha256 is not None and hmac.compare_digest(
            digest, self.token_sha256.encode()
        )
        metrics = self.metrics_token_sha256 is not None and hmac.compare_digest(
            digest, self.metrics_token_sha256.encode()
        )
        return "admin" if admin else "metrics" if metrics else None

    def token_matches(self, token: str) -> bool:
        """Whether `token` is the admin token."""
        return self.identify(token) == "admin"


def new_admin_token() -> str:
    """A fresh admin token (32 random bytes, URL-safe) that a command line cannot take for an
    option: `--token -Ab…` would be read as another flag, so none starts with "-"."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


async def _admin_token_sha256(config: Config, store: Storage) -> str | None:
    """Store the configured token's hash, or generate a token on first start and log it once."""
    base = str(config.public_url).rstrip("/") if config.public_url else config.public_base
    if config.admin_token is not None:
        digest = hash_token(config.admin_token)
        previous = await store.get_setting(TOKEN_SETTING)
        await store.set_setting(TOKEN_SETTING, digest)
        if previous is not None and previous != digest:
            ended = await store.delete_sessions()
            log.info("admin token replaced from --admin-token; %d earlier session(s) ended", ended)
        return digest
    if config.no_auth:
        # Nobody needs a token now; one is made (and shown) on the first start with auth.
        return await store.get_setting(TOKEN_SETTING)
    token = new_admin_token()
    digest = hash_token(token)
    stored = await store.set_setting_if_absent(TOKEN_SETTING, digest)
    if stored == digest:
        log.warning(
            "admin login (shown only this once; codexgate keeps only a hash of the token): "
            "%s/%s/login?token=%s ; to set a new token later, start with CODEXGATE_ADMIN_TOKEN "
            "(or admin_token in the settings file; a flag would show in ps)",
            base,
            config.admin_prefix,
            token,
        )
    else:
        log.info(
            "an admin token is set (only its hash is stored); to set a new one, start with "
            "CODEXGATE_ADMIN_TOKEN (or admin_token in the settings file)"
        )
    return stored


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load (or create) the admin token's hash and set up sessions; runs after the store's."""
    config = app[CONFIG]
    store = app[STORE]
    token_sha256 = await _admin_token_sha256(config, store)
    app[ADMIN_AUTH] = AdminAuth(
        token_sha256=token_sha256,
        sessions=Sessions(store),
        enabled=not config.no_auth,
        metrics_token_sha256=hash_token(config.metrics_token) if config.metrics_token else None,
        hosts=known_hosts(config),
        public_origin=origin_of(str(config.public_url)) if config.public_url else None,
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


def _origin_verdict(request: web.Request, public_origin: str | None) -> bool | None:
    """Whether Origin (or, without it, Referer's origin) is codexgate's own; None without both."""
    sent = request.headers.get(hdrs.ORIGIN)
    if sent is None:
        sent = request.headers.get(hdrs.REFERER)
        if sent is None:
            return None
    origin = origin_of(sent)
    if origin is None:  # "null", a relative or non-web URL
        return False
    if origin == public_origin:
        return True
    host = request.headers.get(hdrs.HOST)
    if host is None:
        return False
    if public_origin is not None and host_name(host) == URL(public_origin).host:
        return False  # the public name is reached over --public-url's scheme only
    return origin == origin_of(f"{request.scheme}://{host}")


def _cross_origin_refusal(
    request: web.Request, auth: AdminAuth, *, strict: bool
) -> web.Response | None:
    """403 for a change from another origin; `strict` also refuses one that names no origin."""
    if request.method in SAFE_METHODS:
        return None
    verdict = _origin_verdict(request, auth.public_origin)
    if verdict is True or (verdict is None and not strict):
        return None
    return error_response(
        403,
        "csrf_rejected",
        "a browser request that changes something must come from codexgate's own origin "
        "(behind a reverse proxy: start codexgate with --public-url)",
    )


def _media_type_refusal(request: web.Request, json_paths: tuple[str, ...]) -> web.Response | None:
    """415 for a change on the JSON API whose body is not declared as JSON."""
    if request.method in SAFE_METHODS or not request.path.startswith(json_paths):
        return None
    if hdrs.CONTENT_TYPE not in request.headers and not request.body_exists:
        return None
    if request.content_type == JSON_TYPE:
        return None
    # A page on another site can send text/plain or a form without asking; never JSON.
    return error_response(
        415, "unsupported_media_type", "send the body as JSON, with Content-Type: application/json"
    )


def _unauthorized(message: str) -> web.Response:
    return error_response(
        401, "unauthorized", message, headers={hdrs.WWW_AUTHENTICATE: WWW_AUTHENTICATE}
    )


def too_many_failures(retry_after: int) -> web.Response:
    """429 for an address whose credentials kept failing."""
    return error_response(
        429,
        "too_many_failures",
        f"too many refused credentials from this address; try again in {retry_after} s",
        headers={hdrs.RETRY_AFTER: str(retry_after)},
    )


def _misdirected() -> web.Response:
    return error_response(
        421,
        "misdirected_request",
        "codexgate does not answer to this Host name here (a page on another site may be "
        "trying DNS rebinding); if people reach codexgate at this name, start it with "
        "--public-url https://<that name>",
    )


async def _refusal(
    request: web.Request, auth: AdminAuth, prefix: str, *, metrics_scrape: bool
) -> web.Response | None:
    """None when the request carries a valid credential (a scrape: or the metrics token)."""
    bearer: str | None = None
    authorization = request.headers.get(hdrs.AUTHORIZATION)
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            bearer = token.strip()
    session = request.cookies.get(SESSION_COOKIE) if bearer is None else None
    if bearer is None and session is None:
        return _unauthorized(
            f"sign in at /{prefix}/login, or send Authorization: Bearer <admin token>"
        )
    address = request.remote
    retry_after = auth.throttle.retry_after(address)
    if retry_after is not None:
        # Checked before the credential, or a blocked guesser would still learn the right one.
        return too_many_failures(retry_after)
    if bearer is not None:
        # No origin check: a browser never adds this header to a cross-site request.
        kind = auth.identify(bearer)
        if kind == "admin" or (metrics_scrape and kind == "metrics"):
            auth.throttle.succeeded(address)
            return None
        if kind is None:  # the metrics token on the wrong path is no guess
            auth.throttle.failed(address)
        return _unauthorized("the admin token is not valid")
    if session is None or not await auth.sessions.valid(session):
        auth.throttle.failed(address)
        return _unauthorized(f"the session has ended; sign in again at /{prefix}/login")
    auth.throttle.succeeded(address)
    return _cross_origin_refusal(request, auth, strict=True)


def auth_middleware(prefix: str) -> Middleware:
    """The middleware that guards every path under /<prefix>/ but healthz, login, language and
    static/; a browser opening a page without a session is sent to sign in first."""
    own = f"/{prefix}"
    under = f"{own}/"
    healthz = f"{under}healthz"  # load balancers probe it by any name: open to every Host
    login_path = f"{under}login"
    # The language switch only sets a cookie; the sign-in page has one too.
    open_paths = frozenset({login_path, f"{under}language"})
    static = f"{under}static/"
    metrics = f"{under}metrics"  # the one path the metrics token opens
    json_paths = (f"{under}api/", f"{under}codex/")

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        # request.path is decoded, so it covers every path the router gives an own handler.
        path = request.path
        if not path.startswith(own):  # the proxy's path: one string test and out
            return await handler(request)
        if (path != own and not path.startswith(under)) or path == healthz:
            return await handler(request)
        auth = request.app[ADMIN_AUTH]
        if not host_allowed(request.headers.get(hdrs.HOST), auth.hosts):
            return _misdirected()
        if path in open_paths or path.startswith(static):
            if path == login_path:
                # Signing in needs the token, so a missing Origin is let through (scripts).
                cross = _cross_origin_refusal(request, auth, strict=False)
                if cross is not None:
                    return cross
            return await handler(request)
        bearer = _has_bearer(request)
        refusal: web.Response | None = None
        if auth.enabled:
            scrape = path == metrics and request.method in SAFE_METHODS
            refusal = await _refusal(request, auth, prefix, metrics_scrape=scrape)
        elif not bearer:
            # Without auth, a request that names no origin is not from a page (curl, the CLI).
            refusal = _cross_origin_refusal(request, auth, strict=False)
        if refusal is None and not bearer:
            refusal = _media_type_refusal(request, json_paths)
        if refusal is not None:
            if refusal.status == 401 and _page_navigation(request):
                return _see_other(f"{under}login?next={quote(request.path_qs, safe='/')}")
            return refusal
        return await handler(request)

    return authenticate


def _has_bearer(request: web.Request) -> bool:
    """Whether the request sends a bearer token: another site's page cannot add one unasked."""
    return request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")[0].lower() == "bearer"


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
        field_ = form.get("token")
        token = field_ if isinstance(field_, str) else None
        next_field = form.get("next", next_field)
    else:
        token = request.query.get("token")
    next_path = pages.local_path(next_field if isinstance(next_field, str) else None, prefix)
    if not auth.enabled:
        return _see_other(next_path)
    if not token:
        return pages.login_page(request, rejected=False, next_path=next_path)
    address = request.remote
    retry_after = auth.throttle.retry_after(address)
    if retry_after is not None:
        return pages.login_page(
            request, rejected=False, next_path=next_path, retry_after=retry_after
        )
    if not auth.token_matches(token):
        auth.throttle.failed(address)
        rejected = pages.login_page(request, rejected=True, next_path=next_path)
        rejected.headers[hdrs.WWW_AUTHENTICATE] = WWW_AUTHENTICATE
        return rejected
    auth.throttle.succeeded(address)
    response = _see_other(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        await auth.sessions.create(),
        max_age=SESSION_MAX_AGE,
        path=f"/{prefix}",
        httponly=True,
        samesite="Strict",
        secure=pages.secure_cookies(request),
    )
    return response


def _signed_out(request: web.Request) -> web.Response:
    """The answer to a sign-out: the cookie is cleared, and the sign-in page follows."""
    prefix = request.app[CONFIG].admin_prefix
    response = _see_other(f"/{prefix}/login")
    response.del_cookie(
        SESSION_COOKIE,
        path=f"/{prefix}",
        httponly=True,
        samesite="Strict",
        secure=pages.secure_cookies(request),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """End this browser's session, here and in the database."""
    session = request.cookies.get(SESSION_COOKIE)
    if session is not None:
        await request.app[ADMIN_AUTH].sessions.end(session)
    return _signed_out(request)


async def logout_everywhere(request: web.Request) -> web.Response:
    """End every session, this browser's included."""
    ended = await request.app[ADMIN_AUTH].sessions.end_all()
    log.info("signed out everywhere: %d session(s) ended", ended)
    return _signed_out(request)


async def end_sessions(request: web.Request) -> web.Response:
    """DELETE api/v1/sessions: end every browser session; bearer tokens keep working."""
    ended = await request.app[ADMIN_AUTH].sessions.end_all()
    log.info("every session ended through the API: %d session(s)", ended)
    return json_response({"ended": ended})
