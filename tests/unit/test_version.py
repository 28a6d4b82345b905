"""One version: codexgate/__init__.py holds it; the installed metadata and --version agree."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest

from codexgate import __version__
from codexgate.cli.main import main
from tests.helpers.paths import REPO


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "codexgate/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_metadata_version_and_version_flag_agree(capsys: pytest.CaptureFixture[str]) -> None:
    # A mismatch here means the editable install is older than codexgate/__init__.py: reinstall.
    assert importlib.metadata.version("codexgate") == __version__
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"codexgate {__version__}\n"


def test_the_changelog_has_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    heading = rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$"
    assert re.search(heading, changelog, re.MULTILINE)
