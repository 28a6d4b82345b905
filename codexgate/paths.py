"""Where codexgate's files are: the data folders (migrations, web) inside an installed wheel or
a source checkout, and the default database, which depends on which of the two is running."""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_NAME: Final = "codexgate"
DATABASE_FILE: Final = "codexgate.db"
# `make run` and the tests keep the database next to the working folder, as they always did.
SOURCE_CHECKOUT_DATABASE: Final = Path("data") / DATABASE_FILE


def _data_dir(name: str) -> Path:
    """Return the folder `name`, preferring the copy a wheel installs inside the package."""
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name


def migrations_dir(backend: str = "sqlite") -> Path:
    """The numbered SQL migrations of one storage backend."""
    return _data_dir("migrations") / backend


def web_dir() -> Path:
    """Templates and static files of the dashboard."""
    return _data_dir("web")


@functools.cache
def is_source_checkout(package_dir: Path = _PACKAGE_DIR) -> bool:
    """Whether the package runs from a checkout of codexgate's repository (or an editable install).

    The test is the pyproject.toml beside the package folder naming this project. A wheel never
    puts one there, and neither do shiv or PyInstaller; a `.git` would miss an unpacked sdist and
    would take a site-packages that happens to sit inside some other repository for a checkout.
    The name is checked because a few wheels do drop a stray pyproject.toml into site-packages.
    """
    try:
        with (package_dir.parent / "pyproject.toml").open("rb") as file:
            project = tomllib.load(file).get("project")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == PROJECT_NAME


class NoStateFolder(Exception):
    """An installed codexgate has no home folder to put its database under."""


@dataclass(frozen=True, slots=True)
class DefaultDatabase:
    """The database file used when --db, CODEXGATE_DB and the file's `db` are all unset."""

    path: Path
    why: str  # for the start-up log and check-config


def default_database(
    environ: Mapping[str, str] | None = None, *, package_dir: Path = _PACKAGE_DIR
) -> DefaultDatabase:
    """./data/codexgate.db in a source checkout, else the user's XDG state folder.

    Raises NoStateFolder when neither XDG_STATE_HOME nor a home folder is known.
    """
    if is_source_checkout(package_dir):
        return DefaultDatabase(SOURCE_CHECKOUT_DATABASE, "default in a source checkout: ./data")
    env = os.environ if environ is None else environ
    why = "default for an installed codexgate"
    # The XDG Base Directory spec: an empty or relative value is to be ignored.
    state_home = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(state_home):
        folder = Path(state_home) / PROJECT_NAME
        return DefaultDatabase(folder / DATABASE_FILE, f"{why}: $XDG_STATE_HOME")
    home = env.get("HOME") or _account_home()
    if not home or not os.path.isabs(home):
        raise NoStateFolder(
            "an installed codexgate keeps its database under $XDG_STATE_HOME or "
            "~/.local/state, and neither XDG_STATE_HOME nor HOME is set"
        )
    folder = Path(home) / ".local" / "state" / PROJECT_NAME
    return DefaultDatabase(
        folder / DATABASE_FILE, f"{why}: ~/.local/state, no absolute $XDG_STATE_HOME"
    )


def _account_home() -> str | None:
    """The home folder as Python finds it: HOME, else the password database."""
    home = os.path.expanduser("~")
    return None if home == "~" else home
