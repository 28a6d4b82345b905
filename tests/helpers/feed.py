"""The live feed as a test client reads it: its URL, and its answer as raw SSE blocks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestServer


@dataclass
class Block:
    """One SSE block: the fields up to a blank line (an event, a ping, the opening hints)."""

    event: str | None = None
    id: str | None = None
    data: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        """The data lines as one JSON value."""
        return orjson.loads("\n".join(self.data))


class SseReader:
    """Parses a text/event-stream answer line by line, keeping every byte it read."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.raw = bytearray()

    async def block(self, within: float = 5.0) -> Block | None:
        """The next block, or None at the end of the stream."""
        block = Block()
        async with asyncio.timeout(within):
            while True:
                line = await self.response.content.readline()
                self.raw += line
                if not line:
                    return None
                text = line.decode("utf-8").rstrip("\r\n")
                if not text:
                    return block
                name, _, value = text.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    block.comments.append(value)
                elif name == "event":
                    block.event = value
                elif name == "id":
                    block.id = value
                elif name == "data":
                    block.data.append(value)
                elif name == "retry":
                    block.retry = int(value)

    async def event(self, within: float = 5.0) -> Block:
        """The next block that dispatches an event (one with data)."""
        deadline = time.monotonic() + within
        while True:
            block = await self.block(max(0.01, deadline - time.monotonic()))
            assert block is not None, "the stream ended"
            if block.data:
                return block

    async def events(self, count: int, within: float = 5.0) -> list[Block]:
        """The next `count` event blocks."""
        return [await self.event(within) for _ in range(count)]


def feed_url(server: TestServer) -> str:
    """The live feed's URL on that test server."""
    return f"http://127.0.0.1:{server.port}/codexgate/api/v1/events"
