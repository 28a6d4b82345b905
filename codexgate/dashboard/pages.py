"""Server-rendered pages: the template environment, the page's language, and rendering.

Templates live in web/templates and autoescape everything; static files in web/static are served
under /<prefix>/static/<hash>/, the hash of every static file together, with a long cache life: a
new release is never mixed with a cached old script, and the page script's modules, which import
each other by relative URL, always come from one release.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import hdrs, web
from yarl import URL

from codexgate import __version__
from codexgate.core.text import iso, percent_number
from codexgate.dashboard import i18n
from codexgate.dashboard.charts import tick_lines
from codexgate.keys import CONFIG, STATIC_VERSION, TEMPLATES
from codexgate.paths import web_dir

if TYPE_CHECKING:
    import jinja2

LANG_COOKIE_MAX_AGE: Final = 365 * 24 * 3600
# A versioned static file never changes: browsers may keep it for a year without asking again.
STATIC_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"


class Templates:
    """The page templates, from the first page on.

    jinja2 (2 MB of a process that only relays) is imported, and its environment built, when a
    page is first rendered.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._environment: jinja2.Environment | None = None

    def environment(self) -> jinja2.Environment:
        """The template environment, built on the first call."""
        if self._environment is None:
            import jinja2

            environment = jinja2.Environment(
                loader=jinja2.FileSystemLoader(self._folder),
                autoescape=True,
                undefined=jinja2.StrictUndefined,  # a misspelt name fails a test, not a page
                trim_blocks=True,
                lstrip_blocks=True,
            )
            environment.filters.update(
                utc=utc_text,
                iso=iso,
                percent=percent_number,
                remaining=remaining,
                bar_width=bar_width,
                tick_lines=tick_lines,
            )
            self._environment = environment
        return self._environment

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """The page `name` with `context`."""
        return self.environment().get_template(name).render(context)


def setup(app: web.Application) -> None:
    """Install the templates and the static files' version (before the app starts)."""
    app[TEMPLATES] = Templates(web_dir() / "templates")
    app[STATIC_VERSION] = static_version(static_folder())


def static_folder() -> Path:
    """The folder of the static files (resolved: file_under compares against it)."""
    return (web_dir() / "static").resolve()


def static_version(folder: Path) -> str:
    """The content hash of every file under `folder` (names and bytes), 12 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix().encode()
        digest.update(len(name).to_bytes(4, "big") + name)
        data = path.read_bytes()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:12]


def static_handler(folder: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of the versioned static files under `folder` (resolved)."""

    async def static_file(request: web.Request) -> web.StreamResponse:
        """GET static/<version>/<path>: a file of this release, cacheable for good."""
        path = await asyncio.to_thread(file_under, folder, request.match_info["path"])
        if path is None:
            raise web.HTTPNotFound
        return web.FileResponse(path, headers={hdrs.CACHE_CONTROL: STATIC_CACHE_CONTROL})

    return static_file


def file_under(folder: Path, relative: str) -> Path | None:
    """The file `relative` names inside `folder`, or None (missing, a folder, or outside)."""
    path = (folder / relative).resolve()
    return path if path.is_relative_to(folder) and path.is_file() else None


def utc_text(at: float | None) -> str:
    """A moment as `2026-11-30 14:05 UTC`; the page script shows it in the reader's zone."""
    if at is None:
        return ""
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return ""


def remaining(used_percent: float) -> float:
    """What is left of a window, 0 to 100."""
    return min(100.0, max(0.0, 100.0 - used_percent))


def bar_width(used_percent: float | None, view: str) -> float:
    """A bar's filled share, 0 to 100: used, or remaining in the "remaining" view."""
    if used_percent is None:
        return 0.0
    shown = remaining(used_percent) if view == "remaining" else used_percent
    return round(min(100.0, max(0.0, shown)), 2)


def language(request: web.Request) -> str:
    """The language of this request's page."""
    return i18n.negotiate(
        request.headers.get(hdrs.ACCEPT_LANGUAGE), request.cookies.get(i18n.LANG_COOKIE)
    )


def local_path(raw: str | None, prefix: str) -> str:
    """A path under /<prefix>/ to return to, or the overview: never another host or scheme."""
    fallback = f"/{prefix}/"
    if not raw or not raw.startswith(f"/{prefix}/") or "\\" in raw or "//" in raw:
        return fallback
    try:
        url = URL(raw)
    except ValueError:
        return fallback
    if url.absolute or ".." in url.path.split("/"):
        return fallback
    return str(url)


def _here(request: web.Request) -> str:
    """This page's path and query for the language switch to come back to; never a token."""
    query = [(name, value) for name, value in request.query.items() if name != "token"]
    return str(URL.build(path=request.path, query=query))


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    page_data: Mapping[str, Any] | None = None,
) -> web.Response:
    """Render a page in the request's language with the common context."""
    config = request.app[CONFIG]
    lang = language(request)
    t = i18n.Translator(lang)
    version = request.app[STATIC_VERSION]
    prefix = config.admin_prefix
    data = {
        "prefix": prefix,
        "lang": lang,
        "messages": i18n.catalog(lang),
        "server_now": time.time(),
        **(page_data or {}),
    }
    text = request.app[TEMPLATES].render(
        template,
        {
            "t": t,
            "lang": lang,
            "languages": [(code, i18n.LANGUAGE_NAMES[code]) for code in i18n.LANGUAGES],
            "prefix": prefix,
            "here": _here(request),
            "version": __version__,
            "static": lambda name: f"/{prefix}/static/{version}/{name}",
            "page_data": data,
            **context,
        },
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def choose_language(request: web.Request) -> web.Response:
    """GET language?set=<code>&next=<path>: remember the choice, go back to the page."""
    prefix = request.app[CONFIG].admin_prefix
    chosen = request.query.get("set")
    response = web.Response(
        status=303, headers={hdrs.LOCATION: local_path(request.query.get("next"), prefix)}
    )
    if chosen in i18n.LANGUAGES:
        response.set_cookie(
            i18n.LANG_COOKIE,
            chosen,
            max_age=LANG_COOKIE_MAX_AGE,
            path=f"/{prefix}",
            httponly=True,
            samesite="Lax",
            secure=secure_cookies(request),
        )
    return response


def login_page(
    request: web.Request, *, rejected: bool, next_path: str, retry_after: int | None = None
) -> web.Response:
    """The sign-in form; a 401 saying so after a wrong token, a 429 while this address waits."""
    status = 429 if retry_after is not None else 401 if rejected else 200
    response = render(
        request,
        "login.html",
        {"rejected": rejected, "next_path": next_path, "retry_after": retry_after},
        status=status,
    )
    if retry_after is not None:
        response.headers[hdrs.RETRY_AFTER] = str(retry_after)
    return response


def secure_cookies(request: web.Request) -> bool | None:
    """Whether cookies get `Secure`: over TLS, or when people reach codexgate at an https
    --public-url (a TLS reverse proxy talks plain http to codexgate)."""
    public_url = request.app[CONFIG].public_url
    if request.secure or (public_url is not None and public_url.scheme == "https"):
        return True
    return None
