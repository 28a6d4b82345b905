"""The release as built: the wheel and sdist carry the LICENSE and the one version, and the wheel,
unpacked outside the repository the way pip installs it, keeps its database in the user's state
folder rather than in ./data of the folder it was started from. Real `python -m codexgate`
processes on that unpacked wheel, in an empty working folder with a temporary HOME."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest

from codexgate import __version__
from tests.helpers.paths import REPO
from tests.helpers.processes import GatewayProcess

XDG_WHY = "default for an installed codexgate: $XDG_STATE_HOME"
HOME_WHY = "default for an installed codexgate: ~/.local/state, no absolute $XDG_STATE_HOME"


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    site: Path  # the wheel unpacked, as pip lays it out in site-packages


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel and sdist of this tree, built with the project's own backend (under a second)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-t", "sdist", "-d", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    [wheel] = dist.glob("codexgate-*.whl")
    [sdist] = dist.glob("codexgate-*.tar.gz")
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return Built(wheel, sdist, site)


def installed(
    built: Built, *args: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`python -m codexgate ...` importing the unpacked wheel, none of the test's CODEXGATE_."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CODEXGATE_") and k not in ("XDG_STATE_HOME", "HOME")
    }
    return subprocess.run(
        [sys.executable, "-m", "codexgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        # Ahead of the virtualenv's editable install of this checkout on sys.path.
        env={**base, "PYTHONPATH": str(built.site), **env},
        check=False,
    )


def db_row(check_config_output: str) -> list[str]:
    """The db row of `check-config`'s table: [value, source]."""
    [row] = [
        re.split(r"\s{2,}", line.strip())[1:]
        for line in check_config_output.splitlines()
        if line.startswith("db ")
    ]
    return row


def test_the_wheel_and_sdist_carry_the_license_and_the_version(built: Built) -> None:
    dist_info = f"codexgate-{__version__}.dist-info"
    with zipfile.ZipFile(built.wheel) as archive:
        assert archive.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        metadata = HeaderParser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
    assert (metadata["Version"], metadata["License-Expression"]) == (__version__, "MIT")
    root = f"codexgate-{__version__}"
    with tarfile.open(built.sdist) as archive:
        names = archive.getnames()
        pkg_info = archive.extractfile(f"{root}/PKG-INFO")
        assert pkg_info is not None
        assert HeaderParser().parsestr(pkg_info.read().decode())["Version"] == __version__
    assert {f"{root}/LICENSE", f"{root}/CHANGELOG.md"} <= set(names)
    assert "MIT License" in (REPO / "LICENSE").read_text()


@pytest.mark.parametrize("xdg", [True, False], ids=["XDG_STATE_HOME", "HOME"])
def test_an_installed_codexgate_keeps_its_database_in_the_state_folder(
    built: Built, tmp_path: Path, xdg: bool
) -> None:
    workdir, home = tmp_path / "empty", tmp_path / "home"
    workdir.mkdir()
    home.mkdir()
    env = {"HOME": str(home)}
    if xdg:
        env["XDG_STATE_HOME"] = str(tmp_path / "state")
        expected, why = tmp_path / "state" / "codexgate" / "codexgate.db", XDG_WHY
    else:
        expected, why = home / ".local" / "state" / "codexgate" / "codexgate.db", HOME_WHY

    version = installed(built, "--version", cwd=workdir, env=env)
    assert (version.returncode, version.stdout) == (0, f"codexgate {__version__}\n")
    shown = installed(built, "check-config", cwd=workdir, env=env)
    assert (shown.returncode, shown.stderr) == (0, "")
    assert db_row(shown.stdout) == [f"{expected} ({why})", "default"]

    # Every command takes the same default: migrate creates the database there, privately.
    migrated = installed(built, "migrate", cwd=workdir, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert expected.is_file()
    assert stat.S_IMODE(expected.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(expected.stat().st_mode) == 0o600
    assert list(workdir.iterdir()) == []  # no ./data where it was started
    status = installed(built, "status", cwd=workdir, env=env)
    assert status.returncode == 0, status.stderr


def test_an_explicit_database_wins_over_the_state_folder(built: Built, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    by_env = installed(built, "check-config", cwd=tmp_path, env={**env, "CODEXGATE_DB": "x.db"})
    assert db_row(by_env.stdout) == ["x.db", "env"]
    by_flag = installed(built, "check-config", "--db", "/srv/y.db", cwd=tmp_path, env=env)
    assert db_row(by_flag.stdout) == ["/srv/y.db", "flag"]
    (tmp_path / "codexgate.toml").write_text('db = "./data/codexgate.db"\n')
    by_file = installed(built, "check-config", cwd=tmp_path, env=env)
    assert db_row(by_file.stdout) == ["data/codexgate.db", "file"]
    assert not (tmp_path / "state").exists()


def test_the_start_up_log_says_where_the_database_is_and_why(built: Built, tmp_path: Path) -> None:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    expected = tmp_path / "state" / "codexgate" / "codexgate.db"
    env = {
        "PYTHONPATH": str(built.site),
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        **{k: "" for k in os.environ if k.startswith("CODEXGATE_")},
    }
    gateway = GatewayProcess(["--upstream", "http://127.0.0.1:9"], workdir, env=env)
    try:
        asyncio.run(gateway.wait_ready())
        assert f"database {expected} ({XDG_WHY})\n" in gateway.log()
        assert asyncio.run(gateway.terminate()) == 0
    finally:
        gateway.kill()
    assert expected.is_file()
    assert [p.name for p in workdir.iterdir()] == ["codexgate.log"]
