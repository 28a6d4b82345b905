"""The bench's settings from its command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

_T = TypeVar("_T")

RATE_CONCURRENCIES: Final = (1, 32)
WS_CONCURRENCIES: Final = (1, 32)
USAGE_CONCURRENCY: Final = 32
LATENCY_CONCURRENCY: Final = 4
# Per rate run (plus a fifth of it as warm-up): 5 rate scenarios x 4 targets x 3 rounds, so
# with the idle streams, the recorder and the PostgreSQL cases the default run takes about 6½
# minutes.
DEFAULT_SECONDS: Final = 2.5
DEFAULT_MEGABYTES: Final = 50
IDLE_STREAMS: Final = 1000
RECORDER_SECONDS: Final = 4.0
# Rounds of SSE turns through codexgate on SQLite against on PostgreSQL, and seconds per run:
# the two differ by a few percent at most, less than two shared cores move from one run to the
# next, so it takes many short pairs (each pair back to back) for a stable median ratio.
STORE_ROUNDS: Final = 10
STORE_SECONDS: Final = 1.5
# Rounds of SSE turns through one codexgate, through nginx in front of it and through nginx in
# front of two, all on one PostgreSQL database; each round runs the three back to back at every
# concurrency, so one round takes 3 x 2 x (1.5 + 0.3) s.
INSTANCE_ROUNDS: Final = 5
INSTANCE_CONCURRENCIES: Final = (32, 1)
PROFILE_RATE: Final = 500  # py-spy samples per second
# The cases --only can pick, each run on its own without the rounds' processes.
ONLY_CASES: Final = ("auth", "feed", "recorder", "postgresql", "instances")


@dataclass(frozen=True, slots=True)
class Settings:
    """How long and how much the bench measures."""

    seconds: float
    rounds: int
    samples: int
    megabytes: int
    markdown: Path | None
    quick: bool
    gateway_args: tuple[str, ...] = ()
    nginx: bool = True
    # The PostgreSQL cases: the recorder alone, SSE turns vs SQLite, several instances.
    postgresql: bool = True
    idle_streams: int = IDLE_STREAMS
    recorder_seconds: float = RECORDER_SECONDS
    store_rounds: int = STORE_ROUNDS
    store_seconds: float = STORE_SECONDS
    instance_rounds: int = INSTANCE_ROUNDS
    instance_seconds: float = STORE_SECONDS
    instance_concurrencies: tuple[int, ...] = INSTANCE_CONCURRENCIES
    profile_seconds: float = 0.0  # above 0: profile codexgate instead of benchmarking
    profile_output: Path | None = None
    rate_concurrencies: tuple[int, ...] = RATE_CONCURRENCIES
    ws_concurrencies: tuple[int, ...] = WS_CONCURRENCIES
    usage_concurrency: int = USAGE_CONCURRENCY
    latency_concurrency: int = LATENCY_CONCURRENCY
    only: tuple[str, ...] = ()  # when set: just these of ONLY_CASES
    before: str | None = None  # a git revision whose codexgate is measured beside today's

    @property
    def warmup_seconds(self) -> float:
        """Warm-up before each rate measurement."""
        return min(1.0, self.seconds / 5)

    @property
    def store_warmup_seconds(self) -> float:
        """Warm-up before each SQLite against PostgreSQL measurement."""
        return min(1.0, self.store_seconds / 5)

    @property
    def instance_warmup_seconds(self) -> float:
        """Warm-up before each measurement of the several-instances case."""
        return min(1.0, self.instance_seconds / 5)

    @property
    def warmup_samples(self) -> int:
        """Untimed turns before each latency measurement."""
        return max(self.latency_concurrency, self.samples // 10)

    @property
    def warmup_megabytes(self) -> int:
        """Size of the stream read before the measured one."""
        return max(1, self.megabytes // 10)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be above 0 and at most 3600")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 0 and 10000")
    return value


def _seconds_or_zero(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600")
    return value


def _revision(raw: str) -> str:
    if not raw.strip() or raw.startswith("-"):
        raise argparse.ArgumentTypeError("must name a git revision")
    return raw


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "codexgate with capture on and with capture off, and nginx, against a direct "
            "connection to the same fake upstream, one run; then 1,000 idle streams, the "
            "recorder alone (on SQLite and on PostgreSQL), codexgate on PostgreSQL against "
            "SQLite, and one codexgate against two behind nginx on one PostgreSQL database. "
            "Linux only (CPU and memory come from /proc)."
        ),
    )
    parser.add_argument(
        "--seconds",
        type=_positive_float,
        help=f"per rate run (default {DEFAULT_SECONDS:g}; {STORE_SECONDS:g} for SQLite against "
        "PostgreSQL and for several instances)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        help=f"rounds, medians (default 3; {STORE_ROUNDS} for SQLite against PostgreSQL, "
        f"{INSTANCE_ROUNDS} for several instances)",
    )
    parser.add_argument("--samples", type=_positive_int, help="latency samples (default 200)")
    parser.add_argument(
        "--megabytes",
        "--mb",
        type=_positive_int,
        help=f"large stream size in MB (default {DEFAULT_MEGABYTES})",
    )
    parser.add_argument(
        "--no-nginx", action="store_true", help="leave nginx out (it is installed when missing)"
    )
    parser.add_argument(
        "--no-postgresql",
        action="store_true",
        help="leave the PostgreSQL cases out (the recorder alone on PostgreSQL, SSE turns "
        "through codexgate on PostgreSQL against SQLite, and several instances)",
    )
    parser.add_argument(
        "--idle-streams",
        type=_count,
        help=f"idle streams held open at once for the RSS figure, 0 to skip (default "
        f"{IDLE_STREAMS})",
    )
    parser.add_argument(
        "--recorder-seconds",
        type=_seconds_or_zero,
        help=f"per recorder-alone run, 0 to skip (default {RECORDER_SECONDS:g})",
    )
    parser.add_argument(
        "--profile",
        type=_positive_float,
        metavar="SECONDS",
        help=(
            "instead of the benchmark, profile codexgate (capture on) with py-spy for SECONDS "
            "under small SSE turns at concurrency 32 and print the top functions"
        ),
    )
    parser.add_argument(
        "--profile-output", type=Path, help="keep py-spy's raw (collapsed stacks) output here"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--before",
        type=_revision,
        metavar="REV",
        help=(
            "also measure the codexgate of git revision REV (e.g. a commit), exported from the "
            "repository with git archive: a third instance with capture on in every round, its "
            "idle streams, and the recorder alone on SQLite beside today's"
        ),
    )
    parser.add_argument(
        "--codexgate-arg",
        action="append",
        default=[],
        metavar="ARG",
        help=(
            "extra argument for every codexgate instance of the rounds, repeatable "
            "(e.g. --codexgate-arg=--queue-size=100000); --capture is set by the bench"
        ),
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=ONLY_CASES,
        metavar="CASE",
        help=(
            "run just this case, repeatable: auth (the auth middleware's cost per request), "
            "feed (the live feed's delay from a turn to its usage event), recorder (the "
            "recorder alone, on SQLite and on PostgreSQL), postgresql (SSE turns at "
            "concurrency 32 through codexgate on PostgreSQL against the same on SQLite), "
            "instances (SSE turns at concurrency 32 and 1 through one codexgate on PostgreSQL, "
            "through nginx in front of it, and through nginx in front of two on the same "
            "database); without it every case runs"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 1 s runs, 1 round, 50 samples, 10 MB, 200 idle streams, 1 s recorder",
    )
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the command line; --quick changes the defaults, explicit flags win."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.before is not None and args.profile:
        parser.error("--before does not combine with --profile")
    quick: bool = args.quick
    return Settings(
        seconds=args.seconds or (1.0 if quick else DEFAULT_SECONDS),
        rounds=args.rounds or (1 if quick else 3),
        samples=args.samples or (50 if quick else 200),
        megabytes=args.megabytes or (10 if quick else DEFAULT_MEGABYTES),
        markdown=args.markdown,
        quick=quick,
        gateway_args=tuple(args.codexgate_arg),
        nginx=not args.no_nginx,
        postgresql=not args.no_postgresql,
        idle_streams=_given(args.idle_streams, 200 if quick else IDLE_STREAMS),
        recorder_seconds=_given(args.recorder_seconds, 1.0 if quick else RECORDER_SECONDS),
        store_rounds=args.rounds or (1 if quick else STORE_ROUNDS),
        store_seconds=args.seconds or (1.0 if quick else STORE_SECONDS),
        instance_rounds=args.rounds or (1 if quick else INSTANCE_ROUNDS),
        instance_seconds=args.seconds or (1.0 if quick else STORE_SECONDS),
        profile_seconds=args.profile or 0.0,
        profile_output=args.profile_output,
        only=tuple(dict.fromkeys(args.only or ())),
        before=args.before,
    )


def _given(value: _T | None, default: _T) -> _T:
    """An explicit flag (0 included), else the default."""
    return default if value is None else value
