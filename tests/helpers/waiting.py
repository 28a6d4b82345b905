"""The one way tests wait for something that happens in the background: `eventually()`."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

T = TypeVar("T")


# Two overloads so that a value-returning wait infers its type from an async `check` as well.
@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    accept: Callable[[T], object] = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    accept: Callable[[T], object] = ...,
) -> T: ...


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (its own deadline, to fail with the last value)
    interval: float = 0.02,
    accept: Callable[[T], object] = bool,
) -> T:
    """Call `check` (plain or async) until `accept` takes its value; that value.

    After `timeout` seconds the test fails with the last value seen. The timeouts are generous:
    a slow machine waits longer, a fast one no longer than it takes.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        found = cast(T, await result if inspect.isawaitable(result) else result)
        if accept(found):
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"not so after {timeout:g} s; last: {found!r}"[:2000])
        await asyncio.sleep(interval)
