"""`make dist`'s artifacts as a user runs them. The module the Makefile calls (release/dist.py)
builds them once into a temporary folder; each then runs from an empty folder outside the
repository with a temporary HOME and none of the test's CODEXGATE_ or Python variables:
`--version`, `--help`, then `serve` against the fake upstream, one turn proxied and found in the
database of the user's state folder. The .pyz with every CPython on this machine (the ones it
carries wheels for serve; older ones are refused in one line), the binary with no Python on PATH.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
import pytest
from aiohttp import ClientSession

from codexgate import __version__
from codexgate.storage.migrations import read_migrations
from tests.helpers.admin_client import ADMIN
from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import REPO
from tests.helpers.postgres import PostgresServer
from tests.helpers.processes import UpstreamProcess, free_port, wait_answering
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

# What the pyz's preamble reads (release/dist.py writes it beside the preamble).
PYZ_TARGETS: Final = "site-packages/bin/codexgate-pyz.json"
# CPython versions every dependency has binary wheels for today; the .pyz must carry them all.
CARRIED_AT_LEAST: Final = ("3.11", "3.12", "3.13", "3.14")
TURN_PATH: Final = "/backend-api/codex/responses"
# PyInstaller's pyi-archive_viewer, run by the test's own Python (the build's, with PyInstaller).
LIST_PYINSTALLER_ARCHIVE: Final = (
    "import sys; from PyInstaller.utils.cliutils.archive_viewer import run; sys.exit(run())"
)


@dataclass(frozen=True)
class Artifacts:
    wheel: Path
    sdist: Path
    pyz: Path
    binary: Path


@dataclass(frozen=True)
class Python:
    minor: int
    path: Path


def pythons_on_this_machine() -> list[Python]:
    """Every CPython 3 interpreter found in the usual places (pyenv's too), once each."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    folders = [
        Path(sys.executable).resolve().parent,  # the base interpreter of the running virtualenv
        *sorted(pyenv.glob("*/bin")),
        *(Path(entry) for entry in os.environ.get("PATH", "").split(os.pathsep) if entry),
        Path("/usr/bin"),
        Path("/usr/local/bin"),
    ]
    found: dict[Path, Python] = {}
    for folder in folders:
        for candidate in sorted(folder.glob("python3.*")):
            version = re.fullmatch(r"python3\.(\d+)", candidate.name)
            real = candidate.resolve()
            if version and real not in found and _is_executable_program(real):
                found[real] = Python(int(version[1]), candidate)
    return sorted(found.values(), key=lambda python: (python.minor, str(python.path)))


def _is_executable_program(path: Path) -> bool:
    """An executable ELF file: not a shell-script shim (pyenv's) that picks a Python itself."""
    if not os.access(path, os.X_OK):
        return False
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"


PYTHONS: Final = pythons_on_this_machine()
SUPPORTED: Final = [python for python in PYTHONS if python.minor >= 11]
# The newest older one: shiv's own start-up code runs on it, so the preamble gets to speak.
TOO_OLD: Final = [python for python in PYTHONS if 8 <= python.minor < 11][-1:]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """`python -m release.dist`, as `make dist` runs it, into a temporary folder (about 60 s)."""
    out, work = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("dist-work")
    built = subprocess.run(
        [sys.executable, "-m", "release.dist", "--out", str(out), "--work", str(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = out.glob("codexgate-*.whl")
    [sdist] = out.glob("codexgate-*.tar.gz")
    return Artifacts(wheel, sdist, out / "codexgate.pyz", out / "codexgate")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamProcess]:
    """One fake upstream for the module's gateways."""
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    started = UpstreamProcess(free_port(), 0.0, 0, log)
    asyncio.run(started.wait_ready())
    yield started
    asyncio.run(started.kill())


def carried(pyz: Path) -> list[str]:
    """The CPython versions whose wheels the .pyz carries, as its preamble reads them."""
    with zipfile.ZipFile(pyz) as archive:
        versions: list[str] = orjson.loads(archive.read(PYZ_TARGETS))["python"]
    return versions


def user_environment(tmp_path: Path, path: str) -> dict[str, str]:
    """The environment of a user who never heard of this test: a new HOME, PATH as given."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CODEXGATE_", "XDG_", "PYTHON", "SHIV_", "VIRTUAL_ENV"))
    }
    home = tmp_path / "home"
    home.mkdir()
    # PyInstaller's binary unpacks itself under TMPDIR; a folder of the test's own shows the
    # unpacked copy goes away when the binary stops.
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    return {**kept, "HOME": str(home), "PATH": path, "TMPDIR": str(tmpdir)}


def mapped_files(pid: int) -> set[str]:
    """The files a process and its descendants have mapped (PyInstaller's one-file binary runs
    Python in a child of its own)."""
    names = {
        line.split(maxsplit=5)[5]
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if len(line.split(maxsplit=5)) == 6
    }
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        names |= mapped_files(int(child))
    return names


def recorded_turns(database: Path) -> int:
    """How many turns the database holds (read-only, beside the running gateway)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        turns: int = connection.execute(
            "SELECT count(*) FROM requests WHERE path = ?", (TURN_PATH,)
        ).fetchone()[0]
    return turns


async def proxy_one_turn(base: str, gateway: subprocess.Popen[bytes], database: Path) -> str:
    """Wait for healthz, proxy one turn, find it recorded, open the dashboard; "" or what failed."""
    if not await wait_answering(f"{base}/codexgate/healthz", gateway, within=30):
        return "codexgate did not become ready"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with ClientSession() as http:
        async with http.post(
            f"{base}{TURN_PATH}", data=b"{}", headers={"Authorization": bearer("seat_a")}
        ) as response:
            assert response.status == 200
            assert await response.read() == b"".join(sse_events("stream-basic.sse"))
        # The dashboard's templates and static files: the web folder came along.
        for page in ("/codexgate/", "/codexgate/static/app.css"):
            async with http.get(f"{base}{page}", headers=admin) as response:
                assert response.status == 200, page
    assert await eventually(lambda: recorded_turns(database), timeout=15) == 1
    return ""


def serve_one_turn(command: list[str], workdir: Path, env: dict[str, str], upstream: str) -> str:
    """`serve` on a free port: one turn proxied and recorded, then SIGTERM; its log."""
    port = free_port()
    database = Path(env["HOME"]) / ".local" / "state" / "codexgate" / "codexgate.db"
    log = workdir.parent / "codexgate.log"
    with log.open("wb") as log_file:
        gateway = subprocess.Popen(
            [*command, "serve", "--upstream", upstream, "--port", str(port)],
            cwd=workdir,
            env={**env, "CODEXGATE_ADMIN_TOKEN": ADMIN},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        failed = asyncio.run(proxy_one_turn(f"http://127.0.0.1:{port}", gateway, database))
        assert not failed, f"{failed}:\n{log.read_text()}"
        # The `fast` extra's event loop, not asyncio's own: uvloop came along and loads.
        assert any("uvloop/loop.cpython-" in name for name in mapped_files(gateway.pid))
        gateway.terminate()
        assert gateway.wait(timeout=30) == 0, log.read_text()
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    shown = log.read_text()
    assert f"database {database} (default for an installed codexgate" in shown
    return shown


def run_like_a_user(
    command: list[str], tmp_path: Path, env: dict[str, str], upstream: UpstreamProcess
) -> None:
    """--version, --help and a served turn, from an empty folder outside the repository."""
    workdir = tmp_path / "empty"
    workdir.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    version = run("--version")
    assert (version.returncode, version.stdout) == (0, f"codexgate {__version__}\n"), version.stderr
    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: codexgate")
    assert "serve" in shown.stdout
    serve_one_turn(command, workdir, env, upstream.base)
    assert list(workdir.iterdir()) == []  # nothing left where it was started
    assert list((tmp_path / "tmp").iterdir()) == []


def test_dist_holds_the_wheel_the_sdist_the_pyz_and_the_binary(artifacts: Artifacts) -> None:
    assert artifacts.wheel.name == f"codexgate-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(artifacts.wheel) as archive:
        assert "codexgate/_data/migrations/sqlite/0001_initial.sql" in archive.namelist()
    with tarfile.open(artifacts.sdist) as archive:
        assert f"codexgate-{__version__}/pyproject.toml" in archive.getnames()
    assert artifacts.pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(artifacts.pyz, os.X_OK)
    assert os.access(artifacts.binary, os.X_OK)
    versions = carried(artifacts.pyz)
    assert set(CARRIED_AT_LEAST) <= set(versions)
    assert versions == [f"3.{minor}" for minor in range(11, 11 + len(versions))]


@pytest.mark.parametrize("python", SUPPORTED, ids=[str(python.path) for python in SUPPORTED])
def test_the_pyz_serves_and_records_a_turn_with_every_python_found(
    artifacts: Artifacts, upstream: UpstreamProcess, tmp_path: Path, python: Python
) -> None:
    env = user_environment(tmp_path, os.environ["PATH"])
    command = [str(python.path), str(artifacts.pyz)]
    if f"3.{python.minor}" not in carried(artifacts.pyz):
        # A CPython newer than the last one every dependency has wheels for.
        refused = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert refused.returncode == 1
        assert refused.stderr.startswith("codexgate.pyz: this archive carries"), refused.stderr
        return
    run_like_a_user(command, tmp_path, env, upstream)
    # shiv unpacked the archive's site-packages into ~/.shiv: the only thing in the new HOME
    # besides the database's state folder.
    assert sorted(path.name for path in (tmp_path / "home").iterdir()) == [".local", ".shiv"]


@pytest.mark.parametrize("python", TOO_OLD, ids=[str(python.path) for python in TOO_OLD])
def test_the_pyz_refuses_an_older_python_in_one_line(
    artifacts: Artifacts, tmp_path: Path, python: Python
) -> None:
    env = user_environment(tmp_path, os.environ["PATH"])
    refused = subprocess.run(
        [str(python.path), str(artifacts.pyz), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (refused.returncode, refused.stdout) == (1, "")
    [line] = refused.stderr.splitlines()
    assert line.startswith(
        "codexgate.pyz: this archive carries compiled modules for CPython 3.11, 3.12"
    )
    assert f"this is CPython 3.{python.minor}." in line


def test_the_pyz_unpacks_into_shiv_root_when_it_is_set(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    # A service whose home is read-only points SHIV_ROOT at a folder it may write.
    env = {**user_environment(tmp_path, os.environ["PATH"]), "SHIV_ROOT": str(tmp_path / "root")}
    shown = subprocess.run(
        [str(Path(sys.executable).resolve()), str(artifacts.pyz), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (shown.returncode, shown.stdout) == (0, f"codexgate {__version__}\n"), shown.stderr
    assert list((tmp_path / "home").iterdir()) == []
    [unpacked] = (tmp_path / "root").glob("codexgate.pyz_*")
    assert (unpacked / "site-packages" / "codexgate" / "_data" / "migrations").is_dir()


def test_the_binary_serves_and_records_a_turn_with_no_python_on_path(
    artifacts: Artifacts, upstream: UpstreamProcess, tmp_path: Path
) -> None:
    no_python = tmp_path / "bin"
    no_python.mkdir()
    env = user_environment(tmp_path, str(no_python))
    run_like_a_user([str(artifacts.binary)], tmp_path, env, upstream)


def test_the_binary_carries_what_codexgate_imports_at_run_time(artifacts: Artifacts) -> None:
    # Modules only a run-time choice imports (brotli and zstandard for compressed usage bodies,
    # asyncpg's protocol for PostgreSQL), which no served turn above touches.
    listing = subprocess.run(
        [
            sys.executable,
            "-c",
            LIST_PYINSTALLER_ARCHIVE,
            "--recursive",
            "--brief",
            str(artifacts.binary),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    carried = {line.strip() for line in listing.splitlines()}
    # The binary is built with the Python that runs the build, this one.
    extension = f".cpython-3{sys.version_info.minor}-x86_64-linux-gnu.so"
    assert {
        "brotli",
        "zstandard",
        f"zstandard/backend_c{extension}",
        f"asyncpg/protocol/protocol{extension}",
        "codexgate.storage.postgresql.store",
        "codexgate/_data/migrations/postgresql/0001_initial.sql",
    } - carried == set()


async def test_the_binary_migrates_a_postgresql_database(
    artifacts: Artifacts, postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    no_python = tmp_path / "bin"
    no_python.mkdir()
    env = user_environment(tmp_path, str(no_python))
    migrated = await asyncio.to_thread(
        subprocess.run,
        [str(artifacts.binary), "migrate", "--db", postgres_database],
        cwd=tmp_path / "home",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    rows = await postgres_server.run_sql(postgres_database, "SELECT version FROM codexgate_schema")
    newest = read_migrations(REPO / "migrations" / "postgresql")[-1].number
    assert [row["version"] for row in rows] == [newest]
