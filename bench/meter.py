"""CPU seconds and peak RSS of a proxy's processes around one measured stretch of load."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

from . import procfs

SAMPLE_EVERY: Final = 0.02  # when VmHWM cannot be reset, RSS is sampled this often instead


@dataclass(slots=True)
class Usage:
    """What the processes used while the block ran; NaN where there is nothing to measure."""

    cpu_seconds: float = math.nan
    peak_rss_bytes: float = math.nan


async def _sample_peak(pids: Sequence[int], usage: Usage) -> None:
    """Keep the largest summed RSS in usage.peak_rss_bytes until cancelled."""
    while True:
        usage.peak_rss_bytes = max(usage.peak_rss_bytes, procfs.rss_bytes(pids))
        await asyncio.sleep(SAMPLE_EVERY)


@contextlib.asynccontextmanager
async def metered(pids: Sequence[int]) -> AsyncIterator[Usage]:
    """Measure the CPU seconds and the peak RSS of `pids` while the block runs.

    The peak is VmHWM after resetting it (clear_refs) where allowed, otherwise sampled VmRSS.
    No pids (a direct connection has no proxy) or no /proc: the usage stays NaN.
    """
    usage = Usage()
    if not pids or not procfs.available():
        yield usage
        return
    reset = procfs.reset_peak(pids)
    sampler = None
    if not reset:
        usage.peak_rss_bytes = float(procfs.rss_bytes(pids))
        sampler = asyncio.create_task(_sample_peak(pids, usage))
    started = procfs.cpu_seconds(pids)
    try:
        yield usage
    finally:
        usage.cpu_seconds = procfs.cpu_seconds(pids) - started
        if sampler is not None:
            sampler.cancel()
            try:
                await sampler
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our own task is being cancelled, not just the sampler
        else:
            usage.peak_rss_bytes = float(procfs.peak_rss_bytes(pids))
