"""Stopping the background tasks the app owns."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel an owned task and wait for it to end.

    Its own CancelledError is swallowed; one that cancels the caller too is not ours to
    swallow, and neither is any other way the task failed.
    """
    if task is None:
        return
    task.cancel()
    await wait_owned(task)


async def wait_owned(task: asyncio.Task[None]) -> None:
    """Wait for an owned task to end; its own cancellation is swallowed, the caller's is not."""
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
