"""The store's per-bucket request counts for the dashboard's summary strip."""

from __future__ import annotations

import math

import pytest

from codexgate.core.models import TokenUsage
from codexgate.core.rows import ActivityBucket
from codexgate.storage.interface import Storage
from tests.helpers.builders import OTHER, T0, request_record


@pytest.fixture
async def storage(storage: Storage) -> Storage:
    """The backend's storage holding requests around T0 .. T0 + 300 s of two seats and none."""
    await storage.record(
        [
            request_record(T0 - 0.5, tokens=TokenUsage(total_tokens=1000)),  # before since
            request_record(T0, tokens=TokenUsage(total_tokens=100)),
            request_record(T0 + 59.9),  # no usage: NULL tokens
            request_record(T0 + 60, anonymous=True, tokens=TokenUsage(total_tokens=7)),
            request_record(T0 + 150, who=OTHER, tokens=TokenUsage(total_tokens=20)),
            request_record(T0 + 150.5, tokens=TokenUsage(input_tokens=3)),  # NULL total
            request_record(T0 + 299.9, tokens=TokenUsage(total_tokens=5)),
            request_record(T0 + 300, tokens=TokenUsage(total_tokens=1000)),  # at until
        ]
    )
    return storage


async def test_requests_and_tokens_per_bucket(storage: Storage) -> None:
    buckets = await storage.request_activity(since=T0, until=T0 + 300, bucket_seconds=60)
    # Bucket 3 (T0 + 180 .. 240) is empty and left out; since counts, until does not.
    assert buckets == [
        ActivityBucket(index=0, requests=2, tokens=100),
        ActivityBucket(index=1, requests=1, tokens=7),
        ActivityBucket(index=2, requests=2, tokens=20),
        ActivityBucket(index=4, requests=1, tokens=5),
    ]


async def test_buckets_start_at_since(storage: Storage) -> None:
    buckets = await storage.request_activity(since=T0 - 10, until=T0 + 400, bucket_seconds=100)
    assert buckets == [
        ActivityBucket(0, 4, 1107),
        ActivityBucket(1, 2, 20),
        ActivityBucket(3, 2, 1005),
    ]


async def test_account_filter(storage: Storage) -> None:
    first, second = await storage.accounts()
    assert second.account_key == OTHER.account_key
    activity = storage.request_activity
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


async def test_an_empty_range_has_no_buckets(storage: Storage) -> None:
    assert await storage.request_activity(since=T0, until=T0, bucket_seconds=60) == []
    assert await storage.request_activity(since=T0 + 301, until=T0 + 900, bucket_seconds=60) == []


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
    storage: Storage, since: float, until: float, bucket_seconds: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await storage.request_activity(since=since, until=until, bucket_seconds=bucket_seconds)
