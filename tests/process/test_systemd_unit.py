"""The systemd units of deploy/systemd as they are shipped: `systemd-analyze verify` and
`security` pass them, their settings agree with codexgate's (setting names, the database in the
state directory, a stop timeout longer than the drain), the template pair differs from the single
unit only where it must, and codexgate serves under the limits they set that a test can set
without systemd: their environment, umask, open-files limit and MemoryDenyWriteExecute."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from aiohttp import ClientSession

from codexgate.config import ENV_PREFIX, SETTINGS, Config
from codexgate.listener import FILES_PER_CONNECTION, RESERVED_FILES
from codexgate.paths import DATABASE_FILE
from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import REPO
from tests.helpers.processes import UpstreamProcess, free_port
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

UNITS: Final = REPO / "deploy" / "systemd"
SINGLE: Final = UNITS / "codexgate.service"
TEMPLATE: Final = UNITS / "codexgate@.service"
ENV_EXAMPLE: Final = UNITS / "codexgate.env.example"
SYSTEMD_ANALYZE: Final = Path("/usr/bin/systemd-analyze")
# Where Debian keeps the units every unit depends on (sysinit.target, ...); /lib is /usr/lib on
# a merged-/usr system, and older ones have only /lib.
HOST_UNITS: Final = next(
    (
        path
        for path in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
        if path.is_dir()
    ),
    Path("/usr/lib/systemd/system"),
)
SETTING_VARIABLES: Final = frozenset(
    {ENV_PREFIX + "CONFIG", *(ENV_PREFIX + setting.name.upper() for setting in SETTINGS)}
)
# After shutdown_grace, what is still open is closed within 2 s, then the queued snapshots are
# written: the unit must wait at least this much longer before it sends SIGKILL.
STOP_MARGIN: Final = 10.0
# `systemd-analyze security` scores 0 (locked down) to 10 (unsafe); the units score 1.4 and 1.5.
MAX_EXPOSURE: Final = 2.0
PR_GET_MDWE: Final = 66


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit file's assignments, in file order, as (section, key, value)."""

    path: Path
    assignments: tuple[tuple[str, str, str], ...]

    @classmethod
    def read(cls, path: Path) -> Unit:
        """Parse the unit file syntax: sections, repeated keys, comments, `\\` continuations."""
        assignments: list[tuple[str, str, str]] = []
        section = ""
        for line in path.read_text().replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, separator, value = line.partition("=")
            assert separator, f"{path.name}: not an assignment: {line!r}"
            assignments.append((section, key.strip(), value.strip()))
        return cls(path, tuple(assignments))

    def values(self, key: str, section: str = "Service") -> list[str]:
        """Every value of a list-like key; an empty assignment resets the list, as in systemd."""
        values: list[str] = []
        for where, name, value in self.assignments:
            if (where, name) == (section, key):
                values = [*values, value] if value else []
        return values

    def value(self, key: str, section: str = "Service") -> str:
        """The last value of a key, which is the one systemd uses."""
        found = [
            value for where, name, value in self.assignments if (where, name) == (section, key)
        ]
        assert found, f"{self.path.name} sets no {key}= in [{section}]"
        return found[-1]

    def environment(self) -> dict[str, str]:
        """The Environment= variables, each value as systemd unquotes it."""
        return dict(
            word.split("=", 1)
            for value in self.values("Environment")
            for word in shlex.split(value)
        )


def seconds(value: str) -> float:
    """A systemd time span of seconds and minutes ("60", "90s", "2min")."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", value)
    assert match, f"unexpected time span {value!r}"
    return float(match[1]) * (60 if match[2] == "min" else 1)


@pytest.fixture(scope="module", params=[SINGLE, TEMPLATE], ids=lambda path: path.name)
def unit(request: pytest.FixtureRequest) -> Unit:
    path: Path = request.param
    return Unit.read(path)


def test_every_unit_and_the_example_secrets_file_are_shipped() -> None:
    assert sorted(path.name for path in UNITS.iterdir()) == [
        "codexgate.env.example",
        "codexgate.service",
        "codexgate@.service",
    ]


@pytest.mark.parametrize("name", ["codexgate.service", "codexgate@a.service"])
def test_systemd_analyze_verify_accepts_the_unit_as_shipped(name: str, tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE.exists(), "systemd-analyze is missing: `make test` installs systemd"
    # A root folder holding the files byte for byte, the host's own units beside them, and the
    # entry point of this virtual environment at the path ExecStart names: verify checks that the
    # command exists, and the unit must keep naming where an installation puts it.
    root = tmp_path / "root"
    installed = root / "etc" / "systemd" / "system"
    installed.mkdir(parents=True)
    for path in (SINGLE, TEMPLATE):
        shutil.copyfile(path, installed / path.name)
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    (root / "usr" / "lib" / "systemd" / "system").symlink_to(HOST_UNITS)
    command = Path(shlex.split(Unit.read(SINGLE).value("ExecStart"))[0])
    assert command.is_absolute()
    entry_point = root / command.relative_to("/")
    entry_point.parent.mkdir(parents=True)
    shutil.copy2(Path(sys.executable).with_name("codexgate"), entry_point)

    verified = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={root}", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # An unknown or misspelt directive is only a warning ("Unknown key ..., ignoring"): any line
    # about these units fails the test, not only the exit code.
    about_ours = [line for line in verified.stderr.splitlines() if "codexgate" in line]
    assert verified.returncode == 0, verified.stderr
    assert about_ours == []


def test_systemd_analyze_security_scores_the_unit_locked_down(unit: Unit) -> None:
    assert SYSTEMD_ANALYZE.exists(), "systemd-analyze is missing: `make test` installs systemd"
    # --offline reads the file itself; no running service manager is needed.
    analysis = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", unit.path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert analysis.returncode == 0, analysis.stderr
    assert "Unknown key" not in analysis.stderr, analysis.stderr
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", analysis.stdout)
    assert overall, analysis.stdout
    exposure, verdict = float(overall[1]), overall[2]
    assert verdict != "UNSAFE"
    assert exposure <= MAX_EXPOSURE, f"{exposure} {verdict}:\n{analysis.stdout}"


def test_the_unit_runs_codexgate_as_a_notify_service_with_its_database_in_its_state_directory(
    unit: Unit,
) -> None:
    command = shlex.split(unit.value("ExecStart"))
    assert Path(command[0]).is_absolute()
    assert Path(command[0]).name == "codexgate"
    assert command[1:] == ["serve"]
    assert unit.value("Type") == "notify"
    # The one-file binary's READY=1 comes from a child of the unit's main process.
    assert unit.value("NotifyAccess") == "all"
    assert unit.value("DynamicUser") == "yes"
    # One user name for both instances of the template: the kernel shares a port between one
    # user's sockets only.
    assert unit.value("User") == "codexgate"
    state_directory = unit.value("StateDirectory")
    assert unit.value("StateDirectoryMode") == "0700"
    # A dynamic user's home is /, so the default database folder is not writable: the unit
    # names the file, in the state directory (%S is /var/lib).
    assert unit.environment()[ENV_PREFIX + "DB"] == f"%S/{state_directory}/{DATABASE_FILE}"
    assert unit.value("EnvironmentFile") == "-/etc/codexgate/codexgate.env"
    assert unit.value("UMask") == "0077"


def test_every_variable_the_unit_and_the_example_file_set_is_a_codexgate_setting(
    unit: Unit,
) -> None:
    # Besides codexgate's settings, only where codexgate.pyz unpacks itself: the cache directory
    # (%C is /var/cache), since shiv's default ~/.shiv is not writable for a dynamic user.
    environment = unit.environment()
    assert environment.pop("SHIV_ROOT") == f"%C/{unit.value('CacheDirectory')}"
    assert unit.value("CacheDirectoryMode") == "0700"
    assert set(environment) <= SETTING_VARIABLES
    example = re.findall(r"^#?([A-Z_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    assert ENV_PREFIX + "ADMIN_TOKEN" in example
    assert set(example) <= SETTING_VARIABLES
    # Every assignment in the example is commented out: it must never carry a value by itself.
    assert re.findall(r"^[A-Z_]+=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE) == []


def test_the_unit_gives_the_drain_time_to_finish_and_room_for_every_connection(unit: Unit) -> None:
    defaults = Config(db=Path("unused.db"))
    assert unit.value("KillSignal") == "SIGTERM"
    assert seconds(unit.value("TimeoutStopSec")) >= defaults.shutdown_grace + STOP_MARGIN
    assert unit.value("Restart") == "on-failure"
    files_needed = defaults.max_connections * FILES_PER_CONNECTION + RESERVED_FILES
    assert int(unit.value("LimitNOFILE")) >= files_needed


def test_the_unit_is_hardened(unit: Unit) -> None:
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }
    assert {key: unit.value(key) for key in expected} == expected
    assert unit.values("CapabilityBoundingSet") == []  # set, and empty: no capability at all
    assert "CapabilityBoundingSet" in {key for _, key, _ in unit.assignments}
    assert unit.values("AmbientCapabilities") == []
    assert unit.value("RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert unit.values("SystemCallFilter")[0] == "@system-service"


def test_the_template_differs_from_the_single_unit_only_in_its_name_and_reuse_port() -> None:
    single, template = Unit.read(SINGLE), Unit.read(TEMPLATE)
    reuse_port = ("Service", "Environment", f"{ENV_PREFIX}REUSE_PORT=on")
    assert reuse_port in template.assignments
    assert template.value("Description", "Unit") == single.value("Description", "Unit") + " (%i)"

    def shared(unit: Unit) -> list[tuple[str, str, str]]:
        return [
            assignment
            for assignment in unit.assignments
            if assignment != reuse_port and assignment[:2] != ("Unit", "Description")
        ]

    assert shared(template) == shared(single)


class NotifySocket:
    """Where the gateway tells its state, as systemd's notification socket would hear it."""

    def __init__(self, path: Path) -> None:
        self.address = str(path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.address)
        self._socket.setblocking(False)

    async def expect(self, state: str, within: float) -> None:
        async with asyncio.timeout(within):
            message = await asyncio.get_running_loop().sock_recv(self._socket, 4096)
        assert message.decode() == state

    def close(self) -> None:
        self._socket.close()


def memory_deny_write_execute_available() -> bool:
    """Whether this kernel has PR_SET_MDWE (Linux 6.3 and later), the stand-in for the unit's
    MemoryDenyWriteExecute= (a seccomp filter, which needs systemd to install it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0 or ctypes.get_errno() != errno.EINVAL


# Sets what the unit sets on the process that can be set without systemd, then becomes
# `codexgate <the ExecStart arguments>` (an exec, so the limits hold for the gateway itself).
_AS_THE_UNIT_STARTS_IT: Final = """
import ctypes, os, resource, sys
umask, files, deny_write_execute, *arguments = sys.argv[1:]
os.umask(int(umask, 8))
# The unit's limit, or as much of it as this test's own hard limit allows.
files = min(int(files), resource.getrlimit(resource.RLIMIT_NOFILE)[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
if deny_write_execute == "yes":
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN; kept over exec
        sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
os.execv(sys.executable, [sys.executable, "-m", "codexgate", *arguments])
"""


def start_as_the_unit_would(
    unit: Unit, state: Path, log_path: Path, extra: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start `codexgate <ExecStart arguments>` with the unit's environment (%S as `state`),
    umask, open-files limit and MemoryDenyWriteExecute, plus the `extra` variables."""
    environment = {
        name: value.replace("%S", str(state)).replace("%C", str(state.with_name("var-cache")))
        for name, value in unit.environment().items()
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                _AS_THE_UNIT_STARTS_IT,
                unit.value("UMask"),
                unit.value("LimitNOFILE"),
                unit.value("MemoryDenyWriteExecute"),
                *shlex.split(unit.value("ExecStart"))[1:],
            ],
            # What systemd gives a dynamic user's service: HOME=/ and the unit's variables.
            env={"PATH": os.environ["PATH"], "HOME": "/", **extra, **environment},
            cwd="/",
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[UpstreamProcess]:
    started = UpstreamProcess(free_port(), 0.0, 0, tmp_path / "upstream.log")
    await started.wait_ready()
    yield started
    await started.kill()


async def test_codexgate_serves_and_records_a_turn_under_the_units_settings(
    unit: Unit, upstream: UpstreamProcess, tmp_path: Path
) -> None:
    deny_write_execute = unit.value("MemoryDenyWriteExecute")
    if deny_write_execute == "yes" and not memory_deny_write_execute_available():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+) to stand in for the unit's")
    state = tmp_path / "var-lib"  # %S
    state_directory = state / unit.value("StateDirectory")
    state_directory.mkdir(parents=True, mode=int(unit.value("StateDirectoryMode"), 8))
    notify = NotifySocket(tmp_path / "notify")
    port = free_port()
    log_path = tmp_path / "codexgate.log"
    gateway = start_as_the_unit_would(
        unit,
        state,
        log_path,
        {
            "NOTIFY_SOCKET": notify.address,
            f"{ENV_PREFIX}PORT": str(port),
            f"{ENV_PREFIX}UPSTREAM": upstream.base,
        },
    )
    ready = asyncio.create_task(notify.expect("READY=1", within=30))
    exited = asyncio.create_task(asyncio.to_thread(gateway.wait))
    try:
        await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        assert ready.done(), f"exited before READY=1:\n{log_path.read_text()}"
        assert ready.exception() is None, f"no READY=1:\n{log_path.read_text()}"
        async with (
            ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/backend-api/codex/responses",
                data=b"{}",
                headers={"Authorization": bearer("seat_a")},
            ) as response,
        ):
            assert response.status == 200
            assert await response.read() == b"".join(sse_events("stream-basic.sse"))

        database = state_directory / DATABASE_FILE

        def recorded_turns() -> int:
            with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
                count: int = connection.execute(
                    "SELECT count(*) FROM requests WHERE path = '/backend-api/codex/responses'"
                ).fetchone()[0]
            return count

        assert await eventually(recorded_turns, timeout=15) == 1
        assert database.stat().st_mode & 0o777 == 0o600  # codexgate makes it private itself
        gateway.terminate()
        await notify.expect("STOPPING=1", within=10)
        stop_timeout = seconds(unit.value("TimeoutStopSec"))
        assert await asyncio.wait_for(exited, stop_timeout) == 0
    finally:
        ready.cancel()
        notify.close()
        if gateway.poll() is None:
            gateway.kill()
        await asyncio.wait({exited})
