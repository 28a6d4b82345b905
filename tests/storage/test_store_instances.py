"""The instances' heartbeats, the singleton lease and the alert outbox, on every backend, with
two stores on one database as two instances (processes) have them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codexgate.core.rows import InstanceRow, LeaseHeld, NewAlert
from codexgate.storage import open_storage
from codexgate.storage.interface import LeaseLost, Storage
from codexgate.storage.location import DatabaseLocation, parse_database
from tests.helpers.postgres import PostgresServer


@pytest.fixture(params=("sqlite", "postgresql"))
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two stores on one fresh database, as two instances open it."""
    location: DatabaseLocation
    if request.param == "sqlite":
        location = tmp_path / "db" / "codexgate.db"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        location = parse_database(await server.emptied_database())
    first = await open_storage(location)
    second = await open_storage(location)
    yield first, second
    await second.close()
    await first.close()


def instance(id_: str, *, started_at: float = 1.0, role: str = "standby") -> InstanceRow:
    return InstanceRow(id_, "host-" + id_, 100, "0.1.0", started_at, 0.0, role)  # type: ignore[arg-type]


async def test_one_instance_holds_the_lease_until_it_expires_or_is_given_up(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    claims = await asyncio.gather(a.claim_lease("a", 0.6, 0), b.claim_lease("b", 0.6, 0))
    holders = {claim.holder for claim in claims}
    assert len(holders) == 1, claims  # both saw the same holder
    holder = holders.pop()
    first, other = (a, b) if holder == "a" else (b, a)
    standby = "b" if holder == "a" else "a"
    renewed = await first.claim_lease(holder, 0.6, 7)
    assert (renewed.holder, renewed.cursor) == (holder, 7)
    assert renewed.expires_at > renewed.now
    refused = await other.claim_lease(standby, 0.6, 99)
    assert (refused.holder, refused.cursor) == (holder, 7)  # a standby's cursor is not saved
    await asyncio.sleep(0.7)  # not renewed: expired
    taken = await other.claim_lease(standby, 5.0, 99)
    assert (taken.holder, taken.cursor) == (standby, 7)  # the cursor is the last holder's
    await other.release_lease(standby, 9)
    back = await first.claim_lease(holder, 5.0, 0)
    assert (back.holder, back.cursor) == (holder, 9)


async def test_a_fenced_alert_write_needs_the_lease_and_saves_its_cursor(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    assert (await a.claim_lease("a", 30.0, 0)).holder == "a"
    alert = NewAlert(at=time.time(), kind="threshold", message="75 %", threshold=75.0)
    written = await a.record_alerts([alert], [], [], lease=LeaseHeld("a", 12))
    assert [row.kind for row in written] == ["threshold"]
    with pytest.raises(LeaseLost):
        await b.record_alerts([alert], [], [], lease=LeaseHeld("b", 50))
    assert len(await a.alerts()) == 1  # nothing of the refused write
    assert (await b.claim_lease("b", 30.0, 0)).cursor == 12


async def test_the_outbox_holds_fired_alerts_until_delivered(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    now = time.time()
    fired = [
        NewAlert(at=now - 7200, kind="threshold", message="old", threshold=50.0),
        NewAlert(at=now, kind="limit_hit", message="hit"),
        NewAlert(at=now, kind="test", message="a test is sent at once"),
        NewAlert(at=now, kind="threshold", message="new", threshold=90.0),
    ]
    written = await a.record_alerts(fired, [], [])
    pending = await b.undelivered_alerts(now - 3600)
    assert [row.message for row in pending] == ["hit", "new"]
    await b.alerts_delivered([written[1].id], before=now - 3600)
    assert [row.message for row in await a.undelivered_alerts(0.0)] == ["new"]


async def test_heartbeats_list_every_instance_and_forget_the_long_silent(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    await a.instance_beat(instance("a", started_at=1.0, role="leader"), forget_after=3600)
    await b.instance_beat(instance("b", started_at=2.0), forget_after=3600)
    view = await a.instances()
    assert [(row.id, row.role) for row in view.instances] == [("b", "standby"), ("a", "leader")]
    assert all(abs(view.now - row.seen_at) < 5 for row in view.instances)
    await b.instance_beat(instance("b", started_at=2.0, role="stopped"), forget_after=3600)
    assert [row.role for row in (await a.instances()).instances] == ["stopped", "leader"]
    await asyncio.sleep(0.3)
    await b.instance_beat(instance("b", started_at=2.0), forget_after=0.2)
    assert [row.id for row in (await a.instances()).instances] == ["b"]
