"""The store's per-bucket request counts for the dashboard's summary strip."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codexgate.core.models import TokenUsage
from codexgate.core.rows import ActivityBucket
from codexgate.storage.sqlite.store import Store
from tests.storage.test_store import T0, query
from tests.storage.test_store_requests import OTHER, request


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store holding requests around T0 .. T0 + 300 s of two seats and none."""
    opened = await Store.open(tmp_path / "codexgate.db")
    await opened.record(
        [
            request(T0 - 0.5, tokens=TokenUsage(total_tokens=1000)),  # before since
            request(T0, tokens=TokenUsage(total_tokens=100)),
            request(T0 + 59.9),  # no usage: NULL tokens
            request(T0 + 60, anonymous=True, tokens=TokenUsage(total_tokens=7)),
            request(T0 + 150, who=OTHER, tokens=TokenUsage(total_tokens=20)),
            request(T0 + 150.5, tokens=TokenUsage(input_tokens=3)),  # NULL total
            request(T0 + 299.9, tokens=TokenUsage(total_tokens=5)),
            request(T0 + 300, tokens=TokenUsage(total_tokens=1000)),  # at until
        ]
    )
    yield opened
    await opened.close()


async def test_requests_and_tokens_per_bucket(store: Store) -> None:
    buckets = await store.request_activity(since=T0, until=T0 + 300, bucket_seconds=60)
    # Bucket 3 (T0 + 180 .. 240) is empty and left out; since counts, until does not.
    assert buckets == [
        ActivityBucket(index=0, requests=2, tokens=100),
        ActivityBucket(index=1, requests=1, tokens=7),
        ActivityBucket(index=2, requests=2, tokens=20),
        ActivityBucket(index=4, requests=1, tokens=5),
    ]


async def test_buckets_start_at_since(store: Store) -> None:
    buckets = await store.request_activity(since=T0 - 10, until=T0 + 400, bucket_seconds=100)
    assert buckets == [
        ActivityBucket(0, 4, 1107),
        ActivityBucket(1, 2, 20),
        ActivityBucket(3, 2, 1005),
    ]


async def test_account_filter(store: Store) -> None:
    first, second = await store.accounts()
    assert second.account_key == OTHER.account_key
    activity = store.request_activity
    assert await activity(since=T0, until=T0 + 300, bucket_seconds=60, account_id=first.id) == [
        ActivityBucket(0, 2, 100),
        ActivityBucket(2, 1, 0),
        ActivityBucket(4, 1, 5),
    ]
    assert await activity(since=T0, until=T0 + 300, bucket_seconds=60, account_id=second.id) == [
        ActivityBucket(2, 1, 20)
    ]
    unknown = second.id + 1
    assert await activity(since=T0, until=T0 + 300, bucket_seconds=60, account_id=unknown) == []


async def test_an_empty_range_has_no_buckets(store: Store) -> None:
    assert await store.request_activity(since=T0, until=T0, bucket_seconds=60) == []
    assert await store.request_activity(since=T0 + 301, until=T0 + 900, bucket_seconds=60) == []


@pytest.mark.parametrize(
    ("since", "until", "bucket_seconds", "message"),
    [
        (T0, T0 + 60, 0.0, "bucket_seconds"),
        (T0, T0 + 60, -60.0, "bucket_seconds"),
        (T0, T0 + 60, math.nan, "bucket_seconds"),
        (T0, T0 - 1, 60.0, "until"),
    ],
)
async def test_bad_arguments_are_refused(
    store: Store, since: float, until: float, bucket_seconds: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await store.request_activity(since=since, until=until, bucket_seconds=bucket_seconds)


@pytest.mark.parametrize(
    ("account", "index"), [(False, "requests_time"), (True, "requests_account_time")]
)
async def test_the_query_seeks_a_time_index(store: Store, account: bool, index: str) -> None:
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    await store.request_activity(
        since=T0, until=T0 + 300, bucket_seconds=60, account_id=1 if account else None
    )
    [sql] = statements  # with its bound values written in
    plan = " ".join(str(row[-1]) for row in query(store.path, "EXPLAIN QUERY PLAN " + sql))
    assert f"SEARCH requests USING INDEX {index}" in plan, plan
    assert "started_at>? AND started_at<?" in plan, plan
