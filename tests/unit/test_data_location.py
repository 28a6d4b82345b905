"""Where the database goes by default: ./data in a source checkout, the XDG state folder when
installed; an explicit --db, CODEXGATE_DB or file `db` always wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexgate.config import Config, default_database_why, resolve
from codexgate.paths import SOURCE_CHECKOUT_DATABASE, default_database, is_source_checkout

CHECKOUT_WHY = "default in a source checkout: ./data"
XDG_WHY = "default for an installed codexgate: $XDG_STATE_HOME"
HOME_WHY = "default for an installed codexgate: ~/.local/state, no absolute $XDG_STATE_HOME"


def package_in(folder: Path, pyproject: str | None) -> Path:
    """A `codexgate` package folder inside `folder`, with that pyproject.toml beside it."""
    package = folder / "codexgate"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0"\n')
    if pyproject is not None:
        (folder / "pyproject.toml").write_text(pyproject)
    return package


def test_this_repository_is_a_source_checkout() -> None:
    assert is_source_checkout()
    assert default_database({"XDG_STATE_HOME": "/elsewhere"}).path == Path("data/codexgate.db")


def test_a_checkout_keeps_data_whatever_xdg_says(tmp_path: Path) -> None:
    package = package_in(tmp_path / "clone", '[project]\nname = "codexgate"\n')
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    default = default_database(env, package_dir=package)
    assert (default.path, default.why) == (SOURCE_CHECKOUT_DATABASE, CHECKOUT_WHY)
    assert str(default.path) == "data/codexgate.db"  # relative: the working folder's ./data


@pytest.mark.parametrize(
    "pyproject",
    [
        None,  # a wheel's site-packages
        '[project]\nname = "another-project"\n',  # a stray pyproject.toml in site-packages
        "[tool.black]\nline-length = 100\n",
        "this is = not [toml",
    ],
    ids=["none", "another project", "no project table", "not TOML"],
)
def test_anything_else_is_an_installed_codexgate(tmp_path: Path, pyproject: str | None) -> None:
    package = package_in(tmp_path / "site-packages", pyproject)
    assert not is_source_checkout(package)
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    default = default_database(env, package_dir=package)
    assert default.path == tmp_path / "state" / "codexgate" / "codexgate.db"
    assert default.why == XDG_WHY


@pytest.mark.parametrize("state_home", [None, "", "relative/state"], ids=["unset", "empty", "rel"])
def test_installed_without_a_usable_xdg_state_home_uses_the_home_folder(
    tmp_path: Path, state_home: str | None
) -> None:
    # The XDG spec: an empty or relative XDG_STATE_HOME is ignored.
    package = package_in(tmp_path / "site-packages", None)
    env = {"HOME": str(tmp_path / "home")}
    if state_home is not None:
        env["XDG_STATE_HOME"] = state_home
    default = default_database(env, package_dir=package)
    assert default.path == tmp_path / "home" / ".local" / "state" / "codexgate" / "codexgate.db"
    assert default.why == HOME_WHY


def test_the_config_default_is_the_rule_and_says_why() -> None:
    loaded = resolve({}, {"XDG_STATE_HOME": "/elsewhere"})
    assert loaded.config.db == Path("data/codexgate.db") == Config().db
    assert loaded.sources["db"] == "default"
    assert default_database_why(loaded.config.db) == CHECKOUT_WHY
    assert default_database_why(Path("/srv/codexgate.db")) is None


def test_an_explicit_database_always_wins(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    assert resolve({"db": "/srv/flag.db"}, env).config.db == Path("/srv/flag.db")
    loaded = resolve({}, {**env, "CODEXGATE_DB": "/srv/env.db"})
    assert (loaded.config.db, loaded.sources["db"]) == (Path("/srv/env.db"), "env")
    settings = tmp_path / "codexgate.toml"
    settings.write_text('db = "/srv/file.db"\n')
    loaded = resolve({"config": str(settings)}, env)
    assert (loaded.config.db, loaded.sources["db"]) == (Path("/srv/file.db"), "file")
