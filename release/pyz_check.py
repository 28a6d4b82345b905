"""codexgate.pyz's preamble: refuse, in one line, a Python the archive carries no wheels for.

shiv's bootstrap runs this file after unpacking site-packages and before importing codexgate.
The compiled dependencies exist in the archive once per CPython version (their file names carry
the ABI), so an interpreter outside that list would fail later with an ImportError deep in
aiohttp; this says which interpreters work instead. It runs on whatever Python started the
archive, so it keeps to syntax that any Python 3 shiv's bootstrap runs on understands.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import platform
import sys

# Written beside this file by release/dist.py: the extension-module suffixes the archive holds
# (".cpython-311-x86_64-linux-gnu.so", ...), the Python versions they are for, and the oldest
# glibc every wheel in it accepts.
TARGETS_FILE = "codexgate-pyz.json"


def _glibc() -> tuple[int, ...] | None:
    """This system's glibc version, or None (another C library, or not Linux)."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    if not found or not found.startswith("glibc "):
        return None
    return tuple(int(part) for part in found.split()[1].split(".")[:2] if part.isdigit())


def _refusal(pythons: list[str], suffixes: list[str], oldest_glibc: str) -> str | None:
    """Why this interpreter cannot run the archive, or None when it can."""
    wanted = f"CPython {', '.join(pythons)} on Linux x86_64 with glibc {oldest_glibc} or newer"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    this = f"{platform.python_implementation()} {platform.python_version()} ({suffix})"
    if suffix not in suffixes:
        return f"this archive carries compiled modules for {wanted}; this is {this}"
    glibc = _glibc()
    if glibc is None or glibc < tuple(int(part) for part in oldest_glibc.split(".")):
        found = "no glibc" if glibc is None else "glibc " + ".".join(map(str, glibc))
        return f"this archive carries compiled modules for {wanted}; this system has {found}"
    return None


def main() -> None:
    """Exit with one line on stderr if this interpreter cannot run the archive."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), TARGETS_FILE)) as file:
        targets = json.load(file)
    refusal = _refusal(targets["python"], targets["extension_suffixes"], targets["glibc"])
    if refusal is not None:
        sys.exit(
            f"codexgate.pyz: {refusal}. Run it with one of those interpreters (python3.X "
            "codexgate.pyz), or install codexgate with pip, or use the standalone binary."
        )


if __name__ == "__main__":
    main()
