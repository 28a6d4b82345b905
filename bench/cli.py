"""`python -m bench`: start the upstream, codexgates and nginx, run the rounds, print it all."""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from . import nginx, procfs
from .auth import AuthCost, auth_costs
from .backends import StoreComparison, store_comparison
from .before import Revision, export
from .feed import FeedDelay, feed_delay
from .instances import InstancesComparison, instances_comparison
from .loops import loop_factory
from .postgres import BenchPostgres, bench_postgres
from .processes import BenchError, raise_open_files_limit
from .profile import profile, profile_lines
from .recording import (
    POSTGRESQL,
    RecorderRate,
    recorder_rates,
    sqlite_recorder_comparison,
    sqlite_recorder_rates,
)
from .report import CAPTURE_ON, machine
from .run import workload
from .session import Outcome, ready, run_with_services, services
from .settings import PROFILE_RATE, Settings, parse_settings
from .summary import SideFigures, checks, markdown, side_lines, summary


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM unwinds like Ctrl-C, so that every child process is stopped on the way out."""
    raise KeyboardInterrupt


def _find_nginx(settings: Settings) -> tuple[Path | None, str]:
    """nginx (installed when missing), or None and why it is left out."""
    if not settings.nginx:
        return None, "left out (--no-nginx)"
    binary, note = nginx.install()
    if binary is None:
        print(f"bench: nginx skipped: {note}", flush=True)
    return binary, note


def _recorder(
    settings: Settings, postgres: BenchPostgres, before: Revision | None
) -> tuple[list[RecorderRate], list[RecorderRate]]:
    """The recorder-alone measurement on SQLite (today's tree, and the --before revision's beside
    it), then today's on PostgreSQL when it runs."""
    if not settings.recorder_seconds:
        return [], []
    print("recorder alone", flush=True)
    earlier: list[RecorderRate] = []
    if before is not None:
        rates, earlier = sqlite_recorder_comparison(settings.recorder_seconds, before)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        if before is None:
            rates = runner.run(sqlite_recorder_rates(settings.recorder_seconds))
        if postgres.server is not None:
            rates += runner.run(
                recorder_rates(settings.recorder_seconds, POSTGRESQL, postgres.fresh_database)
            )
    return rates, earlier


def _stores(settings: Settings, workdir: Path, postgres: BenchPostgres) -> StoreComparison | None:
    """SSE turns through codexgate on SQLite and on PostgreSQL, when PostgreSQL runs."""
    if postgres.server is None:
        return None
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return store_comparison(runner, settings, workdir, postgres)


def _instances(
    settings: Settings,
    workdir: Path,
    postgres: BenchPostgres,
    nginx_binary: Path | None,
    nginx_note: str,
) -> tuple[InstancesComparison | None, str]:
    """One codexgate, nginx in front of it, nginx in front of two; or None and why not."""
    if postgres.server is None:
        return None, postgres.note
    if nginx_binary is None:
        return None, f"not run: it needs nginx; {nginx_note}"
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        comparison = instances_comparison(runner, settings, workdir, postgres, nginx_binary)
    return comparison, postgres.note


def _auth() -> list[AuthCost]:
    """The auth middleware alone, in this process."""
    print("auth middleware alone", flush=True)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(auth_costs())


def _feed(settings: Settings, workdir: Path) -> FeedDelay:
    """The live feed's delay, through a codexgate and a fake upstream of its own."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return feed_delay(runner, workdir, settings.samples)


def _only(
    settings: Settings,
    workdir: Path,
    nginx_binary: Path | None,
    nginx_note: str,
    before: Revision | None,
) -> SideFigures:
    """Just the cases --only names."""
    wanted = "postgresql" in settings.only
    instances_wanted = "instances" in settings.only
    needs_postgres = (
        wanted
        or instances_wanted
        or ("recorder" in settings.only and settings.recorder_seconds > 0)
    )
    with bench_postgres(settings.postgresql and needs_postgres) as postgres:
        instances, instances_note = (
            _instances(settings, workdir, postgres, nginx_binary, nginx_note)
            if instances_wanted
            else (None, "")
        )
        recorder, recorder_before = (
            _recorder(settings, postgres, before) if "recorder" in settings.only else ([], [])
        )
        return SideFigures(
            idle=[],
            recorder=recorder,
            nginx_note="not run (--only)",
            recorder_before=recorder_before,
            before=before,
            auth=_auth() if "auth" in settings.only else [],
            feed=_feed(settings, workdir) if "feed" in settings.only else None,
            postgres=postgres.note,
            stores=_stores(settings, workdir, postgres) if wanted else None,
            stores_wanted=wanted,
            instances=instances,
            instances_note=instances_note,
            instances_wanted=instances_wanted,
        )


def _side(
    settings: Settings,
    workdir: Path,
    outcome: Outcome,
    nginx_binary: Path | None,
    nginx_note: str,
) -> SideFigures:
    """Every case after the rounds: the live feed, the recorder, the stores, several instances,
    the auth cost."""
    feed = _feed(settings, workdir)
    with bench_postgres(settings.postgresql) as postgres:
        recorder, recorder_before = _recorder(settings, postgres, outcome.before)
        stores = _stores(settings, workdir, postgres)
        instances, instances_note = _instances(
            settings, workdir, postgres, nginx_binary, nginx_note
        )
    return SideFigures(
        idle=outcome.idle,
        recorder=recorder,
        nginx_note=nginx_note,
        auth=_auth(),
        feed=feed,
        postgres=postgres.note,
        stores=stores,
        stores_wanted=True,
        instances=instances,
        instances_note=instances_note,
        instances_wanted=True,
        recorder_before=recorder_before,
        before=outcome.before,
    )


def _profile(settings: Settings, workdir: Path) -> list[str]:
    """Profile codexgate with capture on under small SSE turns at concurrency 32."""
    upstream, proxies = services(settings, workdir, None)
    gateway = proxies[0]
    output = settings.profile_output or workdir / "profile.txt"
    with upstream.service, gateway.service, asyncio.Runner(loop_factory=loop_factory()) as runner:
        targets = runner.run(ready(upstream, [gateway]))
        target = next(target for target in targets if target.name == CAPTURE_ON)
        print(
            f"profiling codexgate (capture on, pid {target.pids[0]}) for "
            f"{settings.profile_seconds:g} s",
            flush=True,
        )
        result = runner.run(
            profile(
                target,
                target.pids[0],
                workload(),
                settings.profile_seconds,
                PROFILE_RATE,
                output,
            )
        )
    lines = profile_lines(result)
    if settings.profile_output is not None:
        lines.append(f"py-spy's raw output written to {output}")
    return lines


def _before(settings: Settings, workdir: Path) -> Revision | None:
    """The --before revision exported into `workdir`, when a case that runs measures it."""
    if settings.before is None:
        return None
    if settings.only and ("recorder" not in settings.only or not settings.recorder_seconds):
        print(
            "bench: --before measures the rounds and the recorder alone; neither runs here",
            flush=True,
        )
        return None
    return export(settings.before, workdir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; 0 when nothing failed, 1 on errors or a misbehaving proxy."""
    settings = parse_settings(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    if not procfs.available():
        print("bench: /proc is missing; CPU and memory figures will be n/a", file=sys.stderr)
    raise_open_files_limit()
    try:
        with tempfile.TemporaryDirectory(prefix="codexgate-bench-") as workdir:
            if settings.profile_seconds:
                print(machine(), flush=True)
                print("\n".join(_profile(settings, Path(workdir))))
                return 0
            if settings.only:
                binary, note = _find_nginx(settings) if "instances" in settings.only else (None, "")
                machine_line = machine(nginx.version(binary) if binary else None)
                print(machine_line, flush=True)
                before = _before(settings, Path(workdir))
                side = _only(settings, Path(workdir), binary, note, before)
                lines = side_lines(side)
                print("\n".join(["", *lines, f"bench took {time.perf_counter() - started:.1f} s"]))
                if settings.markdown is not None:
                    settings.markdown.write_text("\n".join([machine_line, "", *lines, ""]))
                    print(f"markdown written to {settings.markdown}")
                return 0 if side.healthy else 1
            binary, note = _find_nginx(settings)
            machine_line = machine(nginx.version(binary) if binary else None)
            print(machine_line, flush=True)
            before = _before(settings, Path(workdir))
            outcome = run_with_services(settings, Path(workdir), binary, before)
            side = _side(settings, Path(workdir), outcome, binary, note)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    print("\n".join(summary(settings, outcome, side, time.perf_counter() - started)))
    if settings.markdown is not None:
        settings.markdown.write_text(markdown(settings, outcome, side, machine_line))
        print(f"markdown table written to {settings.markdown}")
    return 0 if checks(outcome)[0] and side.healthy else 1
