"""An installed codexgate finds its migrations and web folders, not only a source checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers.paths import REPO

ROOT = REPO


def test_the_wheel_carries_the_data_folders_and_finds_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        timeout=120,
    )
    [wheel] = (tmp_path / "dist").glob("codexgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    migrations = sorted(p.name for p in (ROOT / "migrations" / "sqlite").glob("*.sql"))
    for name in migrations:
        assert f"codexgate/_data/migrations/sqlite/{name}" in names
    found = subprocess.run(
        [sys.executable, "-c", "from codexgate.paths import migrations_dir as m; print(m())"],
        env={"PYTHONPATH": str(tmp_path / "site")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert Path(found) == tmp_path / "site" / "codexgate" / "_data" / "migrations" / "sqlite"
    assert sorted(p.name for p in Path(found).glob("*.sql")) == migrations
