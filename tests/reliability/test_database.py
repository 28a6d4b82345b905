"""The database failing under a running gateway: read-only, full, locked. Traffic never notices,
and what was captured meanwhile waits and is written once the database is back."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tests.helpers.fake_upstream import FakeUpstream, sample_headers, sse_events
from tests.helpers.processes import GatewayProcess, StartGatewayProcess, health
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

HEADERS: Final = sample_headers("headers-plus-200.json")
STREAM: Final = b"".join(sse_events("stream-basic.sse"))
# Store.open sets busy_timeout = 5000: a batch waits this long for a lock before it is put back.
BUSY_TIMEOUT: Final = 5.0


async def run(*command: str) -> tuple[int, str]:
    """Run a command to its end; its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def must(*command: str) -> None:
    """Run a command that has to succeed."""
    code, output = await run(*command)
    assert code == 0, f"{' '.join(command)} exited {code}: {output}"


def need(*tools: str) -> None:
    """Skip unless every command is installed."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


@pytest.fixture
async def tmpfs(tmp_path: Path) -> AsyncIterator[Path]:
    """A 2 MB tmpfs of our own: a disk that fills up quickly."""
    need("mount", "umount", "dd")
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    code, output = await run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint))
    if code != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {output.strip()}")
    yield mountpoint
    await run("umount", "-l", str(mountpoint))


class Ext4:
    """An ext4 image on loop devices, which the kernel can switch to read-only like a bad disk."""

    def __init__(self, image: Path, mountpoint: Path) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.devices: list[str] = []

    async def mount(self) -> str | None:
        """Attach the image to a new loop device and mount that; why it failed, if it did."""
        code, output = await run("losetup", "--find", "--show", str(self.image))
        if code != 0:
            return f"losetup: {output.strip()}"
        device = output.strip()
        self.devices.append(device)
        code, output = await run("mount", "-o", "errors=remount-ro", device, str(self.mountpoint))
        return None if code == 0 else f"mount: {output.strip()}"

    def fail(self) -> None:
        """Report a filesystem error: with errors=remount-ro the kernel makes the mount read-only.

        This is what a failing disk does to a running process's open files; `chmod` and
        `mount -o remount,ro` cannot (the latter is refused while SQLite holds files open).
        """
        name = self.devices[-1].rsplit("/", 1)[-1]
        Path(f"/sys/fs/ext4/{name}/trigger_fs_error").write_text("codexgate test\n")

    async def repair(self) -> None:
        """Detach the broken mount, check the image, and mount it again as a new device.

        The broken mount stays alive (read-only) while the gateway holds files on it, so the
        repaired disk must come back as another device, as a restored disk would.
        """
        await must("umount", "-l", str(self.mountpoint))
        code, output = await run("e2fsck", "-fy", str(self.image))
        assert code in (0, 1), f"e2fsck exited {code}: {output}"  # 1: errors were corrected
        assert await self.mount() is None

    async def remove(self) -> None:
        await run("umount", "-l", str(self.mountpoint))
        for device in self.devices:  # detached once the last user lets go
            await run("losetup", "-d", device)


@pytest.fixture
async def ext4(tmp_path: Path) -> AsyncIterator[Ext4]:
    """A 16 MB ext4 filesystem on a loop device, mounted with errors=remount-ro."""
    need("mount", "umount", "losetup", "mkfs.ext4", "e2fsck", "truncate", "sync")
    if not Path("/sys/fs/ext4").is_dir() or not Path("/dev/loop-control").exists():  # noqa: ASYNC240
        pytest.skip("no ext4 or no loop devices on this machine")
    image = tmp_path / "disk.img"
    mountpoint = tmp_path / "ext4"
    mountpoint.mkdir()
    await must("truncate", "-s", "16M", str(image))
    code, output = await run("mkfs.ext4", "-q", "-F", str(image))
    if code != 0:
        pytest.skip(f"cannot make an ext4 filesystem here: {output.strip()}")
    disk = Ext4(image, mountpoint)
    try:
        failure = await disk.mount()
        if failure is not None:
            pytest.skip(f"cannot mount a loop device here (needs root): {failure}")
        yield disk
    finally:
        await disk.remove()


class Traffic:
    """Turns through the gateway, each reporting its own 5h used percent, and what they left."""

    def __init__(self, gateway: GatewayProcess, fake: FakeUpstream, http: ClientSession) -> None:
        self.gateway = gateway
        self.fake = fake
        self.http = http
        self.turns = 0

    async def send(self, used_percents: Iterable[int]) -> None:
        """One streamed turn per value, one after the other; each must arrive whole."""
        for used in used_percents:
            self.fake.response_headers = {**HEADERS, "x-codex-primary-used-percent": str(used)}
            async with self.http.post(
                f"{self.gateway.base}/backend-api/codex/responses",
                data=b"{}",
                headers={"Authorization": bearer("seat_a")},
            ) as response:
                assert response.status == 200
                assert await response.read() == STREAM
            self.turns += 1

    async def health(self) -> dict[str, Any]:
        return await health(self.gateway)

    async def written(self, db: Path) -> set[float]:
        """The 5h used percents of every history row in the database file."""
        return await asyncio.to_thread(_used_percents, db)

    async def settled(self) -> dict[str, Any]:
        """healthz once every turn's snapshot was either recorded or dropped."""
        state = await eventually(
            self.health,
            accept=lambda h: h["snapshots"]["recorded"] + h["snapshots"]["dropped"] >= self.turns,
            timeout=BUSY_TIMEOUT + 5,
            interval=0.2,
        )
        snapshots = state["snapshots"]
        # Count in = count out: every snapshot is accounted for, none twice.
        assert snapshots["recorded"] + snapshots["dropped"] == self.turns, state
        assert state["queue"]["depth"] == 0, state
        return state


def _used_percents(db: Path) -> set[float]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT five_hour_used_percent FROM usage_snapshots").fetchall()
    connection.close()
    return {row[0] for row in rows}


async def start(
    start_gateway_process: StartGatewayProcess, upstream_server: TestServer, db: Path
) -> GatewayProcess:
    return await start_gateway_process(
        "--upstream", f"http://127.0.0.1:{upstream_server.port}", "--db", str(db)
    )


async def assert_degraded(traffic: Traffic, waiting: int, error: str) -> None:
    """healthz says the writes fail and why, and that the last `waiting` turns' snapshots and
    request records wait for the database, none lost."""
    state = await eventually(
        traffic.health,
        accept=lambda h: h["db"]["failed_writes"] >= 1 and h["queue"]["depth"] >= 2 * waiting,
        timeout=BUSY_TIMEOUT + 5,
        interval=0.2,
    )
    assert state["queue"]["depth"] == 2 * waiting, state  # a snapshot and a request each
    assert (state["snapshots"]["dropped"], state["requests"]["dropped"]) == (0, 0), state
    assert state["status"] == "degraded", state
    assert state["db"]["state"] == "error", state
    assert state["db"]["failing_since"] is not None, state
    assert error in (state["db"]["last_error"] or ""), state


async def assert_recovered(traffic: Traffic) -> dict[str, Any]:
    state = await traffic.settled()
    assert state["status"] == "ok", state
    assert state["db"]["state"] == "ok", state
    return state


async def test_a_disk_gone_read_only_costs_nothing_once_repaired(
    ext4: Ext4,
    start_gateway_process: StartGatewayProcess,
    upstream_server: TestServer,
    fake: FakeUpstream,
    http: ClientSession,
) -> None:
    db = ext4.mountpoint / "codexgate.db"
    gateway = await start(start_gateway_process, upstream_server, db)
    traffic = Traffic(gateway, fake, http)
    await traffic.send([1, 2])
    await assert_recovered(traffic)

    # What the kernel writes back by itself within seconds; the rest would die with the mount.
    await must("sync", "-f", str(db))
    ext4.fail()
    with pytest.raises(OSError, match="Read-only file system"):
        (ext4.mountpoint / "probe").write_bytes(b"x")
    await traffic.send([11, 12, 13])
    await assert_degraded(traffic, 3, "disk I/O error")

    await ext4.repair()
    await traffic.send([21, 22])
    state = await assert_recovered(traffic)
    assert (state["snapshots"]["dropped"], state["requests"]["dropped"]) == (0, 0), state
    assert await traffic.written(db) == {1, 2, 11, 12, 13, 21, 22}


async def test_a_full_disk_costs_nothing_once_space_is_freed(
    tmpfs: Path,
    start_gateway_process: StartGatewayProcess,
    upstream_server: TestServer,
    fake: FakeUpstream,
    http: ClientSession,
) -> None:
    db = tmpfs / "codexgate.db"
    gateway = await start(start_gateway_process, upstream_server, db)
    traffic = Traffic(gateway, fake, http)
    await traffic.send([1, 2])
    await assert_recovered(traffic)

    filler = tmpfs / "filler"
    code, output = await run("dd", "if=/dev/zero", f"of={filler}", "bs=64k")
    assert code != 0
    assert "No space left on device" in output
    await traffic.send([11, 12, 13])
    await assert_degraded(traffic, 3, "database or disk is full")

    filler.unlink()
    await traffic.send([21, 22])
    state = await assert_recovered(traffic)
    assert (state["snapshots"]["dropped"], state["requests"]["dropped"]) == (0, 0), state
    assert await traffic.written(db) == {1, 2, 11, 12, 13, 21, 22}


async def test_a_database_locked_by_another_writer_costs_nothing_once_it_lets_go(
    tmp_path: Path,
    start_gateway_process: StartGatewayProcess,
    upstream_server: TestServer,
    fake: FakeUpstream,
    http: ClientSession,
) -> None:
    db = tmp_path / "codexgate.db"
    gateway = await start(start_gateway_process, upstream_server, db)
    traffic = Traffic(gateway, fake, http)
    await traffic.send([1, 2])
    await assert_recovered(traffic)

    other = sqlite3.connect(db, timeout=10, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(other.execute, "BEGIN EXCLUSIVE")
        started = time.monotonic()
        await traffic.send([11, 12, 13])
        # The writer waits out its busy timeout; the requests did not wait for it.
        assert time.monotonic() - started < BUSY_TIMEOUT / 2
        await assert_degraded(traffic, 3, "database is locked")
    finally:
        await asyncio.to_thread(other.execute, "ROLLBACK")
        other.close()

    await traffic.send([21, 22])
    state = await assert_recovered(traffic)
    assert (state["snapshots"]["dropped"], state["requests"]["dropped"]) == (0, 0), state
    assert await traffic.written(db) == {1, 2, 11, 12, 13, 21, 22}
