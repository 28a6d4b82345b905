"""Handing memory that a burst freed back to the system: glibc's trim and the app's timer.

Each burst runs in a fresh interpreter: in a test process that has run other tests, the heap's
free holes are reused by the burst and the figures say nothing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Final

import pytest

from codexgate.app import create_app, memory_trimmer
from codexgate.config import Config

MB: Final = 1_000_000
BURST: Final = 40 * MB

needs_trim = pytest.mark.skipif(memory_trimmer() is None, reason="no malloc_trim in this libc")

# Touches BURST bytes in heap blocks and frees them, each kept from its neighbours by a small
# survivor (which glibc cannot move), then prints the RSS while the freed pages are kept.
_BURST_PRELUDE: Final = textwrap.dedent(
    f"""
    from pathlib import Path

    BURST = {BURST}
    BLOCK = 60_000  # below glibc's mmap threshold: from the heap, like a deflate buffer

    def rss():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def burst():
        blocks, survivors = [], []
        for _ in range(BURST // BLOCK):
            blocks.append(bytearray(BLOCK))  # zeroed, so its pages are resident
            survivors.append(bytearray(1_000))
        blocks.clear()
        return survivors
    """
)


def _run(body: str) -> tuple[int, int, int]:
    """RSS before the burst, with the freed burst kept, and after; from a fresh interpreter."""
    script = _BURST_PRELUDE + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    before, kept, after = (int(word) for word in result.stdout.split())
    return before, kept, after


@needs_trim
def test_a_trim_gives_back_the_pages_a_burst_freed_between_survivors() -> None:
    before, kept, after = _run(
        """
        from codexgate.app import memory_trimmer
        release = memory_trimmer()
        release()
        before = rss()
        survivors = burst()
        kept = rss()
        release()
        print(before, kept, rss())
        survivors.clear()
        """
    )
    assert kept - before > BURST * 3 // 4  # the burst's pages stayed resident once freed
    assert kept - after > BURST * 3 // 4


@needs_trim
def test_the_cleanup_context_trims_every_interval_until_cleanup() -> None:
    before, kept, after = _run(
        """
        import asyncio
        from aiohttp import web
        from codexgate.app import trim_memory_ctx

        async def main():
            app = web.Application()
            app.cleanup_ctx.append(trim_memory_ctx(every=0.05))
            runner = web.AppRunner(app)
            await runner.setup()
            try:
                before = rss()
                survivors = burst()
                kept = rss()
                await asyncio.sleep(0.3)
                print(before, kept, rss())
            finally:
                await runner.cleanup()
            survivors.clear()

        asyncio.run(main())
        """
    )
    assert kept - before > BURST * 3 // 4
    assert kept - after > BURST * 3 // 4


@needs_trim
def test_without_the_cleanup_context_the_freed_pages_stay() -> None:
    # The control: what the two tests above see gone is gone because of the trim.
    before, kept, after = _run(
        """
        import time
        before = rss()
        survivors = burst()
        kept = rss()
        time.sleep(0.3)
        print(before, kept, rss())
        """
    )
    assert kept - before > BURST * 3 // 4
    assert kept - after < BURST // 4


def test_the_gateway_runs_the_trim_context() -> None:
    app = create_app(Config())
    assert "trim_memory" in [context.__name__ for context in app.cleanup_ctx]
