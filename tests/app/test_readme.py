"""docs/database.md's example queries run against a real, populated database and answer sensibly."""

from __future__ import annotations

import re
import sqlite3

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.keys import CONFIG
from tests.helpers.fake_upstream import FakeUpstream, sample_headers
from tests.helpers.gateway import app_of, recorded, sqlite_file, turn
from tests.helpers.paths import REPO
from tests.helpers.tokens import bearer

DATABASE_DOC = REPO / "docs" / "database.md"


def documented_queries() -> list[str]:
    """The sqlite3 examples (tests/storage/test_postgresql_specific.py runs the psql ones)."""
    text = DATABASE_DOC.read_text()
    return re.findall(r"```sql\n(.*?)```", text[: text.index("## PostgreSQL")], flags=re.DOTALL)


async def test_the_documented_example_queries(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    queries = documented_queries()
    assert len(queries) == 4
    await turn(http, gateway, bearer("seat_a"))  # plus: 46% / 15%
    fake.response_headers = sample_headers("headers-plus-429-premium.json")  # 100% / 80%
    await turn(http, gateway, bearer("seat_b"))
    await recorded(gateway, 2)
    db_path = sqlite_file(app_of(gateway)[CONFIG].db)
    with sqlite3.connect(db_path) as connection:
        latest, week, above, _requests = (connection.execute(q).fetchall() for q in queries)
    assert [row[0] for row in latest] == ["bob@example.com", "alice@example.com"]
    assert [row[1] for row in week] == [46.0]
    assert [row[0] for row in above] == ["bob@example.com"]
