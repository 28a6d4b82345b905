"""The OpenAPI document: valid 3.1, exactly the registered routes, and the answers conform."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import hypothesis
import jsonschema_rs
import orjson
import pytest
import schemathesis
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from codexgate.api.openapi import document
from codexgate.security import SESSION_COOKIE
from tests.helpers.admin_client import ADMIN, JWTS, OPAQUE, Admin, Answer
from tests.helpers.fake_upstream import FakeUpstream, load_sample, sample_headers
from tests.helpers.gateway import StartGateway, app_of, recorded, turn
from tests.helpers.openapi import assert_conforms, refs, resolve, validator
from tests.helpers.paths import DATA
from tests.helpers.tokens import bearer

_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# Pages that share the compat prefix but are HTML, not API routes.
_NOT_API: Final = frozenset({"codex/dashboard"})


def own_routes(app: web.Application, prefix: str) -> dict[str, set[str]]:
    """The registered API, feed and compat paths under the prefix, with their methods."""
    routes: dict[str, set[str]] = {}
    for resource in app.router.resources():
        path = resource.canonical
        tail = path.removeprefix(f"/{prefix}/")
        if not tail.startswith(("api/v1/", "codex/")) or tail in _NOT_API:
            continue
        # HEAD comes with GET, and "*" is the 405 answer for every other method.
        methods = {route.method.lower() for route in resource} - {"head", "*"}
        routes.setdefault(path, set()).update(methods)
    return routes


def documented(doc: dict[str, Any]) -> dict[str, set[str]]:
    return {path: set(item) & _METHODS for path, item in doc["paths"].items()}


# -- the document ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["codexgate", "api_xxx"])
def test_the_document_is_valid_openapi_31(prefix: str) -> None:
    doc = document(prefix)
    assert doc["openapi"].startswith("3.1.")
    OPENAPI_31_VALIDATOR.validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
        validator(doc, {"$ref": f"#/components/schemas/{name}"})
    for ref in set(refs(doc)):
        assert resolve(doc, ref) is not None, ref
    schemes = doc["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", SESSION_COOKIE)
    assert doc["security"] == [{"bearer": []}, {"session": []}]
    assert all(path.startswith(f"/{prefix}/") for path in doc["paths"])
    # Every operation answers 401 and 500 with the envelope, and every error status has it.
    for path, item in doc["paths"].items():
        for method in set(item) & _METHODS:
            responses = item[method]["responses"]
            for status in ("401", "500"):
                assert status in responses, (path, method, status)
            for status, response in responses.items():
                if int(status) >= 400:
                    schema = resolve(doc, response["$ref"])["content"]["application/json"]
                    assert schema["schema"]["$ref"].endswith(("/Error", "/CompatError"))
    events = doc["paths"][f"/{prefix}/api/v1/events"]["get"]["responses"]["200"]
    assert set(events["content"]) == {"text/event-stream"}


@pytest.mark.parametrize("prefix", ["codexgate", "api_xxx"])
async def test_the_document_describes_exactly_the_registered_routes(
    start_gateway: StartGateway, http: ClientSession, prefix: str
) -> None:
    server = await start_gateway(admin_token=ADMIN, admin_prefix=prefix)
    doc = document(prefix)
    assert documented(doc) == own_routes(app_of(server), prefix)
    served = await Admin(http, server, prefix).ok("GET", "api/v1/openapi.json")
    assert served == doc


# -- the answers -------------------------------------------------------------------------------


async def seed(server: TestServer, http: ClientSession, fake: FakeUpstream, admin: Admin) -> int:
    """Accounts with every kind of usage (windows, limit hit, spend control, extra family)."""
    alice = await admin.ok(
        "POST", "api/v1/accounts", 201, json={"name": "A", "token": JWTS["seat_a"]}
    )
    await admin.ok("POST", "api/v1/accounts", 201, json={"token": OPAQUE})
    assert await turn(http, server, f"Bearer {JWTS['seat_a']}") == 200
    fake.response_headers = sample_headers("headers-extra-family.json")
    assert await turn(http, server, f"Bearer {JWTS['seat_a']}") == 200
    quota = load_sample("headers-free-429.json")
    fake.status = 429
    fake.response_headers = sample_headers("headers-free-429.json")
    fake.error_body = orjson.dumps(quota["body"])
    assert await turn(http, server, bearer("personal")) == 429
    fake.usage_body = (DATA / "wham-usage-business.json").read_bytes()
    async with http.get(
        f"http://127.0.0.1:{server.port}/backend-api/wham/usage",
        headers={"Authorization": bearer("seat_b")},
    ) as response:
        await response.read()
    await recorded(server, 4)  # the 429's headers and body make one snapshot
    account_id: int = alice["id"]
    return account_id


async def test_answers_with_every_kind_of_data_conform_to_the_document(
    start_gateway: StartGateway, http: ClientSession, fake: FakeUpstream
) -> None:
    server = await start_gateway(admin_token=ADMIN)
    admin = Admin(http, server)
    account_id = await seed(server, http, fake, admin)
    doc = document("codexgate")
    api, compat = "/codexgate/api/v1", "/codexgate/codex"
    accounts = await admin.get("api/v1/accounts")
    limits = [limit for a in orjson.loads(accounts.body)["accounts"] for limit in a["limits"]]
    assert any(limit["limit_hit"] for limit in limits)
    assert any(limit["spend_control"] for limit in limits)
    assert any(limit["spend_control"] and limit["spend_control"]["limits"] for limit in limits)
    assert any(limit["reset_credits"] is not None for limit in limits)
    assert any(limit["credits"] for limit in limits)
    checks: list[tuple[str, str, Answer]] = [
        (f"{api}/accounts", "GET", accounts),
        (f"{api}/accounts/{{id}}", "GET", await admin.get(f"api/v1/accounts/{account_id}")),
        (f"{api}/accounts/{{id}}", "GET", await admin.get("api/v1/accounts/9999")),
        (f"{api}/accounts", "POST", await admin.call("POST", "api/v1/accounts", json={})),
        (
            f"{api}/accounts/{{id}}",
            "PATCH",
            await admin.call("PATCH", f"api/v1/accounts/{account_id}", json={"name": "B"}),
        ),
        (f"{api}/accounts/{{id}}/history", "GET", await admin.get("api/v1/accounts/1/history")),
        (
            f"{api}/accounts/{{id}}/history",
            "GET",
            await admin.get("api/v1/accounts/1/history?limit=1"),
        ),
        (
            f"{api}/accounts/{{id}}/history",
            "GET",
            await admin.get("api/v1/accounts/1/history?window=x"),
        ),
        (f"{api}/accounts/{{id}}/requests", "GET", await admin.get("api/v1/accounts/1/requests")),
        (f"{api}/requests", "GET", await admin.get("api/v1/requests?limit=2")),
        (f"{api}/requests", "GET", await admin.get("api/v1/requests", auth=None)),
        (f"{api}/openapi.json", "GET", await admin.get("api/v1/openapi.json")),
        (f"{compat}/usage", "GET", await admin.get("codex/usage")),
        (f"{compat}/usage/{{token_key}}", "GET", await admin.get(f"codex/usage/{account_id}")),
        (f"{compat}/usage/{{token_key}}", "GET", await admin.get("codex/usage/9999")),
        (f"{compat}/tokens", "GET", await admin.get("codex/tokens")),
        (
            f"{compat}/tokens",
            "POST",
            await admin.call("POST", "codex/tokens", json={"token": "t2"}),
        ),
        (f"{compat}/tokens", "POST", await admin.call("POST", "codex/tokens", json={})),
        (
            f"{compat}/tokens/{{token_key}}",
            "PUT",
            await admin.call("PUT", f"codex/tokens/{account_id}", json={"name": None}),
        ),
    ]
    history = orjson.loads(checks[5][2].body)["items"]
    assert any(item["slots"]["primary"] for item in history)
    for template, method, answer in checks:
        assert_conforms(doc, template, method, answer)
    deleted = await admin.call("DELETE", f"api/v1/accounts/{account_id}")
    assert_conforms(doc, f"{api}/accounts/{{id}}", "DELETE", deleted)
    gone = await admin.call("DELETE", "codex/tokens/9999")
    assert_conforms(doc, f"{compat}/tokens/{{token_key}}", "DELETE", gone)


def run_schemathesis(doc: dict[str, Any], base_url: str, account_id: int) -> int:
    """Generated requests to every GET, POST, PATCH and PUT operation; returns the count sent."""
    schema = schemathesis.openapi.from_dict(doc)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    sent = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        if operation.method.upper() not in ("GET", "POST", "PATCH", "PUT"):
            continue
        if operation.path.endswith("/events"):
            continue  # an endless stream: covered by the feed's own tests
        strategy = operation.as_strategy()
        if "{" in operation.path:
            # Half the cases name an account that exists, so the 200 answers are generated too.
            name = "id" if "{id}" in operation.path else "token_key"
            value = account_id if name == "id" else str(account_id)
            strategy = st.one_of(strategy, operation.as_strategy(path_parameters={name: value}))

        @hypothesis.settings(
            max_examples=15,  # each example is a real request through the gateway
            derandomize=True,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=strategy)
        def exercise(case: schemathesis.Case[Any]) -> None:
            nonlocal sent
            sent += 1
            case.call_and_validate(base_url=base_url, headers=headers, checks=checks)

        exercise()
    return sent


async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    start_gateway: StartGateway, http: ClientSession, fake: FakeUpstream
) -> None:
    server = await start_gateway(admin_token=ADMIN)
    account_id = await seed(server, http, fake, Admin(http, server))
    sent = await asyncio.to_thread(
        run_schemathesis, document("codexgate"), f"http://127.0.0.1:{server.port}", account_id
    )
    assert sent >= 100
