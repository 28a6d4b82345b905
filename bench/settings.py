"""The bench's settings from its command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RATE_CONCURRENCIES: Final = (1, 32)
WS_CONCURRENCIES: Final = (1, 32)
USAGE_CONCURRENCY: Final = 32
LATENCY_CONCURRENCY: Final = 4
# Per rate run (plus a fifth of it as warm-up): 5 rate scenarios x 3 targets x 3 rounds, so
# the default run stays under 4 minutes (it took 5 s when there were 2 scenarios x 2 targets).
DEFAULT_SECONDS: Final = 2.5


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
    rate_concurrencies: tuple[int, ...] = RATE_CONCURRENCIES
    ws_concurrencies: tuple[int, ...] = WS_CONCURRENCIES
    usage_concurrency: int = USAGE_CONCURRENCY
    latency_concurrency: int = LATENCY_CONCURRENCY

    @property
    def warmup_seconds(self) -> float:
        """Warm-up before each rate measurement."""
        return min(1.0, self.seconds / 5)

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "codexgate with capture on and with capture off against a direct connection to "
            "the same fake upstream, one run."
        ),
    )
    parser.add_argument(
        "--seconds", type=_positive_float, help=f"per rate run (default {DEFAULT_SECONDS:g})"
    )
    parser.add_argument("--rounds", type=_positive_int, help="rounds, medians (default 3)")
    parser.add_argument("--samples", type=_positive_int, help="latency samples (default 200)")
    parser.add_argument(
        "--megabytes", "--mb", type=_positive_int, help="large stream size in MB (default 200)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--codexgate-arg",
        action="append",
        default=[],
        metavar="ARG",
        help=(
            "extra argument for both codexgate instances, repeatable "
            "(e.g. --codexgate-arg=--queue-size=100000); --capture is set by the bench"
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: 1 s runs, 1 round, 50 samples, 20 MB"
    )
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the command line; --quick changes the defaults, explicit flags win."""
    args = _parser().parse_args(argv)
    quick: bool = args.quick
    return Settings(
        seconds=args.seconds or (1.0 if quick else DEFAULT_SECONDS),
        rounds=args.rounds or (1 if quick else 3),
        samples=args.samples or (50 if quick else 200),
        megabytes=args.megabytes or (20 if quick else 200),
        markdown=args.markdown,
        quick=quick,
        gateway_args=tuple(args.codexgate_arg),
    )
