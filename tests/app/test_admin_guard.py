"""The admin surface's guards with the real server: sessions that a database reader cannot forge,
sign-out, brute-force back-off, Host names, origin and content-type checks, --public-url."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from yarl import URL

from codexgate.keys import ADMIN_AUTH, CONFIG, STORE
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of, sqlite_file
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

SESSION = "codexgate_session"
PUBLIC = "https://codex.example.com"


@pytest.fixture
async def secured(start_gateway: StartGateway) -> TestServer:
    """codexgate with a known admin token."""
    return await start_gateway(admin_token=ADMIN_TOKEN)


def forget_failures(server: TestServer) -> None:
    """Clear the back-off of the test client's address, so that a test can keep trying."""
    app_of(server)[ADMIN_AUTH].throttle.succeeded("127.0.0.1")


async def status_with_cookie(http: ClientSession, server: TestServer, cookie: str) -> int:
    async with http.get(url(server, "/codexgate/api/v1/accounts"), headers={"Cookie": cookie}) as r:
        return r.status


# -- item 9: what the database holds does not sign anyone in ---------------------------------


def database_values(path: Path) -> list[str]:
    """Every text value in every table of the database file, as a reader with sqlite3 sees it."""
    values: list[str] = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                values.extend(str(value) for value in row if value is not None)
    db.close()
    return values


async def test_reading_the_database_is_not_enough_to_sign_in(
    secured: TestServer, http: ClientSession
) -> None:
    cookie = await sign_in(http, secured)
    real = cookie.partition("=")[2]
    path = sqlite_file(app_of(secured)[CONFIG].db)
    values = database_values(path)
    assert values  # the token's hash and the session's row at least
    for file in path.parent.iterdir():
        assert real.encode() not in file.read_bytes(), file
    forged = set(values)  # the raw stored values as cookies
    expires = str(int(time.time()) + 3600)
    for key in values:  # the old scheme: HMAC(key, "<expiry>.<token hash>") from what is stored
        for token_hash in values:
            message = f"{expires}.{token_hash}".encode()
            signature = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
            forged.add(f"{expires}.{signature}")
    assert len(forged) > 10
    for value in forged:
        forget_failures(secured)
        assert await status_with_cookie(http, secured, f"{SESSION}={value}") == 401, value
    assert await status_with_cookie(http, secured, cookie) == 200


async def test_the_session_table_holds_only_a_hash_with_its_times(
    secured: TestServer, http: ClientSession
) -> None:
    before = time.time()
    cookie = await sign_in(http, secured)
    value = cookie.partition("=")[2]
    assert len(value) >= 43  # 32 random bytes
    with sqlite3.connect(sqlite_file(app_of(secured)[CONFIG].db)) as db:
        rows = db.execute("SELECT * FROM sessions").fetchall()
        settings = dict(db.execute("SELECT name, value FROM settings").fetchall())
    db.close()
    [(digest, created, expires, last_used)] = rows
    assert digest == hashlib.sha256(value.encode()).hexdigest()
    assert before <= created == last_used <= time.time()
    assert expires == pytest.approx(created + 30 * 24 * 3600)
    assert "cookie_key" not in settings


# -- item 10: signing out ends the session on the server ---------------------------------------


async def test_a_replayed_cookie_is_refused_after_sign_out(
    secured: TestServer, http: ClientSession
) -> None:
    cookie = await sign_in(http, secured)
    other = await sign_in(http, secured)
    headers = {"Cookie": cookie, "Origin": origin(secured)}
    async with http.post(
        url(secured, "/codexgate/logout"), headers=headers, allow_redirects=False
    ) as response:
        assert response.status == 303
    assert await status_with_cookie(http, secured, cookie) == 401
    assert await status_with_cookie(http, secured, other) == 200  # only that browser's


async def test_sign_out_everywhere_from_the_page(secured: TestServer, http: ClientSession) -> None:
    first = await sign_in(http, secured)
    second = await sign_in(http, secured)
    async with http.get(url(secured, "/codexgate/"), headers={"Cookie": first}) as response:
        page = await response.text()
    assert '<form method="post" action="/codexgate/logout/everywhere" class="signout">' in page
    assert "Sign out everywhere" in page
    cross = {"Cookie": first, "Origin": "http://evil.example"}
    async with http.post(
        url(secured, "/codexgate/logout/everywhere"), headers=cross, allow_redirects=False
    ) as response:
        assert response.status == 403
    assert await status_with_cookie(http, secured, second) == 200
    headers = {"Cookie": first, "Origin": origin(secured)}
    async with http.post(
        url(secured, "/codexgate/logout/everywhere"), headers=headers, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/codexgate/login"
        assert "Max-Age=0" in set_cookie(response)
    forget_failures(secured)
    assert await status_with_cookie(http, secured, first) == 401
    assert await status_with_cookie(http, secured, second) == 401
    async with http.get(url(secured, "/codexgate/"), headers=admin()) as response:
        assert response.status == 200  # the token itself keeps working


async def test_sign_out_everywhere_through_the_api(
    secured: TestServer, http: ClientSession
) -> None:
    cookies = [await sign_in(http, secured) for _ in range(3)]
    async with http.delete(url(secured, "/codexgate/api/v1/sessions"), headers=admin()) as r:
        assert r.status == 200
        assert orjson.loads(await r.read()) == {"ended": 3}
    for cookie in cookies:
        forget_failures(secured)
        assert await status_with_cookie(http, secured, cookie) == 401
    async with http.delete(url(secured, "/codexgate/api/v1/sessions"), headers=admin()) as r:
        assert orjson.loads(await r.read()) == {"ended": 0}
    async with http.post(url(secured, "/codexgate/api/v1/sessions"), headers=admin()) as r:
        assert r.status == 405


async def test_a_new_admin_token_deletes_the_session_rows(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    first = await start_gateway(admin_token=ADMIN_TOKEN)
    await sign_in(http, first)
    second = await start_gateway(admin_token=OTHER_TOKEN)
    with sqlite3.connect(sqlite_file(app_of(second)[CONFIG].db)) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
    db.close()


# -- item 11: brute force ------------------------------------------------------------------


async def test_wrong_sign_ins_are_answered_429_after_five(
    secured: TestServer, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="codexgate.security")
    login = url(secured, "/codexgate/login")
    for attempt in range(5):
        async with http.post(login, data={"token": f"wrong-{attempt}-{OTHER_TOKEN}"}) as response:
            assert response.status == 401
    for token in (OTHER_TOKEN, ADMIN_TOKEN):  # even the right token waits: no oracle
        async with http.post(login, data={"token": token}, allow_redirects=False) as response:
            assert response.status == 429
            assert 1 <= int(response.headers["Retry-After"]) <= 15
            assert "Set-Cookie" not in response.headers
            assert "Too many wrong tokens" in await response.text()
    async with http.get(url(secured, "/codexgate/"), headers=admin()) as response:
        assert response.status == 429  # the bearer token from that address waits too
        assert await error_type(response) == "too_many_failures"
    async with http.get(url(secured, "/codexgate/healthz")) as response:
        assert response.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "codexgate.security"]
    assert len(lines) == 1, lines  # one line a minute per address
    assert "refused 1 admin credential(s)" in lines[0]
    assert "127.0.0.1" in lines[0]
    assert OTHER_TOKEN not in caplog.text


async def test_wrong_bearer_tokens_and_cookies_count_and_a_success_resets(
    secured: TestServer, http: ClientSession
) -> None:
    accounts = url(secured, "/codexgate/api/v1/accounts")
    for _ in range(2):
        for _ in range(4):
            async with http.get(accounts, headers=admin(OTHER_TOKEN)) as response:
                assert response.status == 401
        async with http.get(accounts, headers=admin()) as response:
            assert response.status == 200  # resets the count: 4 + 4 never blocks
    for _ in range(3):
        async with http.get(accounts, headers=admin(OTHER_TOKEN)) as response:
            assert response.status == 401
    for _ in range(2):
        async with http.get(accounts, headers={"Cookie": f"{SESSION}=forged"}) as response:
            assert response.status == 401
    async with http.get(accounts, headers=admin()) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 1
    # Asking without any credential is not a guess: the sign-in redirect keeps working.
    async with http.get(
        url(secured, "/codexgate/"), headers={"Accept": "text/html"}, allow_redirects=False
    ) as response:
        assert response.status == 303


# -- item 6: Host names ----------------------------------------------------------------------


@pytest.mark.parametrize("no_auth", [False, True])
@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8787", "EVIL.example.", "localhost.evil.example", ""]
)
async def test_unknown_host_names_get_421(
    start_gateway: StartGateway, http: ClientSession, host: str, no_auth: bool
) -> None:
    server = await start_gateway(admin_token=ADMIN_TOKEN, no_auth=no_auth)
    for path in ("/codexgate/api/v1/accounts", "/codexgate/", "/codexgate/login"):
        async with http.get(url(server, path), headers={"Host": host, **admin()}) as response:
            assert response.status == 421
            body = orjson.loads(await response.read())
    assert body["error"]["type"] == "misdirected_request"
    assert "--public-url" in body["error"]["message"]


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8787",
        "127.0.0.1",
        "127.9.8.7:1",
        "[::1]:8787",
        "10.0.0.7:8787",  # any IP literal: DNS rebinding always needs a name
        "[fe80::1]",
        "app.localhost",
        "codex.example.com",  # --public-url's
        "codex.example.com.",
    ],
)
async def test_known_host_names_are_served(
    start_gateway: StartGateway, http: ClientSession, host: str
) -> None:
    server = await start_gateway(admin_token=ADMIN_TOKEN, public_url=URL(PUBLIC))
    async with http.get(
        url(server, "/codexgate/api/v1/accounts"), headers={"Host": host, **admin()}
    ) as response:
        assert response.status == 200


async def test_the_machines_own_name_is_served(secured: TestServer, http: ClientSession) -> None:
    name = socket.gethostname()
    async with http.get(
        url(secured, "/codexgate/api/v1/accounts"), headers={"Host": f"{name}:1", **admin()}
    ) as response:
        assert response.status == 200


async def test_healthz_and_proxied_paths_answer_any_host(
    secured: TestServer, http: ClientSession, fake: FakeUpstream
) -> None:
    headers = {"Host": "evil.example"}
    async with http.get(url(secured, "/codexgate/healthz"), headers=headers) as response:
        assert response.status == 200
    async with http.get(url(secured, "/backend-api/wham/usage"), headers=headers) as response:
        assert response.status == 200
    assert len(fake.received) == 1


# -- item 6: origin and content type, with and without auth --------------------------------------


WEBHOOK = {"url": "http://attacker.example/hook", "format": "json"}


async def webhook_count(server: TestServer) -> int:
    return len(await app_of(server)[STORE].webhooks())


@pytest.mark.parametrize(
    "extra",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Origin": "http://evil.example", "Referer": "{own}/codexgate/"},
    ],
)
async def test_no_auth_refuses_changes_from_another_origin(
    start_gateway: StartGateway, http: ClientSession, extra: dict[str, str]
) -> None:
    server = await start_gateway(no_auth=True)
    headers = {"Content-Type": "text/plain"} | {
        k: v.format(own=origin(server)) for k, v in extra.items()
    }
    async with http.post(
        url(server, "/codexgate/api/v1/alerts/webhooks"),
        data=orjson.dumps(WEBHOOK),
        headers=headers,
    ) as response:
        assert response.status == 403
        assert await error_type(response) == "csrf_rejected"
    assert await webhook_count(server) == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_no_auth_json_api_takes_only_json(
    start_gateway: StartGateway, http: ClientSession, content_type: str
) -> None:
    server = await start_gateway(no_auth=True)
    hooks = url(server, "/codexgate/api/v1/alerts/webhooks")
    for headers in ({}, {"Origin": origin(server)}):
        async with http.post(
            hooks, data=orjson.dumps(WEBHOOK), headers={"Content-Type": content_type, **headers}
        ) as response:
            assert response.status == 415
            assert await error_type(response) == "unsupported_media_type"
    assert await webhook_count(server) == 0
    async with http.post(
        hooks,
        data=orjson.dumps(WEBHOOK),
        headers={"Content-Type": "application/json; charset=utf-8", "Origin": origin(server)},
    ) as response:
        assert response.status == 201
    async with http.post(hooks, json=WEBHOOK) as response:  # curl or the CLI: no Origin
        assert response.status == 200  # the same URL again
    assert await webhook_count(server) == 1


async def test_signed_in_browsers_send_json_to_the_api(
    secured: TestServer, http: ClientSession
) -> None:
    cookie = await sign_in(http, secured)
    hooks = url(secured, "/codexgate/api/v1/alerts/webhooks")
    headers = {"Cookie": cookie, "Origin": origin(secured)}
    async with http.post(
        hooks, data=orjson.dumps(WEBHOOK), headers={**headers, "Content-Type": "text/plain"}
    ) as response:
        assert response.status == 415
    async with http.post(hooks, json=WEBHOOK, headers=headers) as response:
        assert response.status == 201
    # A bearer request cannot come from another site's page: scripts keep their content type.
    other = {**WEBHOOK, "url": "http://other.example/hook"}
    async with http.post(
        hooks, data=orjson.dumps(other), headers={**admin(), "Content-Type": "text/plain"}
    ) as response:
        assert response.status == 201


async def test_the_sign_in_form_refuses_another_origin(
    secured: TestServer, http: ClientSession
) -> None:
    login = url(secured, "/codexgate/login")
    async with http.post(
        login, data={"token": ADMIN_TOKEN}, headers={"Origin": "http://evil.example"}
    ) as response:
        assert response.status == 403
        assert "Set-Cookie" not in response.headers
    async with http.post(
        login,
        data={"token": ADMIN_TOKEN},
        headers={"Origin": origin(secured)},
        allow_redirects=False,
    ) as response:
        assert response.status == 303


# -- item 19: behind a TLS reverse proxy --------------------------------------------------------


async def test_public_url_origin_passes_and_cookies_are_secure(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    server = await start_gateway(admin_token=ADMIN_TOKEN, public_url=URL(PUBLIC))
    # What the proxy relays: plain http, the public Host, the browser's https Origin.
    proxied = {"Host": "codex.example.com", "X-Forwarded-Proto": "https"}
    async with http.get(
        url(server, "/codexgate/login"),
        params={"token": ADMIN_TOKEN},
        headers=proxied,
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        line = set_cookie(response)
        cookie = f"{SESSION}={cookie_value(response)}"
    assert "Secure" in [part.strip() for part in line.split(";")]
    async with http.get(
        url(server, "/codexgate/language"), params={"set": "en"}, allow_redirects=False
    ) as response:
        assert "Secure" in response.headers["Set-Cookie"]
    hooks = url(server, "/codexgate/api/v1/alerts/webhooks")
    for sent_origin, status in ((PUBLIC, 201), ("http://codex.example.com", 403)):
        async with http.post(
            hooks, json=WEBHOOK, headers={**proxied, "Cookie": cookie, "Origin": sent_origin}
        ) as response:
            assert response.status == status, sent_origin
    async with http.post(
        url(server, "/codexgate/logout"),
        headers={**proxied, "Cookie": cookie, "Referer": f"{PUBLIC}/codexgate/"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert "Secure" in set_cookie(response)


async def test_without_public_url_cookies_over_http_are_not_secure(
    secured: TestServer, http: ClientSession
) -> None:
    async with http.get(
        url(secured, "/codexgate/login"), params={"token": ADMIN_TOKEN}, allow_redirects=False
    ) as response:
        assert "secure" not in set_cookie(response).lower()
