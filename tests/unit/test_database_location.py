"""--db as a SQLite path or a PostgreSQL URL: parsing, masking the password, naming the server."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import pytest

from codexgate.storage.location import PostgresURL, describe, parse_database

SECRET = "s3cr#t/p@ss"  # every character that must be percent-encoded in a URL's userinfo
ENCODED = "s3cr%23t%2Fp%40ss"


@pytest.fixture(autouse=True)
def no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's own PG* variables would change what `where` fills in."""
    for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)


# -- which kind -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://codexgate@db.internal:5432/codexgate",
        "postgres://db.internal/codexgate",
        "PostgreSQL://db.internal/codexgate",
        "postgresql://",
        "postgresql:///codexgate?host=/var/run/postgresql",
    ],
)
def test_postgresql_urls_are_kept_as_given(raw: str) -> None:
    location = parse_database(raw)
    assert location == PostgresURL(raw)
    assert isinstance(location, PostgresURL)
    assert location.dsn == raw


def test_surrounding_spaces_are_dropped_from_a_url() -> None:
    location = parse_database("  postgresql://db.internal/codexgate\n")
    assert location == PostgresURL("postgresql://db.internal/codexgate")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("./data/codexgate.db", Path("data/codexgate.db")),
        ("/var/lib/codexgate/codexgate.db", Path("/var/lib/codexgate/codexgate.db")),
        ("postgresql.db", Path("postgresql.db")),
        ("data/postgres-copy.db", Path("data/postgres-copy.db")),
    ],
)
def test_anything_else_is_a_file_path(raw: str, path: Path) -> None:
    assert parse_database(raw) == path


def test_a_home_path_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_database("~/usage.db") == tmp_path / "usage.db"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("mysql://u:pw@host/db", "mysql:// is not a database codexgate supports; use a file path"),
        ("sqlite:///data/x.db", "sqlite:// is not a database codexgate supports"),
        ("postgresql:db.internal/x", "write the URL as postgresql://"),
        ("postgresql://db.internal:99999/x", "a port must be a number from 1 to 65535"),
        ("postgresql://db.internal:0/x", "a port must be a number from 1 to 65535"),
        ("postgresql://db.internal:port/x", "a port must be a number from 1 to 65535"),
        ("postgresql://db.internal/x?port=big", "a port must be a number from 1 to 65535"),
        ("postgresql://[::1/x", "an IPv6 host goes in brackets"),
        ("postgresql://[not-v6]:5432/x", "an IPv6 host goes in brackets"),
        ("postgresql://h1,,h2/x", "the host list has an empty entry"),
        ("postgresql://db.internal/x?sslmode", "must be name=value pairs joined by &"),
    ],
)
def test_bad_values_have_a_clear_reason(raw: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)) as caught:
        parse_database(raw)
    assert "\n" not in str(caught.value)


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a folder; give a file path"):
        parse_database(str(tmp_path))


@pytest.mark.parametrize(
    "raw",
    [
        # Unencoded, these move part of the password into the host, path, query or fragment.
        f"postgresql://codexgate:{SECRET}@db.internal/codexgate",
        "postgresql://codexgate:pa/ss-word@db.internal/codexgate",
        "postgresql://codexgate:pa?ss-word@db.internal/codexgate",
        "postgresql://codexgate:pa#ss-word@db.internal/codexgate",
        "postgresql://codexgate:pa@ss-word@db.internal/codexgate",
        "postgresql://codexgate:ss-word@db.internal:ss-word/codexgate",
        "mysql://codexgate:ss-word@db.internal/codexgate",
    ],
)
def test_errors_never_repeat_the_url(raw: str) -> None:
    with pytest.raises(ValueError, match=r"percent-encoded|codexgate supports") as caught:
        parse_database(raw)
    message = str(caught.value)
    assert "ss-word" not in message
    assert "s3cr" not in message
    assert "db.internal" not in message


# -- masked -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("postgresql://db.internal/codexgate", "postgresql://db.internal/codexgate"),
        (
            "postgresql://codexgate@db.internal/codexgate",
            "postgresql://codexgate@db.internal/codexgate",
        ),
        (
            "postgresql://codexgate:hunter2@db.internal:5432/codexgate",
            "postgresql://codexgate:***@db.internal:5432/codexgate",
        ),
        (
            f"postgresql://codexgate:{ENCODED}@db.internal/codexgate",
            "postgresql://codexgate:***@db.internal/codexgate",
        ),
        ("postgres://:hunter2@db.internal/x", "postgres://:***@db.internal/x"),
        ("postgresql://codexgate:@db.internal/x", "postgresql://codexgate:***@db.internal/x"),
        (
            "postgresql://u%40corp:hunter2@[2001:db8::1]:6432/codexgate?sslmode=require",
            "postgresql://u%40corp:***@[2001:db8::1]:6432/codexgate?sslmode=require",
        ),
        (
            "postgresql://u:hunter2@host1:5432,host2:5433,[::1]/codexgate",
            "postgresql://u:***@host1:5432,host2:5433,[::1]/codexgate",
        ),
        (
            "postgresql://db.internal/x?user=u&password=hunter2&sslmode=verify-full",
            "postgresql://db.internal/x?user=u&password=***&sslmode=verify-full",
        ),
        (
            "postgresql://db.internal/x?sslpassword=hunter2&PASSWORD=hunter2&pass%77ord=hunter2",
            "postgresql://db.internal/x?sslpassword=***&PASSWORD=***&pass%77ord=***",
        ),
        (
            "postgresql://u:hunter2@db.internal?password=hunter2#frag",
            "postgresql://u:***@db.internal?password=***#frag",
        ),
        ("POSTGRESQL://u:hunter2@db.internal/x", "POSTGRESQL://u:***@db.internal/x"),
    ],
)
def test_masked_hides_every_password(raw: str, masked: str) -> None:
    location = PostgresURL(raw)
    assert location.masked == masked
    assert str(location) == masked
    assert describe(location) == masked
    assert "hunter2" not in repr(location)
    assert masked in repr(location)


def test_a_percent_encoded_password_never_shows_in_any_form() -> None:
    location = parse_database(f"postgresql://codexgate:{ENCODED}@db.internal/codexgate")
    assert isinstance(location, PostgresURL)
    for text in (location.masked, str(location), repr(location), location.where, f"{location}"):
        assert ENCODED not in text
        assert SECRET not in text
        assert "s3cr" not in text


def test_describe_a_path_is_the_path() -> None:
    assert describe(Path("data/x.db")) == "data/x.db"


# -- where ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ("postgresql://u:pw@db.internal:6432/codexgate", "db.internal:6432/codexgate"),
        ("postgresql://u:pw@db.internal/codexgate", "db.internal:5432/codexgate"),
        ("postgresql://u@[2001:db8::1]:6432/x", "[2001:db8::1]:6432/x"),
        ("postgresql://u@[::1]/x", "[::1]:5432/x"),
        ("postgresql://h1:5433,h2,[::1]:5435/x", "h1:5433,h2:5432,[::1]:5435/x"),
        ("postgresql://db.internal/my%20db", "db.internal:5432/my db"),
        ("postgresql://db.internal/?dbname=other", "db.internal:5432/other"),
        ("postgresql://alice@db.internal", "db.internal:5432/alice"),
        ("postgresql://db.internal?user=bob", "db.internal:5432/bob"),
        ("postgresql:///x?host=/var/run/postgresql&port=5444", "/var/run/postgresql:5444/x"),
        ("postgresql://carol@/x", "local socket:5432/x"),
    ],
)
def test_where_names_host_port_and_database(raw: str, where: str) -> None:
    assert PostgresURL(raw).where == where


def test_where_fills_in_from_the_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "pg.env.internal")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGDATABASE", "fromenv")
    monkeypatch.setenv("PGUSER", "envuser")
    monkeypatch.setenv("PGPASSWORD", "env-secret")
    assert PostgresURL("postgresql://").where == "pg.env.internal:6543/fromenv"
    # The URL's own parts win over the environment.
    assert PostgresURL("postgresql://db.internal:5432/x").where == "db.internal:5432/x"
    assert PostgresURL("postgresql://db.internal/x").where == "db.internal:6543/x"
    monkeypatch.delenv("PGDATABASE")
    assert PostgresURL("postgresql://db.internal").where == "db.internal:6543/envuser"
    assert "env-secret" not in PostgresURL("postgresql://").masked


def test_where_defaults_to_the_local_socket_and_the_login_name() -> None:
    assert PostgresURL("postgresql://").where == f"local socket:5432/{getpass.getuser()}"
