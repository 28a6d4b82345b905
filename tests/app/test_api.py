"""The REST API under /<prefix>/api/v1/ on a real gateway, with traffic from the fake upstream."""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.api.common import encode_cursor
from codexgate.core.models import (
    FIVE_HOUR,
    LimitHit,
    LimitReport,
    Snapshot,
    SpendControl,
    SpendLimit,
    UsageReport,
    Window,
)
from codexgate.keys import STORE
from tests.helpers.admin_client import ADMIN, JWTS, OPAQUE, Admin, assert_envelope
from tests.helpers.builders import request_record, seat_identity, usage_snapshot
from tests.helpers.fake_upstream import FakeUpstream, sample_headers
from tests.helpers.gateway import app_of, recorded, settled, turn
from tests.helpers.tokens import bearer

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")


async def all_pages(admin: Admin, path: str, query: str, limit: int) -> list[dict[str, Any]]:
    """Follow next_cursor to the end; every page but the last is full."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        page = await admin.ok("GET", f"{path}?{query}&limit={limit}{suffix}")
        pages += 1
        assert pages < 100
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert len(page["items"]) <= limit
            return items
        assert len(page["items"]) == limit


def without_clock(value: Any) -> Any:
    """value without the fields that change with the clock (ages and countdowns)."""
    if isinstance(value, dict):
        return {
            k: without_clock(v)
            for k, v in value.items()
            if k not in ("age_seconds", "reset_in_seconds")
        }
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


def ids(items: Iterable[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


# -- accounts: create, traffic, rename, delete --------------------------------------------------


async def test_created_account_gets_the_traffic_is_renamed_and_deleted_with_its_rows(
    admin: Admin, server: TestServer, http: ClientSession
) -> None:
    token = JWTS["seat_a"]
    created = await admin.ok("POST", "api/v1/accounts", 201, json={"name": "Alice", "token": token})
    assert created["account_key"] == "seat:acct-team-1:user-AAAA"
    assert created["display_name"] == "Alice"
    assert created["email"] == "alice@example.com"
    assert created["plan_type"] == "team"
    assert created["token_fingerprint"] == hashlib.sha256(token.encode()).hexdigest()[:8]
    assert created["limits"] == []
    assert created["first_seen_at_iso"].endswith("Z")
    account_id = created["id"]
    location = (await admin.call("POST", "api/v1/accounts", json={"token": JWTS["seat_b"]})).headers
    assert location["Location"].startswith("/codexgate/api/v1/accounts/")

    again = await admin.ok("POST", "api/v1/accounts", 200, json={"token": token})
    assert again["id"] == account_id
    assert again["display_name"] == "Alice"  # no name given: the name stays

    # Traffic with that token (and with a refreshed one of the same seat) lands on it.
    assert await turn(http, server, f"Bearer {token}") == 200
    assert await turn(http, server, bearer("seat_a_refreshed")) == 200
    await recorded(server, 2)
    await settled(server, 2)
    listed = await admin.ok("GET", "api/v1/accounts")
    assert listed["accounts"][0]["id"] == account_id
    assert len(listed["accounts"]) == 2  # and seat_b, which has had no traffic
    account = await admin.ok("GET", f"api/v1/accounts/{account_id}")
    assert without_clock(account) == without_clock(listed["accounts"][0])
    [limit] = account["limits"]
    assert limit["limit_id"] == "codex"
    assert limit["windows"]["5h"]["used_percent"] == 46.0
    assert limit["windows"]["7d"]["used_percent"] == 15.0

    history = await admin.ok("GET", f"api/v1/accounts/{account_id}/history")
    assert len(history["items"]) >= 1
    requests = await admin.ok("GET", f"api/v1/accounts/{account_id}/requests")
    assert len(requests["items"]) == 2
    assert {r["account_id"] for r in requests["items"]} == {account_id}

    renamed = await admin.ok(
        "PATCH", f"api/v1/accounts/{account_id}", json={"display_name": "Alice W."}
    )
    assert renamed["display_name"] == "Alice W."
    assert [limit["limit_id"] for limit in renamed["limits"]] == ["codex"]
    renamed = await admin.ok("PATCH", f"api/v1/accounts/{account_id}", json={"name": "Al"})
    assert renamed["display_name"] == "Al"
    cleared = await admin.ok("PATCH", f"api/v1/accounts/{account_id}", json={"display_name": None})
    assert cleared["display_name"] is None

    deleted = await admin.call("DELETE", f"api/v1/accounts/{account_id}")
    assert deleted.status == 204
    assert deleted.body == b""
    assert_envelope(await admin.get(f"api/v1/accounts/{account_id}"), 404, "not_found")
    assert_envelope(await admin.get(f"api/v1/accounts/{account_id}/history"), 404, "not_found")
    remaining = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    assert [a["account_key"] for a in remaining] == ["seat:acct-team-1:user-BBBB"]
    assert (await admin.ok("GET", "api/v1/requests"))["items"] == []
    store = app_of(server)[STORE]
    assert await store.count_history() == 0
    assert await store.count_requests() == 0


async def test_an_opaque_token_is_keyed_by_its_hash_and_a_pasted_header_value_works(
    admin: Admin, server: TestServer, http: ClientSession
) -> None:
    created = await admin.ok(
        "POST", "api/v1/accounts", 201, json={"name": "ci", "token": f"Bearer {OPAQUE}"}
    )
    digest = hashlib.sha256(OPAQUE.encode()).hexdigest()
    assert created["account_key"] == f"token:{digest[:8]}"  # the stored key keeps it whole
    assert created["token_fingerprint"] == digest[:8]
    assert created["email"] is None
    assert await turn(http, server, f"Bearer {OPAQUE}") == 200
    await recorded(server, 1)
    listed = await admin.ok("GET", "api/v1/accounts")
    assert [a["id"] for a in listed["accounts"]] == [created["id"]]
    assert listed["accounts"][0]["limits"][0]["windows"]["5h"]["used_percent"] == 46.0


async def test_account_shape_with_windows_countdowns_and_unknowns(
    admin: Admin, server: TestServer, http: ClientSession, fake: FakeUpstream
) -> None:
    fake.response_headers = sample_headers("headers-weekly-only.json")
    before = time.time()
    assert await turn(http, server, bearer("personal")) == 200
    await recorded(server, 1)
    [account] = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    assert set(account) == {
        "id",
        "account_key",
        "title",
        "display_name",
        "email",
        "plan_type",
        "token_fingerprint",
        "first_seen_at",
        "first_seen_at_iso",
        "last_seen_at",
        "last_seen_at_iso",
        "limits",
        "refresh",
    }
    assert account["refresh"] == {
        "available": False,
        "state": "off",
        "stopped_reason": None,
        "last_at": None,
        "next_at": None,
    }
    assert before - 1 <= account["first_seen_at"] <= time.time() + 1
    [limit] = account["limits"]
    assert limit["source"] == "headers"
    assert limit["http_status"] == 200
    assert limit["stale"] is False
    assert 0 <= limit["age_seconds"] < 60
    assert limit["windows"]["5h"] is None  # not reported: unknown, not 0
    assert limit["windows"]["monthly"] is None
    week = limit["windows"]["7d"]
    assert week["used_percent"] == 31.5
    assert week["window_minutes"] == 10080
    assert week["resets_at"] == 1893800000
    assert week["resets_at_iso"] == "2030-01-04T23:33:20Z"
    assert abs(week["reset_in_seconds"] - (1893800000 - time.time())) < 60
    assert limit["credits"] == {"has_credits": True, "unlimited": False, "balance": "120.50"}
    assert limit["limit_hit"] is None
    assert limit["spend_control"] is None
    assert limit["captured_at_iso"].endswith("Z")


async def test_each_limit_carries_its_own_hit_spend_limits_and_reset_credits(
    admin: Admin, server: TestServer
) -> None:
    who = seat_identity("seat_a")
    created = await admin.ok("POST", "api/v1/accounts", 201, json={"token": JWTS["seat_a"]})
    group = SpendLimit("group_shared", "100", "82", "18", 82.0, 18.0, 1893456000, "g-1", "Eng")
    spend = SpendControl(
        reached=True,
        limit="50",
        used="10",
        reached_limit_type="group_shared",
        limits=(SpendLimit("individual", "50", "10"), group),
    )
    body = UsageReport(
        limits=(LimitReport("codex", None, ()),),
        spend_control=spend,
        reset_credits=3,
        promo_message="Double limits this week",
    )
    error = UsageReport(
        limits=(LimitReport("codex_other", "gpt-5.2-codex-sonic", ()),),
        active_limit="codex_other",
        limit_hit=LimitHit("usage_limit_reached", 1893450000),
    )
    now = time.time()
    await app_of(server)[STORE].record(
        [Snapshot(who, now - 2, "usage_body", body, 200), Snapshot(who, now - 1, "error", error)]
    )
    account = await admin.ok("GET", f"api/v1/accounts/{created['id']}")
    limits = {limit["limit_id"]: limit for limit in account["limits"]}
    codex, other = limits["codex"], limits["codex_other"]
    group_json = {
        "kind": "group_shared",
        "limit": "100",
        "used": "82",
        "remaining": "18",
        "used_percent": 82.0,
        "remaining_percent": 18.0,
        "resets_at": 1893456000,
        "resets_at_iso": "2030-01-01T00:00:00Z",
        "group_id": "g-1",
        "group_name": "Eng",
    }
    assert codex["spend_control"]["reached"] is True
    assert codex["spend_control"]["reached_limit_type"] == "group_shared"
    assert [item["kind"] for item in codex["spend_control"]["limits"]] == [
        "individual",
        "group_shared",
    ]
    assert codex["spend_control"]["limits"][1] == group_json
    assert (codex["reset_credits"], codex["promo_message"]) == (3, "Double limits this week")
    assert codex["limit_hit"] is None
    assert other["limit_hit"]["type"] == "usage_limit_reached"
    assert (other["spend_control"], other["reset_credits"], other["promo_message"]) == (
        None,
        None,
        None,
    )
    # The history item of the same row says the same (one builder for both).
    [item] = (await admin.ok("GET", f"api/v1/accounts/{created['id']}/history?limit_id=codex"))[
        "items"
    ]
    assert item["spend_control"]["limits"] == codex["spend_control"]["limits"]
    assert (item["reset_credits"], item["promo_message"]) == (3, "Double limits this week")


async def test_old_values_are_flagged_stale(admin: Admin, server: TestServer) -> None:
    store = app_of(server)[STORE]
    await store.record([usage_snapshot(seat_identity("seat_b"), time.time() - 3600, 20.0)])
    [account] = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    [limit] = account["limits"]
    assert limit["stale"] is True
    assert limit["age_seconds"] > 900


# -- history and requests: paging and filters ----------------------------------------------------


async def test_the_accounts_list_pages_by_id_when_asked(admin: Admin) -> None:
    for number in range(5):
        await admin.ok("POST", "api/v1/accounts", 201, json={"token": f"token-{number:04d}-page"})
    everything = await admin.ok("GET", "api/v1/accounts")
    ids = [account["id"] for account in everything["accounts"]]
    assert len(ids) == 5
    assert everything["next_cursor"] is None
    seen: list[dict[str, Any]] = []
    first = await admin.ok("GET", "api/v1/accounts?limit=2")
    page = first
    while True:
        assert len(page["accounts"]) <= 2
        seen += page["accounts"]
        if page["next_cursor"] is None:
            break
        page = await admin.ok("GET", f"api/v1/accounts?limit=2&cursor={page['next_cursor']}")
    assert [account["id"] for account in seen] == ids
    assert [without_clock(a) for a in seen] == [without_clock(a) for a in everything["accounts"]]
    # A cursor alone takes the default page size; another list's cursor is refused.
    rest = await admin.ok("GET", f"api/v1/accounts?cursor={first['next_cursor']}")
    assert [account["id"] for account in rest["accounts"]] == ids[2:]
    history_cursor = encode_cursor("h", 1.0, 1)
    wrong_kind = await admin.get(f"api/v1/accounts?cursor={history_cursor}")
    assert_envelope(wrong_kind, 400, "invalid_request", "cursor")
    assert_envelope(await admin.get("api/v1/accounts?limit=0"), 400, "invalid_request", "limit")


async def test_history_pages_hold_each_row_once_in_time_order(
    admin: Admin, server: TestServer
) -> None:
    who = seat_identity("seat_a")
    created = await admin.ok("POST", "api/v1/accounts", 201, json={"token": JWTS["seat_a"]})
    account_id = created["id"]
    store = app_of(server)[STORE]
    # 12 rows at 1000..1011; odd seconds report only the weekly window.
    await store.record(
        [usage_snapshot(who, 1000.0 + i, None if i % 2 else float(i)) for i in range(12)]
    )
    await store.record([usage_snapshot(who, 1005.5, 1.0, limit_id="codex_other")])
    path = f"api/v1/accounts/{account_id}/history"

    for limit in (1, 5, 13, 1000):
        items = await all_pages(admin, path, "x=1", limit)
        assert len(items) == 13
        assert len(set(ids(items))) == 13
        times = [(item["captured_at"], item["id"]) for item in items]
        assert times == sorted(times)

    codex = await all_pages(admin, path, "limit_id=codex", 5)
    assert [item["captured_at"] for item in codex] == [1000.0 + i for i in range(12)]
    assert codex[0]["captured_at_iso"] == "1970-01-01T00:16:40Z"
    assert codex[0]["windows"]["5h"]["used_percent"] == 0.0  # reported as 0: really 0
    assert codex[1]["windows"]["5h"] is None
    assert codex[0]["slots"]["primary"]["window"] == "5h"

    in_range = await all_pages(admin, path, "limit_id=codex&since=1003&until=1008", 2)
    assert [item["captured_at"] for item in in_range] == [1003.0 + i for i in range(5)]
    five_hour = await all_pages(admin, path, "window=5h&limit_id=codex", 4)
    assert [item["captured_at"] for item in five_hour] == [1000.0 + i for i in range(0, 12, 2)]
    empty = await admin.ok("GET", f"{path}?since=5000")
    assert empty == {"items": [], "next_cursor": None}


async def test_requests_pages_newest_first_with_filters(admin: Admin, server: TestServer) -> None:
    alice, bob = seat_identity("seat_a"), seat_identity("seat_b")
    store = app_of(server)[STORE]
    # Equal start times on purpose: the id breaks the tie.
    records = [request_record(2000.0 + i // 2, who=alice if i % 3 else bob) for i in range(15)]
    records.append(request_record(2003.0, anonymous=True, status=401))
    await store.record(records)
    everything = await all_pages(admin, "api/v1/requests", "x=1", 4)
    assert len(everything) == 16
    assert len(set(ids(everything))) == 16
    order = [(item["started_at"], item["id"]) for item in everything]
    assert order == sorted(order, reverse=True)
    assert everything[0]["started_at_iso"] == "1970-01-01T00:33:27Z"

    accounts = {a["email"]: a["id"] for a in (await admin.ok("GET", "api/v1/accounts"))["accounts"]}
    bob_id = accounts["bob@example.com"]
    bobs = await all_pages(admin, "api/v1/requests", f"account_id={bob_id}", 2)
    assert len(bobs) == 5
    assert {item["account_id"] for item in bobs} == {bob_id}
    same = await all_pages(admin, f"api/v1/accounts/{bob_id}/requests", "x=1", 3)
    assert same == bobs

    window = await all_pages(admin, "api/v1/requests", "since=2002&until=2004", 3)
    assert {item["started_at"] for item in window} == {2002.0, 2003.0}
    assert len(window) == 5  # four logged in those seconds, and the anonymous one
    assert next(item for item in window if item["account_id"] is None)["status"] == 401


# -- errors: one envelope ----------------------------------------------------------------------


BAD_QUERIES: Final = [
    ("since=abc", "since"),
    ("since=nan", "since"),
    ("until=inf", "until"),
    ("since=10&until=5", "until"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("limit=-1", "limit"),
    ("limit=1&limit=2", "limit"),
    ("cursor=not-a-cursor", "cursor"),
    ("cursor=W10", "cursor"),  # valid base64 of "[]"
    ("cursor=%22", "cursor"),
]


@pytest.mark.parametrize(("query", "field"), BAD_QUERIES)
async def test_bad_query_parameters_are_400_naming_the_field(
    admin: Admin, query: str, field: str
) -> None:
    created = await admin.ok("POST", "api/v1/accounts", 201, json={"token": OPAQUE})
    for path in (
        f"api/v1/accounts/{created['id']}/history",
        f"api/v1/accounts/{created['id']}/requests",
        "api/v1/requests",
    ):
        assert_envelope(await admin.get(f"{path}?{query}"), 400, "invalid_request", field)


async def test_history_only_filters_and_cursors_of_the_other_list(
    admin: Admin, server: TestServer
) -> None:
    created = await admin.ok("POST", "api/v1/accounts", 201, json={"token": JWTS["seat_a"]})
    history = f"api/v1/accounts/{created['id']}/history"
    assert_envelope(await admin.get(f"{history}?window=1d"), 400, "invalid_request", "window")
    assert_envelope(await admin.get(f"{history}?limit_id="), 400, "invalid_request", "limit_id")
    assert_envelope(
        await admin.get("api/v1/requests?account_id=x"), 400, "invalid_request", "account_id"
    )
    who = seat_identity("seat_a")
    store = app_of(server)[STORE]
    await store.record([usage_snapshot(who, 1000.0 + i, float(i)) for i in range(3)])
    await store.record([request_record(1000.0 + i, who=who) for i in range(3)])
    history_cursor = (await admin.ok("GET", f"{history}?limit=1"))["next_cursor"]
    requests_cursor = (await admin.ok("GET", "api/v1/requests?limit=1"))["next_cursor"]
    assert history_cursor
    assert requests_cursor
    assert_envelope(
        await admin.get(f"api/v1/requests?cursor={history_cursor}"),
        400,
        "invalid_request",
        "cursor",
    )
    assert_envelope(
        await admin.get(f"{history}?cursor={requests_cursor}"), 400, "invalid_request", "cursor"
    )


BAD_BODIES: Final[Sequence[tuple[bytes, str]]] = [
    (b"", "body"),
    (b"{not json", "body"),
    (b"[]", "body"),
    (b'"token"', "body"),
    (b"{}", "token"),
    (b'{"name": "x"}', "token"),
    (b'{"token": ""}', "token"),
    (b'{"token": "   "}', "token"),
    (b'{"token": 5}', "token"),
    (b'{"token": null}', "token"),
    (b'{"token": "t", "name": ""}', "name"),
    (b'{"token": "t", "name": 5}', "name"),
    (orjson.dumps({"token": "t", "name": "x" * 101}), "name"),
    (b'{"token": "t", "name": "a", "display_name": "b"}', "display_name"),
    (b'{"token": "t", "admin": true}', "admin"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_bad_account_bodies_are_400_naming_the_field(
    admin: Admin, body: bytes, field: str
) -> None:
    answer = await admin.call(
        "POST", "api/v1/accounts", data=body, headers={"Content-Type": "application/json"}
    )
    assert_envelope(answer, 400, "invalid_request", field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{}", "display_name"),
        (b"null", "body"),
        (b'{"display_name": ""}', "display_name"),
        (b'{"display_name": ["a"]}', "display_name"),
        (b'{"display_name": "a", "email": "x@y"}', "email"),
    ],
)
async def test_bad_rename_bodies_are_400_naming_the_field(
    admin: Admin, body: bytes, field: str
) -> None:
    created = await admin.ok("POST", "api/v1/accounts", 201, json={"token": OPAQUE})
    answer = await admin.call("PATCH", f"api/v1/accounts/{created['id']}", data=body)
    assert_envelope(answer, 400, "invalid_request", field)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "api/v1/accounts/999"),
        ("GET", "api/v1/accounts/abc"),
        ("GET", "api/v1/accounts/0"),
        ("GET", "api/v1/accounts/99999999999999999999999"),
        ("PATCH", "api/v1/accounts/999"),
        ("DELETE", "api/v1/accounts/999"),
        ("GET", "api/v1/accounts/999/history"),
        ("GET", "api/v1/accounts/999/requests"),
        ("GET", "api/v1/nothing-here"),
        ("GET", "api/v1/accounts/"),
        ("POST", "api"),
    ],
)
async def test_unknown_ids_and_paths_are_404(admin: Admin, method: str, path: str) -> None:
    answer = await admin.call(method, path, json={"display_name": "x"})
    assert_envelope(answer, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "api/v1/accounts", "GET,HEAD,POST"),
        ("DELETE", "api/v1/accounts", "GET,HEAD,POST"),
        ("POST", "api/v1/accounts/1", "DELETE,GET,HEAD,PATCH"),
        ("POST", "api/v1/accounts/1/history", "GET,HEAD"),
        ("DELETE", "api/v1/requests", "GET,HEAD"),
        ("POST", "api/v1/openapi.json", "GET,HEAD"),
    ],
)
async def test_wrong_methods_are_405_with_allow(
    admin: Admin, method: str, path: str, allow: str
) -> None:
    answer = await admin.call(method, path)
    assert_envelope(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"] == allow


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "api/v1/accounts"),
        ("POST", "api/v1/accounts"),
        ("GET", "api/v1/accounts/1"),
        ("PATCH", "api/v1/accounts/1"),
        ("DELETE", "api/v1/accounts/1"),
        ("GET", "api/v1/accounts/1/history"),
        ("GET", "api/v1/accounts/1/requests"),
        ("GET", "api/v1/requests"),
        ("GET", "api/v1/openapi.json"),
    ],
)
async def test_every_route_wants_the_admin_credential(admin: Admin, method: str, path: str) -> None:
    assert_envelope(await admin.call(method, path, auth=None), 401, "unauthorized")
    assert_envelope(await admin.call(method, path, auth="wrong-" + ADMIN), 401, "unauthorized")


async def test_head_answers_like_get_without_a_body_and_big_bodies_are_413(
    admin: Admin,
) -> None:
    head = await admin.call("HEAD", "api/v1/accounts")
    assert head.status == 200
    assert head.body == b""
    big = io.BytesIO(orjson.dumps({"token": "x" * (2 * 1024 * 1024)}))
    assert_envelope(await admin.call("POST", "api/v1/accounts", data=big), 413, "request_too_large")


async def test_an_unexpected_failure_is_a_500_envelope_with_the_traceback_in_the_log(
    admin: Admin, server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    await app_of(server)[STORE].close()  # every later query fails
    with caplog.at_level(logging.ERROR, logger="codexgate.api.errors"):
        answer = await admin.get("api/v1/accounts")
    error = assert_envelope(answer, 500, "internal_error")
    assert "closed" not in error["message"].lower()
    assert "Traceback" not in error["message"]
    [entry] = [r for r in caplog.records if r.name == "codexgate.api.errors"]
    assert entry.exc_info is not None
    assert "GET /codexgate/api/v1/accounts" in entry.getMessage()


async def test_proxied_errors_are_untouched(
    admin: Admin, server: TestServer, http: ClientSession, fake: FakeUpstream
) -> None:
    fake.status = 404
    fake.error_body = b"upstream's own 404"
    async with http.post(
        f"http://127.0.0.1:{server.port}/backend-api/codex/responses",
        data=b"{}",
        headers={"Authorization": bearer("seat_a")},
    ) as response:
        assert response.status == 404
        assert await response.read() == b"upstream's own 404"


async def test_iso_times_are_utc_and_huge_reset_times_do_not_break_the_answer(
    admin: Admin, server: TestServer
) -> None:
    who = seat_identity("personal")
    far = Window("primary", FIVE_HOUR, "length", 5.0, 300, 2**62)
    await app_of(server)[STORE].record(
        [
            Snapshot(
                identity=who,
                captured_at=1700000000.25,
                source="headers",
                report=UsageReport(limits=(LimitReport("codex", None, (far,)),)),
            )
        ]
    )
    [account] = (await admin.ok("GET", "api/v1/accounts"))["accounts"]
    window = account["limits"][0]["windows"]["5h"]
    assert window["resets_at"] == 2**62
    assert window["resets_at_iso"] is None  # no calendar date that far out
    assert account["limits"][0]["captured_at_iso"] == "2023-11-14T22:13:20.250Z"
