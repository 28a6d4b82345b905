"""py-spy on codexgate under load: the functions with the most own and cumulative time."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .load import Counters, make_turn, new_session, turns_per_second
from .processes import BenchError
from .protocol import SMALL_TURN
from .run import Target, Workload

CONCURRENCY: Final = 32
LEAD_IN: Final = 1.0  # load runs this long before py-spy attaches, and after it is done
TOP: Final = 15
# Frames every main-thread sample passes through (or the writer thread's start): listing them
# among the cumulative times says nothing.
ENTRY_FRAMES: Final = (
    "(<frozen runpy>)",
    "(codexgate/__main__.py)",
    "main (codexgate/cli.py)",
    "Runner.run (asyncio/runners.py)",
    "(threading.py)",
)


@dataclass(frozen=True, slots=True)
class Profile:
    """Samples per function: where they were on top of the stack, and anywhere in it."""

    samples: int
    own: Counter[str]
    cumulative: Counter[str]
    requests_per_second: float


def py_spy() -> Path:
    """py-spy next to this Python (the virtualenv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return beside
    found = shutil.which("py-spy")
    if found is None:
        raise BenchError("py-spy is not installed: pip install py-spy")
    return Path(found)


def _function(frame: str) -> str:
    """`name (module/file.py)`: py-spy's frame without the line number."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0]})" if where else name


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def parse_collapsed(text: str) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, own samples and cumulative samples per function from collapsed stacks."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        functions = [_function(frame) for frame in stack.split(";")]
        total += count
        own[functions[-1]] += count
        for function in set(functions):  # a recursive function counts once per sample
            cumulative[function] += count
    return total, own, cumulative


async def profile(
    target: Target, pid: int, load: Workload, seconds: float, rate: int, output: Path
) -> Profile:
    """Run small SSE turns at concurrency 32 through `target` while py-spy records `pid`."""
    turn = make_turn(target.base, SMALL_TURN, load.headers, load.body)
    counters = Counters()
    command = [
        str(py_spy()),
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{max(1, round(seconds))}",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nolineno",
        "--nonblocking",  # do not pause codexgate for each sample: less distortion
        "--output",
        str(output),
    ]
    async with new_session() as session:
        load_task = asyncio.create_task(
            turns_per_second(
                session,
                turn,
                counters,
                concurrency=CONCURRENCY,
                seconds=seconds + 2 * LEAD_IN + 2.0,  # py-spy takes a moment to attach
            )
        )
        try:
            await asyncio.sleep(LEAD_IN)
            spy = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            said, _ = await spy.communicate()
            done = await load_task
        finally:
            if not load_task.done():
                load_task.cancel()
                await asyncio.gather(load_task, return_exceptions=True)
    text = await asyncio.to_thread(_read, output)
    if spy.returncode != 0 or text is None:
        raise BenchError(f"py-spy failed ({spy.returncode}): {said.decode(errors='replace')}")
    total, own, cumulative = parse_collapsed(text)
    return Profile(total, own, cumulative, done.per_second)


def profile_lines(result: Profile) -> list[str]:
    """The top functions by own time and by cumulative time, as percentages of all samples."""
    lines = [
        f"{result.samples:,} samples of codexgate (capture on) while it served "
        f"{result.requests_per_second:,.0f} small SSE turns/s at concurrency {CONCURRENCY}",
    ]
    cumulative = Counter(
        {
            function: count
            for function, count in result.cumulative.items()
            if not function.endswith(ENTRY_FRAMES)
        }
    )
    for title, counts in (("own time", result.own), ("cumulative time", cumulative)):
        lines.append(f"top {TOP} by {title}:")
        for function, count in counts.most_common(TOP):
            lines.append(f"  {100 * count / max(1, result.samples):5.1f} %  {function}")
    lines.append(
        "(own time in Runner.run is the event loop itself: uvloop is C, so py-spy shows its "
        "caller; the entry frames are left out of the cumulative list)"
    )
    return lines
