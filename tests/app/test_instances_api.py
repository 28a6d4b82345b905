"""Each instance observable: two gateways on one database name themselves on healthz, list each
other in GET api/v1/instances with exactly one leader, report their role in /metrics, and show
one another on the overview; one that stops is listed as stopped, and the other takes the lead."""

from __future__ import annotations

import dataclasses
import functools
import re
import socket
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from codexgate import __version__
from codexgate.api.openapi import document
from codexgate.api.schemas import instances_json
from codexgate.app import SERVER_OPTIONS, create_app
from codexgate.config import Config
from codexgate.core.rows import InstanceRow, InstancesView
from codexgate.dashboard import i18n
from codexgate.keys import INSTANCE, INSTANCE_OPTIONS
from codexgate.services.instances import Coordinator, InstanceOptions
from tests.helpers.admin_client import ADMIN, Admin
from tests.helpers.gateway import StartGateway, app_of
from tests.helpers.openapi import assert_conforms
from tests.helpers.prometheus import parse, value
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.backends("sqlite", "postgresql")

# Short, so that a stopped or silent instance shows within a second or two.
FAST = InstanceOptions(beat=0.2, lease=1.0, alive_for=1.0)
INSTANCES = "/codexgate/api/v1/instances"


@pytest.fixture
def start_instance(config: Config, aiohttp_server: AiohttpServer) -> StartGateway:
    """Start a gateway with the admin token and FAST instance options on the test's database."""

    async def start(**overrides: object) -> TestServer:
        app = create_app(dataclasses.replace(config, admin_token=ADMIN, **overrides))  # type: ignore[arg-type]
        app[INSTANCE_OPTIONS] = FAST
        options = {k: v for k, v in SERVER_OPTIONS.items() if k != "handler_cancellation"}
        return await aiohttp_server(app, **options)

    return start


def coordinator(server: TestServer) -> Coordinator:
    return app_of(server)[INSTANCE]


async def listed(http: ClientSession, server: TestServer) -> dict[str, Any]:
    """GET api/v1/instances on one gateway, checked against the OpenAPI document."""
    answer = await Admin(http, server).get("api/v1/instances")
    assert answer.status == 200, answer.body
    assert_conforms(document("codexgate"), INSTANCES, "GET", answer)
    found: dict[str, Any] = answer.json
    return found


def by_id(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in found["instances"]}


async def test_two_instances_name_themselves_and_agree_on_one_leader(
    start_instance: StartGateway, http: ClientSession
) -> None:
    first = await start_instance()
    second = await start_instance()
    a, b = coordinator(first), coordinator(second)
    # The first to start claims the lease before it serves; the second finds it held.
    assert (a.leads, b.leads) == (True, False)

    def both_alive(found: dict[str, Any]) -> bool:
        rows = by_id(found)
        return {a.id, b.id} <= set(rows) and all(rows[i]["alive"] for i in (a.id, b.id))

    for server, this in ((first, a), (second, b)):
        found = await eventually(functools.partial(listed, http, server), accept=both_alive)
        rows = by_id(found)
        assert found["leader"] == a.id
        assert [item["state"] for item in found["instances"]].count("leader") == 1
        assert rows[a.id]["state"] == "leader"
        assert rows[b.id]["state"] == "standby"
        assert {i for i, item in rows.items() if item["this"]} == {this.id}
        for item in rows.values():
            assert item["hostname"] == socket.gethostname()
            assert item["version"] == __version__
            assert 0 <= item["age_seconds"] <= FAST.alive_for
        assert rows[b.id]["pid"] == rows[a.id]["pid"]  # one test process
        assert found["now_iso"].endswith("Z")

    # healthz names the instance that answers, and the leader both agree on.
    for server, this, role, takeovers in ((first, a, "leader", 1), (second, b, "standby", 0)):
        health = await Admin(http, server).get("healthz", auth=None)
        assert health.status == 200
        instance = health.json["instance"]
        assert instance["id"] == this.id
        assert instance["hostname"] == socket.gethostname()
        assert instance["pid"] == this.pid
        assert (instance["role"], instance["leader"], instance["takeovers"]) == (
            role,
            a.id,
            takeovers,
        )
        assert instance["started_at"].endswith("Z")
        assert instance["db_seen_at"] is not None
        assert b"postgresql://" not in health.body  # never the database's URL

    # /metrics: each instance its own info series, and exactly one says it leads.
    leading = 0.0
    for server, this in ((first, a), (second, b)):
        answer = await Admin(http, server).get("metrics")
        assert answer.status == 200
        scraped = parse(answer.body)
        labels = {"instance_id": this.id, "hostname": this.hostname, "version": __version__}
        assert value(scraped, "codexgate_instance_info", **labels) == 1
        assert len(scraped["codexgate_instance_info"]) == 1
        leader_gauge = value(scraped, "codexgate_singleton_leader")
        assert leader_gauge == (1 if this is a else 0)
        leading += leader_gauge or 0.0
        took = value(scraped, "codexgate_singleton_takeovers_total")
        assert took == (1 if this is a else 0)
    assert leading == 1

    # The leader stops: its row says so at once, and the other takes the role over.
    await first.close()

    def taken_over(found: dict[str, Any]) -> bool:
        return bool(found["leader"] == b.id)

    found = await eventually(lambda: listed(http, second), accept=taken_over)
    rows = by_id(found)
    assert (rows[a.id]["role"], rows[a.id]["state"], rows[a.id]["alive"]) == (
        "stopped",
        "stopped",
        False,
    )
    assert (rows[b.id]["state"], rows[b.id]["alive"]) == ("leader", True)
    health = await Admin(http, second).get("healthz", auth=None)
    instance = health.json["instance"]
    assert (instance["role"], instance["leader"], instance["takeovers"]) == ("leader", b.id, 1)
    scraped = parse((await Admin(http, second).get("metrics")).body)
    assert value(scraped, "codexgate_singleton_leader") == 1
    assert value(scraped, "codexgate_singleton_takeovers_total") == 1


async def test_the_overview_shows_the_instances_once_there_are_two(
    start_instance: StartGateway, http: ClientSession
) -> None:
    first = await start_instance()
    alone = await Admin(http, first).get("")
    text = alone.body.decode()
    # One instance: no panel, a line saying so.
    assert re.search(r'<details class="panel instances" id="instances-panel"[^>]* hidden>', text)
    line = re.search(r'<p class="instances-line hint" id="instances-line">([^<]*)</p>', text)
    assert line is not None
    assert line.group(1) == f"1 instance, on {socket.gethostname()}"

    second = await start_instance()
    a, b = coordinator(first), coordinator(second)
    page = (await Admin(http, second).get("")).body.decode()
    assert re.search(r'<details class="panel instances" id="instances-panel"[^>]*open>', page)
    assert re.search(r'id="instances-line"[^>]* hidden>', page)
    items = re.findall(r'<li class="instance state-(\w+)" data-instance-id="(\w+)"', page)
    assert sorted(items) == sorted([("leader", a.id), ("standby", b.id)])
    assert '<span class="count" id="instances-count"' in page
    assert re.search(r'id="instances-count"[^>]*>2<', page)
    # The answering instance is marked, the other not.
    this = re.search(
        rf'data-instance-id="{b.id}".*?data-field="instance-this"( hidden)?>', page, re.S
    )
    other = re.search(
        rf'data-instance-id="{a.id}".*?data-field="instance-this"( hidden)?>', page, re.S
    )
    assert this is not None
    assert this.group(1) is None
    assert other is not None
    assert other.group(1) == " hidden"
    # The script asks the API again every 10 s; it gets the interval with the page.
    data = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S)
    assert data is not None
    assert orjson.loads(data.group(1))["instances_refresh_seconds"] == 10


def row(instance_id: str, seen_at: float, role: str = "standby") -> InstanceRow:
    return InstanceRow(
        id=instance_id,
        hostname="host",
        pid=1,
        version=__version__,
        started_at=0.0,
        seen_at=seen_at,
        role=role,  # type: ignore[arg-type]
    )


def test_a_silent_leader_is_gone_and_not_named_the_leader() -> None:
    view = InstancesView(
        now=1000.0,
        instances=[
            row("new", 999.0),
            row("dead", 960.0, "leader"),  # silent for 40 s: killed, its lease not yet taken
            row("done", 999.5, "stopped"),
        ],
    )

    def alive(found: InstanceRow, now: float) -> bool:
        """The coordinator's rule with its default 30 s (services/instances.py)."""
        return found.role != "stopped" and now - found.seen_at <= 30.0

    shown = instances_json(view, this_id="new", holder="dead", alive=alive)
    assert shown["leader"] is None
    assert [(i["id"], i["state"], i["alive"], i["this"]) for i in shown["instances"]] == [
        ("new", "standby", True, True),
        ("dead", "gone", False, False),
        ("done", "stopped", False, False),
    ]
    assert shown["instances"][1]["age_seconds"] == 40.0
    taken = instances_json(view, this_id="new", holder="new", alive=alive)
    assert taken["leader"] == "new"
    assert taken["instances"][0]["state"] == "leader"


def test_the_panels_strings_are_in_both_languages() -> None:
    states = ("leader", "standby", "stopped", "gone")
    assert {f"instances.state.{state}" for state in states} <= i18n.keys()
