"""Where the data folders (migrations, web) are: inside an installed wheel or a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


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
