"""Several codexgate processes on one PostgreSQL: the traffic spread over them, every live feed
complete, the singleton work (alerts, webhooks) done once, also across a kill -9 of its holder.

The upstream and the webhook receiver run in the test's own process, so that the test sets the
used percent each turn reports and counts every webhook delivery.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp import ClientSession, ClientTimeout, web

from tests.helpers.admin_client import ADMIN
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.feed import Block, SseReader
from tests.helpers.postgres import PostgresServer
from tests.helpers.processes import GatewayProcess, free_port
from tests.helpers.tokens import claims_of, make_jwt
from tests.helpers.waiting import eventually

# The lease is renewed every 2 s and lapses after 10 s: a dead holder's role is taken within 12 s.
TAKEOVER_BOUND: Final = 15.0
SEATS: Final = 4


def seat(number: int) -> str:
    """An Authorization header for seat `number`: a token of its own account and user."""
    claims = copy.deepcopy(claims_of("seat_a"))
    claims["sub"] = f"auth0|seat{number}"
    auth = claims["https://api.openai.com/auth"]
    auth["chatgpt_account_id"] = f"acct-{number}"
    auth["chatgpt_user_id"] = auth["user_id"] = f"user-{number}"
    claims["https://api.openai.com/profile"]["email"] = f"seat{number}@example.com"
    return f"Bearer {make_jwt(claims)}"


@dataclass
class Services:
    """The test's own servers: the upstream (its used percent set per turn) and a webhook
    receiver."""

    upstream: FakeUpstream
    upstream_base: str
    hook_url: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    upstream = FakeUpstream()
    deliveries: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        deliveries.append(orjson.loads(await request.read())["alert"])
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runners = [web.AppRunner(upstream.app()), web.AppRunner(receiver)]
    ports = [free_port(), free_port()]
    for runner, port in zip(runners, ports, strict=True):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Services(
        upstream,
        f"http://127.0.0.1:{ports[0]}",
        f"http://127.0.0.1:{ports[1]}/hook",
        deliveries,
    )
    for runner in runners:
        await runner.cleanup()


async def start_instances(
    count: int, url: str, services: Services, tmp_path: Path
) -> list[GatewayProcess]:
    """`count` gateways on one database, alerting at 50 and 80 % to the receiver."""
    settings = tmp_path / "codexgate.toml"
    settings.write_text(
        "[alerts]\nthresholds = [50, 80]\nlimit_hit = false\nlimit_reset = false\n"
        "forecast = false\nstale_minutes = 0\n"
        f'[[alerts.webhooks]]\nurl = "{services.hook_url}"\nformat = "json"\n'
    )
    gateways = []
    for number in range(count):
        workdir = tmp_path / f"gateway-{number}"
        workdir.mkdir()
        args = ["serve", "--upstream", services.upstream_base, "--db", url]
        gateways.append(
            GatewayProcess(
                [*args, "--config", str(settings)],
                workdir,
                env={"CODEXGATE_ADMIN_TOKEN": ADMIN},
            )
        )
    await asyncio.gather(*(gateway.wait_ready() for gateway in gateways))
    return gateways


async def stop_all(gateways: Sequence[GatewayProcess]) -> None:
    for gateway in gateways:
        if gateway.process.poll() is None:
            await gateway.terminate()
        else:
            gateway.kill()


async def turn(http: ClientSession, gateway: GatewayProcess, number: int) -> int:
    """One streamed turn of seat `number` through `gateway`; its status, the body read whole."""
    async with http.post(
        f"{gateway.base}/backend-api/codex/responses",
        data=b"{}",
        headers={"Authorization": seat(number)},
    ) as response:
        await response.read()
        return response.status


def set_used(services: Services, percent: float) -> None:
    """What the upstream reports from now on: the 5-hour window at `percent`."""
    services.upstream.response_headers["x-codex-primary-used-percent"] = f"{percent:g}"


async def lease_holder(postgres: PostgresServer, url: str) -> tuple[str | None, int | None]:
    """(the id holding the unexpired lease, that instance's pid), or (None, None)."""
    rows = await postgres.run_sql(
        url,
        "SELECT l.holder, i.pid FROM leases AS l LEFT JOIN instances AS i ON i.id = l.holder "
        "WHERE l.name = 'singleton' AND l.expires_at > extract(epoch FROM clock_timestamp())",
    )
    return (rows[0]["holder"], rows[0]["pid"]) if rows else (None, None)


class Subscriber:
    """A live-feed stream on one instance, every event block kept."""

    def __init__(
        self, http: ClientSession, gateway: GatewayProcess, last_event_id: str | None = None
    ) -> None:
        self.blocks: list[Block] = []
        self.arrived: list[float] = []  # time.time() each block came, as self.blocks
        self._task = asyncio.create_task(self._read(http, gateway, last_event_id))

    async def _read(
        self, http: ClientSession, gateway: GatewayProcess, last_event_id: str | None
    ) -> None:
        url = f"{gateway.base}/codexgate/api/v1/events"
        headers = {"Authorization": f"Bearer {ADMIN}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        async with http.get(url, headers=headers, timeout=ClientTimeout(total=None)) as answer:
            assert answer.status == 200
            reader = SseReader(answer)
            while (block := await reader.block(within=120)) is not None:
                if block.data:
                    self.blocks.append(block)
                    self.arrived.append(time.time())

    def rows(self, event: str) -> list[int]:
        """The row ids of the `event` events seen, in order (usage: the history row's id)."""
        found = []
        for block in self.blocks:
            if block.event == event:
                data = block.json()
                found.append(data["row"]["id"] if event == "usage" else data["id"])
        return found

    def request_delays(self) -> list[float]:
        """Seconds from each request's end (its instance's clock: one machine) to its event."""
        return [
            at - data["started_at"] - data["duration_ms"] / 1000
            for block, at in zip(self.blocks, self.arrived, strict=True)
            if block.event == "request" and (data := block.json())
        ]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


pytestmark = pytest.mark.usefixtures("postgres_server")


async def test_three_instances_record_each_turn_once_and_every_feed_sees_it_once(
    postgres_server: PostgresServer, services: Services, tmp_path: Path
) -> None:
    url = await postgres_server.fresh_database()
    gateways = await start_instances(3, url, services, tmp_path)
    try:
        await spread_turns_and_follow_the_feeds(postgres_server, url, services, gateways)
    finally:
        await stop_all(gateways)


async def ids_of(postgres: PostgresServer, url: str, table: str) -> list[int]:
    rows = await postgres.run_sql(url, f"SELECT id FROM {table} ORDER BY id")
    return [row["id"] for row in rows]


async def spread_turns_and_follow_the_feeds(
    postgres_server: PostgresServer, url: str, services: Services, gateways: list[GatewayProcess]
) -> None:
    async with ClientSession() as http:
        subscribers = [Subscriber(http, gateway) for gateway in gateways]
        try:
            await asyncio.sleep(0.5)  # the streams are open
            turns = 0
            # Each turn reports a new percent: one new history row and one request row each,
            # through the instances in turn.
            for step in range(1, 9):
                for number in range(SEATS):
                    set_used(services, 10 + step)
                    status = await turn(http, gateways[turns % 3], number)
                    assert status == 200
                    turns += 1
            request_ids = await eventually(
                lambda: ids_of(postgres_server, url, "requests"),
                accept=lambda ids: len(ids) >= turns,
            )
            usage_ids = await ids_of(postgres_server, url, "usage_snapshots")
            reports = await postgres_server.run_sql(
                url, "SELECT DISTINCT account_id, primary_used_percent FROM usage_snapshots"
            )
            # Each report once; one an instance wrote after a newer one of its seat had been
            # written through another instance is superseded, not written.
            assert len(request_ids) == turns
            assert len(reports) == len(usage_ids) <= turns

            def seen_by_all() -> list[tuple[int, int]]:
                return [(len(s.rows("usage")), len(s.rows("request"))) for s in subscribers]

            await eventually(
                seen_by_all, accept=lambda seen: set(seen) == {(len(usage_ids), turns)}
            )
            for subscriber in subscribers:
                # Exactly once each, in commit (id) order, whichever instance wrote it.
                assert subscriber.rows("usage") == usage_ids
                assert subscriber.rows("request") == request_ids
                assert sorted(subscriber.rows("account")) == subscriber.rows("account")
            # Two thirds of these cross instances: the other's recorder batch, its commit's
            # NOTIFY, then this instance's read. Measured here: p99 0.15-0.19 s (target 0.5 s;
            # the bound, asserted, is 1 s).
            delays = sorted(delay for s in subscribers for delay in s.request_delays())
            p99 = delays[int(len(delays) * 0.99)]
            assert p99 <= 1.0, delays
        finally:
            for subscriber in subscribers:
                await subscriber.close()
        # Every instance shows every account's newest report: 18 % on each seat.
        answers = []
        for gateway in gateways:
            async with http.get(
                f"{gateway.base}/codexgate/api/v1/accounts",
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as response:
                answers.append(await response.json())
        shown = [
            {
                (account["account_key"], limit["limit_id"], window, found["used_percent"])
                for account in answer["accounts"]
                for limit in account["limits"]
                for window, found in limit["windows"].items()
                if found is not None
            }
            for answer in answers
        ]
        assert shown[0] == shown[1] == shown[2]
        assert {percent for _, _, window, percent in shown[0] if window == "5h"} == {18}
        assert len({key for key, _, _, _ in shown[0]}) == SEATS
        holders = await postgres_server.run_sql(url, "SELECT holder FROM leases")
        alive = await postgres_server.run_sql(url, "SELECT id, role FROM instances")
        assert [row["role"] for row in alive].count("leader") == 1
        assert holders[0]["holder"] in {row["id"] for row in alive}


async def test_kill_9_of_the_leader_hands_the_role_over_and_each_alert_goes_out_once(
    postgres_server: PostgresServer, services: Services, tmp_path: Path
) -> None:
    url = await postgres_server.fresh_database()
    gateways = await start_instances(3, url, services, tmp_path)
    try:
        async with ClientSession() as http:
            set_used(services, 30)
            for number in range(SEATS):
                for gateway in gateways:
                    assert await turn(http, gateway, number) == 200
            holder, pid = await eventually(
                lambda: lease_holder(postgres_server, url), accept=lambda found: found[1]
            )
            leader = next(g for g in gateways if g.process.pid == pid)
            others = [g for g in gateways if g is not leader]
            leader.process.kill()  # kill -9: no goodbye, the lease is left to lapse
            killed_at = time.monotonic()
            # While no instance holds the role, seats cross 50 %: served, recorded, not lost.
            set_used(services, 60)
            statuses = [await turn(http, others[number % 2], number) for number in range(SEATS)]
            new_holder, _ = await eventually(
                lambda: lease_holder(postgres_server, url),
                accept=lambda found: found[0] not in (None, holder),
                timeout=TAKEOVER_BOUND + 5,
            )
            takeover = time.monotonic() - killed_at
            # Then they cross 80 % under the new holder.
            set_used(services, 85)
            statuses += [await turn(http, others[number % 2], number) for number in range(SEATS)]
            assert statuses == [200] * (2 * SEATS)
            assert takeover <= TAKEOVER_BOUND, takeover
            assert new_holder in {
                row["id"] for row in await postgres_server.run_sql(url, "SELECT id FROM instances")
            }
            expected = 2 * SEATS  # each seat's 5-hour window crossed 50 and 80 once
            await eventually(lambda: len(services.deliveries), accept=lambda n: n >= expected)
            await asyncio.sleep(3)  # time for a second delivery, if one were coming
        crossings = Counter(
            (alert["account_id"], alert["window"], alert["threshold"])
            for alert in services.deliveries
        )
        assert len(services.deliveries) == expected, services.deliveries
        assert set(crossings.values()) == {1}
        assert {threshold for _, _, threshold in crossings} == {50, 80}
        stored = await postgres_server.run_sql(url, "SELECT kind FROM alerts")
        assert len(stored) == expected
        assert await postgres_server.run_sql(url, "SELECT alert_id FROM alert_outbox") == []
    finally:
        await stop_all(gateways)


# Rows reporting this percent take SLOW seconds to insert: their transaction holds its ids (and
# the write lock) while other instances try to commit theirs.
SLOW_PERCENT: Final = 77
SLOW: Final = 1.5


async def test_a_reconnect_to_another_instance_replays_without_gap_while_commits_race(
    postgres_server: PostgresServer, services: Services, tmp_path: Path
) -> None:
    url = await postgres_server.fresh_database()
    gateways = await start_instances(2, url, services, tmp_path)
    first, second = gateways
    try:
        await postgres_server.run_sql(
            url,
            "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.primary_used_percent = {SLOW_PERCENT} THEN PERFORM pg_sleep({SLOW}); "
            "END IF; RETURN NEW; END $$",
        )
        await postgres_server.run_sql(
            url,
            "CREATE TRIGGER slow BEFORE INSERT ON usage_snapshots "
            "FOR EACH ROW EXECUTE FUNCTION slow_insert()",
        )
        async with ClientSession() as http:
            before = Subscriber(http, first)
            await asyncio.sleep(0.5)
            set_used(services, 20)
            assert await turn(http, first, 0) == 200
            await eventually(lambda: before.rows("usage"), accept=lambda rows: len(rows) == 1)
            last_id = next(b.id for b in reversed(before.blocks) if b.event == "usage")
            await before.close()
            # One instance's commit is slow; the other's start after it and, without one order
            # of commits, would take later ids yet commit first.
            set_used(services, SLOW_PERCENT)
            slow_turn = asyncio.create_task(turn(http, first, 1))
            await asyncio.sleep(0.3)
            set_used(services, 30)
            quick = [await turn(http, second, number) for number in (2, 3)]
            # Back on the other instance, from the last event seen, while the commits race.
            after = Subscriber(http, second, last_id)
            assert [await slow_turn, *quick] == [200] * 3
            every = await eventually(
                lambda: ids_of(postgres_server, url, "usage_snapshots"),
                accept=lambda ids: len(ids) == 4,
                timeout=10,
            )
            await eventually(lambda: after.rows("usage"), accept=lambda rows: len(rows) >= 3)
            await asyncio.sleep(1)  # time for a duplicate, if one were coming
            assert before.rows("usage") + after.rows("usage") == every
            await after.close()
    finally:
        await stop_all(gateways)
