"""The OpenAPI components are the typed shapes of api/schemas.py, and what the handlers and the
feed send fits them; the guard's answers (415, 421, 429) and the feed's 503 are documented."""

from __future__ import annotations

import typing
from typing import Any

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.api import schemas
from codexgate.api.openapi import document, generated_components
from tests.helpers.admin_client import ADMIN, OPAQUE, Admin, Answer
from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.feed import Block, SseReader, feed_url
from tests.helpers.gateway import StartGateway, turn
from tests.helpers.openapi import assert_conforms, validator
from tests.helpers.tokens import bearer

API = "/codexgate/api/v1"


def shapes_of_module() -> set[str]:
    """The name of every TypedDict defined in api/schemas.py."""
    return {
        name
        for name, value in vars(schemas).items()
        if isinstance(value, type)
        and typing.is_typeddict(value)
        and value.__module__ == schemas.__name__
    }


def test_every_shape_is_a_component_generated_from_its_fields() -> None:
    doc = document("codexgate")
    components = doc["components"]["schemas"]
    generated = generated_components()
    assert shapes_of_module() == set(generated)
    for name, schema in generated.items():
        assert components[name] == schema, name
        assert set(schema["properties"]) == set(typing.get_type_hints(getattr(schemas, name))), name
    # No answer carries more than 8 hex digits of a token's SHA-256.
    account = components["Account"]["properties"]
    assert account["token_fingerprint"]["maxLength"] == 8


async def test_feed_payloads_fit_their_components(
    server: TestServer, fake: FakeUpstream, http: ClientSession, admin: Admin
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    await admin.ok("PUT", "api/v1/alerts/rules", json={"thresholds": [40]})
    response = await http.get(feed_url(server), headers={"Authorization": f"Bearer {ADMIN}"})
    feed = SseReader(response)
    await feed.block()
    assert await turn(http, server, bearer("seat_a")) == 200
    await admin.ok("POST", "api/v1/accounts", json={"token": OPAQUE}, status=201)
    blocks: list[Block] = []
    while {block.event for block in blocks} != {"account", "usage", "request", "alert"} or (
        sum(1 for block in blocks if block.event == "account") < 2
    ):
        blocks.append(await feed.event())
    doc = document("codexgate")
    component = {
        "usage": "UsageEvent",
        "request": "Request",
        "alert": "Alert",
        "account": "AccountEvent",
    }
    for block in blocks:
        assert block.event is not None
        schema = {"$ref": f"#/components/schemas/{component[block.event]}"}
        validator(doc, schema).validate(block.json())
    response.close()


async def test_the_guards_answers_are_documented(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    doc = document("codexgate")
    server = await start_gateway(admin_token=ADMIN, max_feed_subscribers=1)
    base = f"http://127.0.0.1:{server.port}"
    auth = {"Authorization": f"Bearer {ADMIN}"}

    async def call(method: str, path: str, **kwargs: Any) -> Answer:
        async with http.request(method, f"{base}{path}", **kwargs) as response:
            return Answer(response.status, await response.read(), dict(response.headers))

    misdirected = await call("GET", f"{API}/accounts", headers={"Host": "evil.example", **auth})
    assert misdirected.status == 421
    assert_conforms(doc, f"{API}/accounts", "GET", misdirected)

    open_feed = await http.get(f"{base}{API}/events", headers=auth)
    assert open_feed.status == 200
    refused = await call("GET", f"{API}/events", headers=auth)
    assert refused.status == 503
    assert_conforms(doc, f"{API}/events", "GET", refused)
    assert "Retry-After" in doc["components"]["responses"]["TooManySubscribers"]["headers"]
    open_feed.close()

    wrong = {"Authorization": "Bearer " + "x" * 32}
    statuses = [(await call("GET", f"{API}/requests", headers=wrong)).status for _ in range(6)]
    assert statuses[-1] == 429
    blocked = await call("GET", f"{API}/requests", headers=wrong)
    assert_conforms(doc, f"{API}/requests", "GET", blocked)

    unguarded = await start_gateway(no_auth=True)  # else a request without a bearer is 401
    url = f"http://127.0.0.1:{unguarded.port}{API}/accounts"
    async with http.post(
        url, data=orjson.dumps({"token": OPAQUE}), headers={"Content-Type": "text/plain"}
    ) as response:
        answer = Answer(response.status, await response.read(), dict(response.headers))
    assert answer.status == 415
    assert_conforms(doc, f"{API}/accounts", "POST", answer)
