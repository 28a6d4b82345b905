"""The event loop the bench's processes run on: uvloop when it is importable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.metadata import version


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """A short description of the loop `loop_factory` picks."""
    return "asyncio" if loop_factory() is None else f"uvloop {version('uvloop')}"
