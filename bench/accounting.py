"""codexgate's healthz counters checked against the traffic the load generator saw."""

from __future__ import annotations

from .load import Counters
from .report import proxy_label
from .run import Health


def expected_snapshots(counters: Counters) -> int:
    """Snapshots codexgate takes of what the client saw.

    The rate-limit headers of every turn answered 200 and of every WebSocket 101, every
    wham/usage body, every codex.rate_limits frame. The large streams carry no usage.
    """
    return counters.turns + counters.usage + counters.ws_opened + counters.ws_rate_limits


def expected_requests(counters: Counters) -> int:
    """Request-log rows codexgate writes for what the client saw.

    One per HTTP exchange answered 200 (SSE turns, usage queries, large streams) and one per
    WebSocket turn that completed; a WebSocket connection itself has no row.
    """
    return counters.turns + counters.usage + counters.streams + counters.ws_turns


def _verdict(expected: int, accounted: int, counters: Counters) -> str:
    if expected == accounted:
        return "all accounted for"
    if counters.errors:
        return f"MISMATCH (the {counters.errors} failed request(s) may account for it)"
    return "MISMATCH"


def _accounting(health: Health, counters: Counters) -> tuple[bool, list[str]]:
    """Whether codexgate's counters match the traffic the client saw, and the lines saying so."""
    snapshots, requests = expected_snapshots(counters), expected_requests(counters)
    recorded = health.recorded + health.dropped
    logged = (health.requests_logged or 0) + (health.requests_dropped or 0)
    snapshot_line = (
        f"  snapshots: {snapshots:,} expected ({counters.turns:,} SSE turns and "
        f"{counters.usage:,} wham/usage answered 200, {counters.ws_opened:,} WebSocket "
        f"handshakes, {counters.ws_rate_limits:,} codex.rate_limits frames)"
    )
    request_line = (
        f"  request log: {requests:,} rows expected ({counters.turns:,} SSE turns, "
        f"{counters.usage:,} wham/usage, {counters.streams:,} large streams answered 200, "
        f"{counters.ws_turns:,} WebSocket turns completed)"
    )
    if not health.settled:  # the queue holds both kinds; only the sum can be checked
        accounted = recorded + logged + health.queue_depth
        verdict = _verdict(snapshots + requests, accounted, counters)
        return accounted == snapshots + requests, [
            snapshot_line,
            request_line,
            f"  together {snapshots + requests:,} against {accounted:,} recorded, logged, "
            f"dropped or still queued: {verdict}",
        ]
    lines = [
        f"{snapshot_line}; {recorded:,} recorded + dropped: "
        f"{_verdict(snapshots, recorded, counters)}"
    ]
    matched = recorded == snapshots
    if health.requests_logged is None:
        lines.append(f"{request_line}; healthz has no request-log counters")
    else:
        lines.append(
            f"{request_line}; {logged:,} logged + dropped: {_verdict(requests, logged, counters)}"
        )
        matched = matched and logged == requests
    return matched, lines


def health_lines(name: str, health: Health | None, counters: Counters) -> tuple[bool, list[str]]:
    """One codexgate's healthz, checked against what it should have captured."""
    if health is None:
        return False, [f"{proxy_label(name)} healthz: no answer after the run"]
    requests = (
        "no request-log counters"
        if health.requests_logged is None
        else f"request log: logged {health.requests_logged:,}, dropped {health.requests_dropped:,}"
    )
    lines = [
        f"{proxy_label(name)} healthz after the run: status {health.status}, "
        f"capture {'on' if health.capture else 'off'}, db {health.db_state}"
        f"{f' ({health.last_error})' if health.last_error else ''}; snapshots: recorded "
        f"{health.recorded:,}, dropped {health.dropped:,}, unattributed {health.unattributed:,}; "
        f"{requests}; queue depth {health.queue_depth}"
        f"{'' if health.settled else ' (never settled: queue not empty or counters moving)'}"
    ]
    if health.moved_after_empty:
        lines.append(
            "  (counters still rose after healthz first showed an empty queue: the batch the "
            "recorder holds while it lingers and writes is in neither the depth nor a counter)"
        )
    clean = health.dropped == 0 and not health.requests_dropped and health.unattributed == 0
    if health.capture:
        matched, accounting = _accounting(health, counters)
        return matched and clean and health.settled, lines + accounting
    silent = health.recorded == 0 and not health.requests_logged and health.unattributed == 0
    lines.append(
        "  with capture off it recorded nothing, as it should"
        if silent
        else "  RECORDED with capture off"
    )
    return silent and clean and health.settled, lines
