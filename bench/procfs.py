"""CPU time and memory of the proxy processes, read from /proc (Linux only)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")
TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
KIB: Final = 1024
RESET_PEAK: Final = "5"  # clear_refs: reset VmHWM to the current RSS (Linux 4.0+)


def available() -> bool:
    """Whether this machine has the /proc files the bench reads."""
    return (PROC / "self" / "stat").exists() and (PROC / "self" / "status").exists()


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once the process is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces or parentheses itself.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU seconds the processes (all their threads) have used so far."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / TICKS_PER_SECOND


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent on anything but idling since boot.

    The first line of /proc/stat: user nice system idle iowait irq softirq steal, in ticks;
    busy is user to softirq but idle and iowait. Steal (the hypervisor running someone else)
    is left out; guest time is already inside user.
    """
    try:
        first = (PROC / "stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return float("nan")
    ticks = [int(field) for field in first.split()[1:9]]
    return (sum(ticks[:7]) - ticks[3] - ticks[4]) / TICKS_PER_SECOND


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (nginx's workers under its master)."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:  # ppid, field 4
                found.append(int(entry.name))
    return sorted(found)


def _status_kib(pid: int, name: str) -> int:
    """A `name:   N kB` line of /proc/<pid>/status, in KiB; 0 when the process is gone."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return 0
    prefix = f"{name}:"
    for line in lines:
        if line.startswith(prefix):
            return int(line.split()[1])
    return 0


def rss_bytes(pids: Iterable[int]) -> int:
    """The resident set size of the processes now, summed (shared pages count once per process)."""
    return sum(_status_kib(pid, "VmRSS") for pid in pids) * KIB


def peak_rss_bytes(pids: Iterable[int]) -> int:
    """The processes' peak resident set sizes (VmHWM) since start or the last reset, summed."""
    return sum(_status_kib(pid, "VmHWM") for pid in pids) * KIB


def reset_peak(pids: Iterable[int]) -> bool:
    """Reset every process's VmHWM to its current RSS; False when one could not be reset."""
    done = True
    for pid in pids:
        try:
            (PROC / str(pid) / "clear_refs").write_text(RESET_PEAK)
        except OSError:
            done = False
    return done
