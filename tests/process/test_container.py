"""The Dockerfile's image, built and run as a self-hoster would: on a docker daemon that this test
starts itself (as root, --bridge=none, everything in a temporary folder), from a base image made
here with mmdebstrap (no registry is reachable), with --network none and the fake upstream in a
second container from the same image that shares the network namespace. It proxies a turn and
finds it recorded in the /data volume, as the non-root user, across a restart, with the admin
token from a secret file, healthy by the image's HEALTHCHECK, and drained by `docker stop`."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp import ClientSession, UnixConnector

from codexgate import __version__
from codexgate.paths import DATABASE_FILE
from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import REPO
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

DOCKERD: Final = shutil.which("dockerd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
DOCKER: Final = shutil.which("docker")
MMDEBSTRAP: Final = shutil.which("mmdebstrap")
# What the Dockerfile asks of a base image: python3 with its venv module, and useradd.
BASE_SUITE: Final = "bookworm"
BASE_PACKAGES: Final = ("python3", "python3-venv", "passwd")
BASE_IMAGE: Final = "codexgate-test-base:" + BASE_SUITE
IMAGE: Final = "codexgate:test"
# This machine reaches PyPI through a TLS proxy that only the host's CA bundle trusts, as a
# company's base image would: the base gets that bundle and points pip (and Python) at it.
HOST_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")
# The storage driver and whether the daemon's folder is a tmpfs, in the order tried: overlay2
# shares layers between images; vfs copies each one (slow) but works on any file system.
DAEMON_SETUPS: Final = (("overlay2", True), ("overlay2", False), ("vfs", False))
APP_UID: Final = 10001
GATEWAY_PORT: Final = 8787
# The sidecar's two fake upstreams: one answers at once, one takes 2.5 s per turn.
FAST_UPSTREAM_PORT: Final = 9100
SLOW_UPSTREAM_PORT: Final = 9101
SLOW_EVENT_DELAY: Final = 0.5
GATEWAY: Final = f"http://127.0.0.1:{GATEWAY_PORT}"
SECRET_PATH: Final = "/run/secrets/codexgate_admin_token"
# The sidecar's Unix socket, in a folder bind-mounted from this machine.
GATEWAY_SOCKET: Final = "gateway.sock"
TURN_PATH: Final = "/backend-api/codex/responses"
DOCKER_STOP_TIMEOUT: Final = 10  # docker stop's default before SIGKILL

# The sidecar: the fake upstream of tests/helpers/fake_upstream.py on two loopback ports of the
# shared network namespace, and a forwarder from a Unix socket in a bind-mounted folder to the
# gateway's port, so that this test's HTTP client reaches a gateway that has no network.
_SIDECAR_MAIN: Final = """
import asyncio, sys
from aiohttp import web
from tests.helpers.fake_upstream import FakeUpstream

fast_port, slow_port, slow_delay, gateway_port, socket_path = sys.argv[1:]


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def forward(client_reader, client_writer):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(gateway_port))
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))


async def main():
    for port, delay in ((fast_port, 0.0), (slow_port, float(slow_delay))):
        runner = web.AppRunner(FakeUpstream(event_delay=delay).app(), auto_decompress=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(port)).start()
    server = await asyncio.start_unix_server(forward, socket_path)
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""


class DockerError(AssertionError):
    """A docker command failed; the message carries what it printed."""


@dataclass(frozen=True)
class Docker:
    """The docker client, talking to this test's own daemon only."""

    host: str
    config_dir: Path

    def __call__(self, *args: str, timeout: float = 60) -> str:
        """Run `docker <args>`; its standard output, or DockerError with everything it said."""
        done = subprocess.run(
            [DOCKER or "docker", "--host", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # The classic builder, which every client has: Debian's docker.io daemon (20.10)
            # has no BuildKit unless configured, and the buildx plugin is not installed.
            env={**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(self.config_dir)},
        )
        if done.returncode != 0:
            raise DockerError(f"docker {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done.stdout

    def inspect(self, name: str) -> Any:
        """`docker inspect` of one object, as JSON."""
        [found] = json.loads(self("inspect", name))
        return found

    def logs(self, container: str) -> str:
        """What the container wrote, both streams (codexgate logs to standard error)."""
        done = subprocess.run(
            [DOCKER or "docker", "--host", self.host, "logs", container],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout


@dataclass(frozen=True)
class Daemon:
    docker: Docker
    storage_driver: str
    workdir: Path  # the daemon's folder, in memory when it could be


def _start_dockerd(base: Path, driver: str) -> tuple[subprocess.Popen[bytes], Docker] | str:
    """dockerd on `driver` in `base`, answering; or why it did not start (its last log lines)."""
    (base / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json
    (base / "client").mkdir()
    docker = Docker(f"unix://{base}/docker.sock", base / "client")
    log_path = base / "dockerd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                DOCKERD or "dockerd",
                "--iptables=false",
                "--bridge=none",
                f"--storage-driver={driver}",
                f"--data-root={base / 'data'}",
                f"--exec-root={base / 'exec'}",
                f"--pidfile={base / 'dockerd.pid'}",
                f"--config-file={base / 'daemon.json'}",
                f"--host={docker.host}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # containerd, runc and docker-init are in /usr/bin and /usr/sbin on Debian.
            env={**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"},
        )
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            docker("version", timeout=10)
        except DockerError:
            time.sleep(0.1)
            continue
        return process, docker
    _stop_dockerd(process)
    last_line = (log_path.read_text(errors="replace").splitlines() or ["(no log)"])[-1]
    return f"dockerd --storage-driver={driver} in {base} did not start: {last_line}"


def _stop_dockerd(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _unmount_under(root: Path) -> None:
    """Unmount everything under root (a tmpfs, what dockerd leaves), deepest first."""
    mounts = [
        Path(line.split()[4].replace("\\040", " "))
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]
    for mount in sorted((m for m in mounts if m.is_relative_to(root)), reverse=True):
        subprocess.run(["umount", "--lazy", str(mount)], check=False, capture_output=True)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """This module's own docker daemon, stopped and removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root, and these tests start their own daemon")
    missing = [
        f"{program} (Debian package {package})"
        for program, package, found in (
            ("dockerd", "docker.io", DOCKERD),
            ("docker", "docker.io", DOCKER),
            ("mmdebstrap", "mmdebstrap", MMDEBSTRAP),
        )
        if found is None
    ]
    if missing:
        pytest.skip("not installed: " + ", ".join(missing))
    # Short: containerd's sockets live under the exec root, and a socket path has 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="codexgate-dockerd-"))
    try:
        failures = []
        for number, (driver, in_memory) in enumerate(DAEMON_SETUPS):
            base = root / str(number)
            base.mkdir()
            # overlay2's layers in memory (about 0.5 GB): faster, and removing them is one
            # unmount rather than deleting tens of thousands of files. vfs copies every layer
            # (gigabytes), so it stays on disk.
            if in_memory:
                mount = ["mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(base)]
                if subprocess.run(mount, check=False, capture_output=True).returncode != 0:
                    continue
            started = _start_dockerd(base, driver)
            if isinstance(started, str):
                failures.append(started)
                continue
            process, docker = started
            try:
                yield Daemon(docker, driver, base)
            finally:
                containers = docker("ps", "--all", "--quiet").split()
                if containers:
                    docker("rm", "--force", "--volumes", *containers)
                _stop_dockerd(process)
            return
        pytest.skip("; ".join(failures))
    finally:
        _unmount_under(root)
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    """The Dockerfile built on a Debian base made with mmdebstrap and imported (once): about
    50 s on two cores, 30 of them mmdebstrap's and 20 the build's (with PyPI downloads)."""
    docker = daemon.docker
    base_tar = daemon.workdir / "base.tar"
    trust = (
        [
            '--customize-hook=mkdir -p "$1/etc/ssl/certs"',
            f"--customize-hook=upload {HOST_CA_BUNDLE} /etc/ssl/certs/ca-certificates.crt",
        ]
        if HOST_CA_BUNDLE.is_file()
        else []
    )
    subprocess.run(
        [
            MMDEBSTRAP or "mmdebstrap",
            "--quiet",
            "--variant=essential",
            f"--include={','.join(BASE_PACKAGES)}",
            '--aptopt=APT::Install-Recommends "false"',
            # Merged /usr made by a hook rather than by the usrmerge package, which needs perl.
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            "--dpkgopt=force-unsafe-io",
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")),
            *trust,
            BASE_SUITE,
            str(base_tar),
        ],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "TMPDIR": str(daemon.workdir)},  # where it unpacks the packages
    )
    docker(
        "import",
        # What a Debian image sets; without PATH the Dockerfile's ENV PATH would lose the rest.
        "--change=ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change=ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        str(base_tar),
        BASE_IMAGE,
        timeout=120,
    )
    base_tar.unlink()
    docker(
        "build",
        # The builder stage installs from PyPI; with --bridge=none, host is the network there is.
        "--network=host",
        f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
        f"--build-arg=VERSION={__version__}",
        f"--tag={IMAGE}",
        str(REPO),
        timeout=600,
    )
    return IMAGE


@dataclass(frozen=True)
class Sidecar:
    """The container that owns the network namespace and serves the fake upstreams."""

    name: str
    socket: Path  # on this machine: the gateway's port, forwarded


@pytest.fixture(scope="module")
def sidecar(daemon: Daemon, image: str) -> Iterator[Sidecar]:
    """The fake upstreams in a container with no network, started before any gateway joins it."""
    shared = daemon.workdir / "sidecar"
    shared.mkdir()
    os.chown(shared, APP_UID, APP_UID)  # the sidecar runs as the image's user
    name = "codexgate-sidecar"
    daemon.docker(
        "run",
        "--detach",
        f"--name={name}",
        "--network=none",
        "--entrypoint=/opt/codexgate/bin/python",
        f"--volume={REPO / 'tests'}:/repo/tests:ro",
        f"--volume={shared}:/shared",
        "--workdir=/repo",
        image,
        "-c",
        _SIDECAR_MAIN,
        str(FAST_UPSTREAM_PORT),
        str(SLOW_UPSTREAM_PORT),
        str(SLOW_EVENT_DELAY),
        str(GATEWAY_PORT),
        f"/shared/{GATEWAY_SOCKET}",
    )
    socket = shared / GATEWAY_SOCKET
    deadline = time.monotonic() + 30
    while not socket.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"the sidecar did not start:\n{daemon.docker.logs(name)}")
        time.sleep(0.05)
    yield Sidecar(name, socket)
    daemon.docker("rm", "--force", name)


@dataclass(frozen=True)
class Gateway:
    """A codexgate container in the sidecar's network namespace, its /data a named volume."""

    docker: Docker
    name: str
    volume: str
    admin_token: str

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.docker.inspect(self.name)["State"]
        return state

    def database(self) -> Path:
        """The database file in the volume, as this machine sees it."""
        mountpoint = self.docker("volume", "inspect", "--format={{.Mountpoint}}", self.volume)
        return Path(mountpoint.strip()) / DATABASE_FILE

    def recorded_turns(self) -> int:
        with closing(sqlite3.connect(f"file:{self.database()}?mode=ro", uri=True)) as db:
            count: int = db.execute(
                "SELECT count(*) FROM requests WHERE path = ?", (TURN_PATH,)
            ).fetchone()[0]
        return count

    async def healthy(self) -> None:
        """Wait until the image's HEALTHCHECK says healthy."""

        def health() -> str:
            status: str = self.state()["Health"]["Status"]
            return status

        try:
            await eventually(health, timeout=30, interval=0.2, accept="healthy".__eq__)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.docker.logs(self.name)}") from None


StartGateway = Callable[[int], Gateway]


@pytest.fixture
def start_gateway(daemon: Daemon, sidecar: Sidecar, tmp_path: Path) -> Iterator[StartGateway]:
    """Start codexgate containers on this test's volume, with the admin token in a secret file
    that only the image's user can read; removed at the end."""
    docker = daemon.docker
    admin_token = secrets.token_urlsafe(24)
    secret = tmp_path / "codexgate_admin_token"
    secret.write_text(admin_token + "\n")
    secret.chmod(0o400)
    os.chown(secret, APP_UID, APP_UID)
    volume = f"codexgate-data-{tmp_path.name}".lower()
    names: list[str] = []

    def start(upstream_port: int) -> Gateway:
        name = f"codexgate-{len(names)}"
        names.append(name)
        docker(
            "run",
            "--detach",
            f"--name={name}",
            f"--network=container:{sidecar.name}",
            f"--volume={volume}:/data",
            f"--volume={secret}:{SECRET_PATH}:ro",
            f"--env=CODEXGATE_ADMIN_TOKEN_FILE={SECRET_PATH}",
            f"--env=CODEXGATE_UPSTREAM=http://127.0.0.1:{upstream_port}",
            # The image's own check, run every second rather than every 10 s.
            "--health-interval=1s",
            IMAGE,
        )
        return Gateway(docker, name, volume, admin_token)

    yield start
    if names:
        docker("rm", "--force", *names)
    docker("volume", "rm", "--force", volume)


@pytest.fixture
async def http(sidecar: Sidecar) -> AsyncIterator[ClientSession]:
    """An HTTP client whose every connection goes to the gateway's port in the namespace."""
    async with ClientSession(connector=UnixConnector(path=str(sidecar.socket))) as session:
        yield session


def test_the_image_is_configured_as_documented(daemon: Daemon, image: str) -> None:
    config = daemon.docker.inspect(image)["Config"]
    assert config["User"] == f"{APP_UID}:{APP_UID}"
    assert set(config["Volumes"]) == {"/data"}
    assert config["WorkingDir"] == "/data"
    assert {"CODEXGATE_DB=/data/codexgate.db", "CODEXGATE_HOST=0.0.0.0"} <= set(config["Env"])
    assert set(config["ExposedPorts"]) == {f"{GATEWAY_PORT}/tcp"}
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["/opt/codexgate/bin/codexgate"]  # exec form: no shell
    assert config["Cmd"] == ["serve"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["Healthcheck"]["Interval"] == 10 * 10**9
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "MIT"

    version = daemon.docker("run", "--rm", "--network=none", image, "--version")
    assert version == f"codexgate {__version__}\n"
    # Only the virtual environment came from the builder: no sources, no pip; the fast extra.
    contents = daemon.docker(
        "run",
        "--rm",
        "--network=none",
        "--entrypoint=/opt/codexgate/bin/python",
        image,
        "-c",
        "import os, importlib.util as u; "
        "print(os.path.exists('/src'), u.find_spec('pip') is None, bool(u.find_spec('uvloop')))",
    )
    assert contents == "False True True\n"


async def test_a_turn_is_recorded_in_the_volume_as_the_image_user_and_survives_a_restart(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = start_gateway(FAST_UPSTREAM_PORT)
    await gateway.healthy()

    # codexgate itself is PID 1 in the container, as the image's user.
    state = gateway.state()
    status = await asyncio.to_thread(Path(f"/proc/{state['Pid']}/status").read_text)
    assert f"Uid:\t{APP_UID}\t{APP_UID}\t{APP_UID}\t{APP_UID}\n" in status
    assert f"Gid:\t{APP_UID}\t{APP_UID}\t{APP_UID}\t{APP_UID}\n" in status
    assert f"NSpid:\t{state['Pid']}\t1\n" in status

    async with http.post(
        GATEWAY + TURN_PATH, data=b"{}", headers={"Authorization": bearer("seat_a")}
    ) as response:
        assert response.status == 200
        assert await response.read() == b"".join(sse_events("stream-basic.sse"))
    assert await eventually(gateway.recorded_turns, timeout=15) == 1
    database = gateway.database()
    assert (database.stat().st_uid, database.stat().st_mode & 0o777) == (APP_UID, 0o600)

    # The admin token is the one in the secret file, and only that one.
    accounts = f"{GATEWAY}/codexgate/api/v1/accounts"
    bearer_admin = {"Authorization": f"Bearer {gateway.admin_token}"}
    async with http.get(accounts, headers={"Authorization": "Bearer not-the-token"}) as refused:
        assert refused.status == 401
    async with http.get(accounts, headers=bearer_admin) as listed:
        assert listed.status == 200
        [account] = (await listed.json())["accounts"]
    assert account["email"] == "alice@example.com"

    await asyncio.to_thread(gateway.docker, "restart", gateway.name)
    await gateway.healthy()
    assert gateway.recorded_turns() == 1
    async with http.get(accounts, headers=bearer_admin) as listed:
        assert [a["id"] for a in (await listed.json())["accounts"]] == [account["id"]]
    log = gateway.docker.logs(gateway.name)
    assert log.count("database /data/codexgate.db\n") == 2  # both starts, from CODEXGATE_DB


async def test_docker_stop_drains_a_turn_in_flight_and_exits_0(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = start_gateway(SLOW_UPSTREAM_PORT)
    await gateway.healthy()
    events = sse_events("stream-basic.sse")
    async with http.post(
        GATEWAY + TURN_PATH, data=b"{}", headers={"Authorization": bearer("seat_a")}
    ) as response:
        assert response.status == 200
        received = await response.content.readuntil(b"\n\n")
        assert received == events[0]
        began = time.monotonic()
        stop = asyncio.create_task(asyncio.to_thread(gateway.docker, "stop", gateway.name))
        received += await response.read()
    await stop
    took = time.monotonic() - began
    assert received == b"".join(events)  # the turn ran to its end after SIGTERM
    state = gateway.state()
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 0, False)
    assert took < DOCKER_STOP_TIMEOUT  # it exited by itself, without docker's SIGKILL
    log = gateway.docker.logs(gateway.name)
    assert "1 connections open, 1 of them with a request in flight" in log
    assert "drained in" in log
    assert gateway.recorded_turns() == 1
