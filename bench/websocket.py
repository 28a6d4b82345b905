"""The WebSocket load generator: turns per second over persistent Codex WebSocket connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import ClientError, ClientSession, ClientWebSocketResponse, ClientWSTimeout, WSMsgType

from .load import ERROR_PAUSE, MAX_TURNS_PER_WORKER, TURN_TIMEOUT, BadAnswer, Counters, Rate
from .meter import Usage, metered
from .protocol import (
    COMPLETED,
    RATE_LIMITS,
    RESPONSES_PATH,
    WS_TURN,
    frame_type_prefix,
    ws_turn,
)

# The Codex CLI offers permessage-deflate (window bits 15); the fake upstream accepts it.
CLIENT_COMPRESS: Final = 15
WS_TIMEOUT: Final = ClientWSTimeout(ws_receive=None, ws_close=10.0)
CLOSE_WITHIN: Final = 15.0
RATE_LIMITS_PREFIX: Final = frame_type_prefix(RATE_LIMITS)
COMPLETED_PREFIX: Final = frame_type_prefix(COMPLETED)


@dataclass(frozen=True, slots=True)
class WsTurn:
    """Where and how to open the WebSocket, the response.create frame, and a turn's answer."""

    url: str
    headers: Mapping[str, str]
    create: str
    frames: int
    expected_chars: int


def make_ws_turn(base: str, headers: Mapping[str, str], create: str) -> WsTurn:
    """A WebSocket turn on the target at `base` (http://host:port becomes ws://host:port)."""
    frames = ws_turn(WS_TURN)
    return WsTurn(
        url=f"ws{base.removeprefix('http')}{RESPONSES_PATH}",
        headers=headers,
        create=create,
        frames=len(frames),
        expected_chars=sum(len(frame) for frame in frames),
    )


class _Lane:
    """One persistent WebSocket connection; opened on its first turn, again after a failure."""

    def __init__(self, session: ClientSession, turn: WsTurn, counters: Counters) -> None:
        self._session = session
        self._turn = turn
        self._counters = counters
        self._ws: ClientWebSocketResponse | None = None

    async def _open(self) -> ClientWebSocketResponse:
        async with asyncio.timeout(TURN_TIMEOUT):
            ws = await self._session.ws_connect(
                self._turn.url,
                headers=self._turn.headers,
                compress=CLIENT_COMPRESS,
                max_msg_size=0,
                timeout=WS_TIMEOUT,
            )
        self._counters.ws_opened += 1
        self._ws = ws
        return ws

    async def turn(self) -> None:
        """Send response.create and read frames until response.completed, checking the answer."""
        ws = self._ws or await self._open()
        turn, counters = self._turn, self._counters
        received = 0
        last = ""
        async with asyncio.timeout(TURN_TIMEOUT):
            await ws.send_str(turn.create)
            for index in range(turn.frames):
                message = await ws.receive()
                if message.type != WSMsgType.TEXT:
                    raise BadAnswer(
                        f"frame {index + 1} of {turn.frames} was {message.type.name}"
                        f" ({message.data!r}, close code {ws.close_code})"
                    )
                last = message.data
                received += len(last)
                if last.startswith(RATE_LIMITS_PREFIX):
                    counters.ws_rate_limits += 1
        if last.startswith(COMPLETED_PREFIX):
            counters.ws_turns += 1
        if received != turn.expected_chars or not last.startswith(COMPLETED_PREFIX):
            raise BadAnswer(f"{received} of {turn.expected_chars} characters, last {last[:40]!r}")

    async def close(self) -> None:
        """Close the connection (a normal close, waited for), if one is open."""
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                async with asyncio.timeout(CLOSE_WITHIN):
                    await ws.close()
            except (ClientError, OSError) as exc:  # TimeoutError is an OSError
                self._counters.fail(exc)


@dataclass(slots=True)
class _Tally:
    """Complete turns of one rate measurement."""

    done: int = 0


async def _lane_worker(lane: _Lane, counters: Counters, deadline: float, tally: _Tally) -> None:
    """Run turns back to back on one connection until the deadline, counting complete ones."""
    for _ in range(MAX_TURNS_PER_WORKER):
        if time.perf_counter() >= deadline:
            return
        try:
            await lane.turn()
        except (ClientError, OSError, BadAnswer) as exc:
            counters.fail(exc)
            await lane.close()  # the next turn opens a new connection
            await asyncio.sleep(ERROR_PAUSE)
        else:
            tally.done += 1


async def _run_lanes(lanes: list[_Lane], counters: Counters, seconds: float) -> Rate:
    tally = _Tally()
    started = time.perf_counter()
    deadline = started + seconds
    async with asyncio.timeout(seconds + 2 * TURN_TIMEOUT + 5.0), asyncio.TaskGroup() as group:
        for lane in lanes:
            group.create_task(_lane_worker(lane, counters, deadline, tally))
    return Rate(tally.done, time.perf_counter() - started)


async def websocket_turns_per_second(
    session: ClientSession,
    turn: WsTurn,
    counters: Counters,
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    pids: Sequence[int] = (),
) -> tuple[Rate, Usage]:
    """Turns on `concurrency` connections kept open from the warm-up to the end.

    Also what the proxy's processes (`pids`) used while the measured turns ran.
    """
    lanes = [_Lane(session, turn, counters) for _ in range(concurrency)]
    try:
        await _run_lanes(lanes, counters, warmup)  # opens the connections
        async with metered(pids) as usage:
            rate = await _run_lanes(lanes, counters, seconds)
        return rate, usage
    finally:
        async with asyncio.TaskGroup() as group:
            for lane in lanes:
                group.create_task(lane.close())
