"""The admin credential, sign-in, CSRF refusal, the admin cookie kept from the upstream, headers."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestServer, make_mocked_request
from yarl import URL

from codexgate.config import Config, ConfigError, from_argv, is_loopback
from codexgate.keys import ADMIN_AUTH, CONFIG, STORE
from codexgate.security import SECURITY_HEADERS, SESSION_COOKIE, auth_middleware, strip_admin_cookie
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of, sqlite_file
from tests.helpers.processes import GatewayProcess, free_port
from tests.helpers.sessions import (
    ADMIN_TOKEN,
    OTHER_TOKEN,
    admin,
    cookie_value,
    error_type,
    origin,
    set_cookie,
    sign_in,
    url,
)
from tests.helpers.tokens import bearer

LOGIN_URL = re.compile(r"(http://\S+/codexgate/login\?token=([A-Za-z0-9_-]+))")
OWN_HEADERS = {name: value for name, value in SECURITY_HEADERS} | {"Cache-Control": "no-store"}


@pytest.fixture
async def secured(start_gateway: StartGateway) -> TestServer:
    """codexgate with a known admin token."""
    return await start_gateway(admin_token=ADMIN_TOKEN)


def assert_own_headers(response: ClientResponse) -> None:
    for name, value in OWN_HEADERS.items():
        assert response.headers.get(name) == value, name


def assert_no_own_headers(response: ClientResponse) -> None:
    for name in OWN_HEADERS:
        assert name not in response.headers, name


# -- what needs a credential ---------------------------------------------------------------


async def test_healthz_is_open(secured: TestServer, http: ClientSession) -> None:
    async with http.get(url(secured, "/codexgate/healthz")) as response:
        assert response.status == 200
        assert_own_headers(response)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize(
    "path", ["/codexgate/", "/codexgate/anything", "/codexgate/api/v1/accounts", "/codexgate"]
)
async def test_own_paths_answer_401_without_a_credential(
    secured: TestServer, http: ClientSession, fake: FakeUpstream, method: str, path: str
) -> None:
    async with http.request(method, url(secured, path)) as response:
        assert response.status == 401
        assert response.content_type == "application/json"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="codexgate"'
        assert await error_type(response) == "unauthorized"
        assert_own_headers(response)
    assert fake.received == []


async def test_bearer_token_is_accepted(secured: TestServer, http: ClientSession) -> None:
    async with http.get(url(secured, "/codexgate/"), headers=admin()) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert 'id="cards"' in page  # the dashboard
    async with http.get(url(secured, "/codexgate/anything"), headers=admin()) as response:
        assert response.status == 404
        assert await error_type(response) == "not_found"


@pytest.mark.parametrize(
    "authorization", [f"Bearer {OTHER_TOKEN}", "Bearer ", f"Bearer {ADMIN_TOKEN}x", "Bearer"]
)
async def test_wrong_bearer_token_is_refused(
    secured: TestServer, http: ClientSession, authorization: str
) -> None:
    headers = {"Authorization": authorization}
    async with http.get(url(secured, "/codexgate/"), headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="codexgate"'
        assert await error_type(response) == "unauthorized"
        assert ADMIN_TOKEN not in await response.text()


async def test_a_wrong_bearer_is_not_rescued_by_a_valid_cookie(
    secured: TestServer, http: ClientSession
) -> None:
    cookie = await sign_in(http, secured)
    headers = {"Cookie": cookie, **admin(OTHER_TOKEN)}
    async with http.get(url(secured, "/codexgate/"), headers=headers) as response:
        assert response.status == 401


# -- signing in and out ---------------------------------------------------------------------


async def test_login_url_sets_the_session_cookie_and_redirects(
    secured: TestServer, http: ClientSession
) -> None:
    async with http.get(
        url(secured, "/codexgate/login"), params={"token": ADMIN_TOKEN}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/codexgate/"
        line = set_cookie(response)
        assert_own_headers(response)
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in line.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"] == "SameSite=Strict"
    assert attributes["path"] == "Path=/codexgate"
    assert attributes["max-age"] == f"Max-Age={30 * 24 * 3600}"
    assert "secure" not in attributes  # plain http here; https requests get Secure
    assert ADMIN_TOKEN not in line
    cookie = line.split(";")[0]
    async with http.get(url(secured, "/codexgate/"), headers={"Cookie": cookie}) as response:
        assert response.status == 200
        assert 'id="cards"' in await response.text()


async def test_logout_clears_the_cookie(secured: TestServer, http: ClientSession) -> None:
    cookie = await sign_in(http, secured)
    headers = {"Cookie": cookie, "Origin": origin(secured)}
    async with http.post(
        url(secured, "/codexgate/logout"), headers=headers, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/codexgate/login"
        cleared = set_cookie(response)
    assert f'{SESSION_COOKIE}=""' in cleared
    assert "Max-Age=0" in cleared
    assert "Path=/codexgate" in cleared
    async with http.get(url(secured, "/codexgate/"), headers={"Cookie": cleared}) as response:
        assert response.status == 401
    # The session ended on the server too: a copy of the cookie is worth nothing now.
    async with http.get(url(secured, "/codexgate/"), headers={"Cookie": cookie}) as response:
        assert response.status == 401


async def test_login_page_without_token_and_with_a_wrong_one(
    secured: TestServer, http: ClientSession
) -> None:
    async with http.get(url(secured, "/codexgate/login")) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "Set-Cookie" not in response.headers
        assert_own_headers(response)
        page = await response.text()
    assert '<form method="post" action="/codexgate/login">' in page
    assert 'name="token"' in page
    assert "<script" not in page
    assert " style=" not in page  # the CSP allows no inline style
    wrong = "<b>not-the-token</b>"
    async with http.get(url(secured, "/codexgate/login"), params={"token": wrong}) as response:
        assert response.status == 401
        assert "Set-Cookie" not in response.headers
        page = await response.text()
    assert "not valid" in page
    assert "not-the-token" not in page  # a submitted token is never echoed


async def test_login_form_post(secured: TestServer, http: ClientSession) -> None:
    login = url(secured, "/codexgate/login")
    async with http.post(login, data={"token": ADMIN_TOKEN}, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/codexgate/"
        cookie = f"{SESSION_COOKIE}={cookie_value(response)}"
    async with http.get(url(secured, "/codexgate/"), headers={"Cookie": cookie}) as response:
        assert response.status == 200
    async with http.post(login, data={"token": OTHER_TOKEN}) as response:
        assert response.status == 401
        assert "Set-Cookie" not in response.headers
    async with http.post(login, data={}) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "9999999999.00",
        # Its id is fixed: one made from the clock would differ between pytest-xdist's workers.
        pytest.param(f"{int(time.time()) + 3600}.{'0' * 64}", id="future-expiry-zero-signature"),
        "\uff11\uff12\uff13.abc",  # non-ASCII digits
        "12345678901234567890.ab",
    ],
)
async def test_forged_session_cookies_are_refused(
    secured: TestServer, http: ClientSession, value: str
) -> None:
    headers = {"Cookie": f"{SESSION_COOKIE}={value}"}
    async with http.get(url(secured, "/codexgate/"), headers=headers) as response:
        assert response.status == 401


async def test_a_new_admin_token_ends_existing_sessions(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    first = await start_gateway(admin_token=ADMIN_TOKEN)
    cookie = await sign_in(http, first)
    second = await start_gateway(admin_token=OTHER_TOKEN)  # same database, same cookie key
    async with http.get(url(second, "/codexgate/"), headers={"Cookie": cookie}) as response:
        assert response.status == 401
    async with http.get(url(second, "/codexgate/"), headers=admin(ADMIN_TOKEN)) as response:
        assert response.status == 401
    async with http.get(url(second, "/codexgate/"), headers=admin(OTHER_TOKEN)) as response:
        assert response.status == 200
    cookie = await sign_in(http, second, OTHER_TOKEN)
    async with http.get(url(second, "/codexgate/"), headers={"Cookie": cookie}) as response:
        assert response.status == 200


# -- CSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Origin": "http://evil.example", "Referer": "{own}/codexgate/"},
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_cookie_requests_that_change_state_need_the_own_origin(
    secured: TestServer, http: ClientSession, method: str, extra: dict[str, str]
) -> None:
    cookie = await sign_in(http, secured)
    headers = {"Cookie": cookie} | {k: v.format(own=origin(secured)) for k, v in extra.items()}
    async with http.request(
        method, url(secured, "/codexgate/logout"), headers=headers, allow_redirects=False
    ) as response:
        assert response.status == 403
        assert await error_type(response) == "csrf_rejected"
        assert "Set-Cookie" not in response.headers
        assert_own_headers(response)


@pytest.mark.parametrize(
    "extra", [{"Origin": "{own}"}, {"Referer": "{own}/codexgate/"}, {"Origin": "{own_upper}"}]
)
async def test_cookie_requests_from_the_own_origin_pass(
    secured: TestServer, http: ClientSession, extra: dict[str, str]
) -> None:
    cookie = await sign_in(http, secured)
    own = origin(secured)
    headers = {"Cookie": cookie} | {
        k: v.format(own=own, own_upper=own.upper()) for k, v in extra.items()
    }
    async with http.post(
        url(secured, "/codexgate/anything"), headers=headers, allow_redirects=False
    ) as response:
        assert response.status == 404  # past authentication and the origin check
    async with http.post(
        url(secured, "/codexgate/logout"), headers=headers, allow_redirects=False
    ) as response:
        assert response.status == 303


async def test_cookie_get_needs_no_origin(secured: TestServer, http: ClientSession) -> None:
    cookie = await sign_in(http, secured)
    headers = {"Cookie": cookie, "Origin": "http://evil.example"}
    async with http.get(url(secured, "/codexgate/"), headers=headers) as response:
        assert response.status == 200


async def test_bearer_requests_need_no_origin(secured: TestServer, http: ClientSession) -> None:
    for headers in (admin(), {**admin(), "Origin": "http://evil.example"}):
        async with http.post(
            url(secured, "/codexgate/logout"), headers=headers, allow_redirects=False
        ) as response:
            assert response.status == 303
        async with http.delete(url(secured, "/codexgate/anything"), headers=headers) as response:
            assert response.status == 404


# -- the admin token: generated once, set by flag, stored as a hash ---------------------------


async def test_generated_token_is_logged_once_and_works(tmp_path: Path) -> None:
    first = GatewayProcess([], tmp_path)
    try:
        await first.wait_ready()
        log = first.log()
        found = LOGIN_URL.findall(log)
        assert len(found) == 1, log
        login_url, token = found[0]
        assert login_url == f"http://127.0.0.1:{first.port}/codexgate/login?token={token}"
        line = next(line for line in log.splitlines() if login_url in line)
        assert "WARNING" in line
        assert "only this once" in line
        assert "CODEXGATE_ADMIN_TOKEN" in line
        async with ClientSession() as http:
            async with http.get(login_url, allow_redirects=False) as response:
                assert response.status == 303
                cookie = f"{SESSION_COOKIE}={cookie_value(response)}"
            async with http.get(f"{first.base}/codexgate/", headers={"Cookie": cookie}) as response:
                assert response.status == 200
        assert await first.terminate() == 0
    finally:
        first.kill()
    assert log.count(token) == 1

    second = GatewayProcess([], tmp_path)
    try:
        await second.wait_ready()
        log = second.log()
        assert "login?token=" not in log
        assert token not in log
        assert "an admin token is set" in log
        assert "CODEXGATE_ADMIN_TOKEN" in log
        async with (
            ClientSession() as http,
            http.get(f"{second.base}/codexgate/", headers=admin(token)) as response,
        ):
            assert response.status == 200
        assert await second.terminate() == 0
    finally:
        second.kill()

    data = tmp_path / "data"
    for file in data.iterdir():
        assert token.encode() not in file.read_bytes(), file
    with sqlite3.connect(data / "codexgate.db") as connection:
        stored = dict(connection.execute("SELECT name, value FROM settings").fetchall())
    assert stored["admin_token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert set(stored) == {"admin_token_sha256"}  # no cookie key: sessions are server-side


async def test_admin_token_setting_replaces_a_generated_one(
    start_gateway: StartGateway, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="codexgate.security")
    generated = await start_gateway()
    found = LOGIN_URL.findall(caplog.text)
    assert len(found) == 1
    login_url, token = found[0]
    assert login_url.startswith("http://127.0.0.1:8787/codexgate/login?token=")  # public_base
    async with http.get(url(generated, "/codexgate/"), headers=admin(token)) as response:
        assert response.status == 200

    caplog.clear()
    configured = await start_gateway(admin_token=ADMIN_TOKEN)
    assert "login?token=" not in caplog.text
    assert ADMIN_TOKEN not in caplog.text
    async with http.get(url(configured, "/codexgate/"), headers=admin(token)) as response:
        assert response.status == 401
    async with http.get(url(configured, "/codexgate/"), headers=admin()) as response:
        assert response.status == 200

    caplog.clear()
    later = await start_gateway()  # without the flag the configured token stays
    assert "login?token=" not in caplog.text
    async with http.get(url(later, "/codexgate/"), headers=admin()) as response:
        assert response.status == 200


async def test_the_database_holds_only_the_hash(secured: TestServer) -> None:
    store = app_of(secured)[STORE]
    digest = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    assert await store.get_setting("admin_token_sha256") == digest
    assert app_of(secured)[ADMIN_AUTH].token_sha256 == digest
    db = sqlite_file(app_of(secured)[CONFIG].db)
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert files
    for file in files:
        assert ADMIN_TOKEN.encode() not in file.read_bytes(), file


def test_admin_token_is_not_in_the_config_repr() -> None:
    config = from_argv(["--admin-token", ADMIN_TOKEN], environ={})
    assert config.admin_token == ADMIN_TOKEN
    assert ADMIN_TOKEN not in repr(config)


# -- --no-auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_no_auth_is_refused_off_loopback(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_argv(["--host", host, "--no-auth", "on"], environ={})
    assert "--no-auth (CODEXGATE_NO_AUTH): only allowed with a loopback --host" in str(caught.value)
    with pytest.raises(ConfigError):
        Config(host=host, no_auth=True)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_no_auth_is_allowed_on_loopback(host: str) -> None:
    assert is_loopback(host)
    assert from_argv(["--host", host, "--no-auth", "on"], environ={}).no_auth


def test_no_auth_off_loopback_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "codexgate", "--host", "0.0.0.0", "--no-auth", "on"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "codexgate: invalid --no-auth (CODEXGATE_NO_AUTH): only allowed with a loopback --host "
        "(127.0.0.0/8, ::1 or localhost), got --host '0.0.0.0'"
    ]
    assert not (tmp_path / "data").exists()


async def test_no_auth_lets_everything_through_and_says_so(
    start_gateway: StartGateway, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_gateway(no_auth=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("AUTHENTICATION IS OFF" in r.getMessage() for r in warnings)
    assert "login?token=" not in caplog.text  # no token is made while nobody needs one
    async with http.get(url(server, "/codexgate/")) as response:
        assert response.status == 200
        assert_own_headers(response)
    async with http.post(url(server, "/codexgate/anything")) as response:
        assert response.status == 404
    async with http.get(url(server, "/codexgate/login"), allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/codexgate/"


# -- the proxy: never guarded, never given the admin cookie, never given our headers -----------


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ("a=1; codexgate_session=x", "a=1"),
        ("codexgate_session=x; a=1;b=2", "a=1; b=2"),
        ("codexgate_session=123.abc", None),
        ("a=1;b=2", "a=1;b=2"),  # untouched, byte for byte
        ("xcodexgate_session=1; codexgate_session=2", "xcodexgate_session=1"),
        ("codexgate_session=", None),
    ],
)
def test_strip_admin_cookie(sent: str, forwarded: str | None) -> None:
    assert strip_admin_cookie(sent) == forwarded


async def echoed_cookies(http: ClientSession, server: TestServer, cookie: str) -> list[str]:
    async with http.get(
        url(server, "/backend-api/echo/cookies"), headers={"Cookie": cookie}
    ) as response:
        assert response.status == 200
        echoed = orjson.loads(await response.read())
    return [value for name, value in echoed["headers"] if name.lower() == "cookie"]


async def test_the_admin_cookie_never_reaches_the_upstream(
    secured: TestServer, http: ClientSession
) -> None:
    assert await echoed_cookies(http, secured, "a=1; codexgate_session=x") == ["a=1"]
    assert await echoed_cookies(http, secured, "codexgate_session=x") == []
    assert await echoed_cookies(http, secured, "a=1;  b=2") == ["a=1;  b=2"]
    session = await sign_in(http, secured)
    assert await echoed_cookies(http, secured, f"{session}; cf=2") == ["cf=2"]


async def test_proxied_paths_need_no_credential(
    secured: TestServer, http: ClientSession, fake: FakeUpstream
) -> None:
    headers = {"Authorization": bearer("seat_a"), "Origin": "http://evil.example"}
    for path in (
        "/backend-api/wham/usage",
        "/backend-api/codexgatex/y",
        "/backend-api/echo/codexgate/z",
    ):
        async with http.post(url(secured, path), headers=headers) as response:
            assert response.status in (200, 405)
            assert response.headers.get("WWW-Authenticate") is None
    assert len(fake.received) == 3
    assert fake.received[0].headers["Authorization"] == bearer("seat_a")


async def test_middleware_leaves_proxied_paths_at_the_first_test() -> None:
    """Nothing but one string test for the proxy: not even the app's credential is looked up."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text="proxied")

    middleware = auth_middleware("codexgate")
    app = web.Application()  # without ADMIN_AUTH: a lookup would raise KeyError
    for path in ("/backend-api/codex/responses", "/codexgatex", "/", "/x/codexgate/"):
        request = make_mocked_request("POST", path, app=app)
        response = await middleware(request, handler)
        assert isinstance(response, web.Response)
        assert response.text == "proxied"
    request = make_mocked_request("GET", "/codexgate/api/v1/accounts", app=app)
    with pytest.raises(KeyError):
        await middleware(request, handler)


async def test_security_headers_on_own_answers_only(
    secured: TestServer, http: ClientSession
) -> None:
    for path, headers in (
        ("/codexgate/healthz", {}),
        ("/codexgate/", {}),
        ("/codexgate/", admin()),
        ("/codexgate/login", {}),
        ("/codexgate/nothing", admin()),
    ):
        async with http.get(url(secured, path), headers=headers) as response:
            assert_own_headers(response)
    for path in ("/backend-api/echo/x", "/backend-api/wham/usage", "/backend-api/codexgatex"):
        async with http.get(url(secured, path)) as response:
            assert response.status == 200
            assert_no_own_headers(response)
    async with http.post(
        url(secured, "/backend-api/codex/responses"), headers={"Authorization": bearer("seat_a")}
    ) as response:
        assert response.status == 200
        await response.read()
        assert_no_own_headers(response)


async def test_security_headers_with_capture_off(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    server = await start_gateway(capture=False, admin_token=ADMIN_TOKEN)
    async with http.get(url(server, "/backend-api/echo/x")) as response:
        assert_no_own_headers(response)
    async with http.get(url(server, "/codexgate/")) as response:
        assert response.status == 401
        assert_own_headers(response)


async def test_the_proxys_own_errors_carry_the_security_headers(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    dead = await start_gateway(upstream=URL(f"http://127.0.0.1:{free_port()}"))
    async with http.get(url(dead, "/backend-api/wham/usage")) as response:
        assert response.status == 502
        assert "X-Codexgate-Error" in response.headers
        assert_own_headers(response)
    refusing = await start_gateway(websocket="refuse")
    async with http.get(
        url(refusing, "/backend-api/codex/responses"),
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    ) as response:
        assert response.status == 426
        assert_own_headers(response)
