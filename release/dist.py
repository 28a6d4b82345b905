"""`make dist`: codexgate's release artifacts, built into one folder.

- the wheel and the sdist, with the project's own backend (hatchling);
- codexgate.pyz, made with shiv, for CPython 3.11 and newer on Linux x86_64: one site-packages
  holding the binary wheels of every CPython from 3.11 up to the newest that has wheels for all
  dependencies, at the same pinned versions (resolved once for 3.11, then used as constraints).
  Extension modules are named per ABI, so the versions' files sit side by side;
- codexgate, a standalone executable made with PyInstaller (one file) from the same pinned
  wheels: it carries its own Python and needs none on the target.

Run from anywhere as `python -m release.dist --out DIR` with a Python that has hatchling, shiv and
PyInstaller (the `dist` extra); the standalone binary is built for that Python's version.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

REPO: Final = Path(__file__).resolve().parent.parent
RELEASE: Final = REPO / "release"
PROJECT: Final = "codexgate"
# pyproject.toml's requires-python.
OLDEST_MINOR: Final = 11
PYZ_NAME: Final = f"{PROJECT}.pyz"
# What the .pyz's preamble (release/pyz_check.py) reads; it sits beside the preamble in bin/.
PYZ_TARGETS: Final = "codexgate-pyz.json"
ENTRY_POINT: Final = "codexgate.cli.main:main"
# The wheels' platforms, oldest first: pip prefers the earlier tags, so a dependency that has a
# manylinux2014 (glibc 2.17) wheel gets that one, and one that has only newer wheels still
# resolves; the .pyz then records the newest glibc any of its wheels needs.
PLATFORMS: Final = (
    "manylinux2014_x86_64",  # pip adds manylinux2010 and manylinux1
    *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 29)),
)
# Modules the standalone binary imports in ways PyInstaller's analysis of the bytecode misses:
# codexgate picks brotli and zstandard with importlib, asyncpg's compiled protocol imports its
# Python modules from C, and zstandard chooses its C backend at run time.
BINARY_COLLECT_SUBMODULES: Final = ("codexgate", "asyncpg", "uvloop")
BINARY_HIDDEN_IMPORTS: Final = ("brotli", "zstandard", "zstandard.backend_c", "uvloop")
# The migrations and web folders, which the wheel carries as codexgate/_data/ (codexgate/paths.py).
BINARY_COLLECT_DATA: Final = ("codexgate",)
_MANYLINUX_LEGACY: Final = {
    "manylinux1": (2, 5),
    "manylinux2010": (2, 12),
    "manylinux2014": (2, 17),
}
_MANYLINUX_TAG: Final = re.compile(r"manylinux_(\d+)_(\d+)_")


class BuildError(Exception):
    """A step of the build failed; the message says which and why, in one line or a short log."""


@dataclass(frozen=True, slots=True)
class Site:
    """The pinned dependencies and codexgate installed for one CPython version."""

    minor: int
    path: Path

    @property
    def version(self) -> str:
        return f"3.{self.minor}"

    @property
    def extension_suffix(self) -> str:
        """The file name ending of this version's extension modules (CPython on Linux x86_64)."""
        return f".cpython-3{self.minor}-x86_64-linux-gnu.so"


def _run(
    command: Sequence[str | Path],
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a build command and return its output; on failure raise BuildError with its tail."""
    # The commands are built here from fixed words and the build's own paths.
    result = subprocess.run(  # noqa: S603
        [str(part) for part in command],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        tail = "\n".join(line for line in output[-30:] if not line.startswith("WARNING: Location"))
        raise BuildError(f"{what} failed (exit code {result.returncode}):\n{tail}")
    return result.stdout


def build_wheel_and_sdist(out: Path) -> Path:
    """The wheel and sdist into out; the wheel's path."""
    for old in [*out.glob(f"{PROJECT}-*.whl"), *out.glob(f"{PROJECT}-*.tar.gz")]:
        old.unlink()
    command: list[str | Path] = [sys.executable, "-m", "hatchling", "build", "-t", "wheel"]
    command += ["-t", "sdist", "-d", out]
    _run(command, "hatchling build", cwd=REPO)
    [wheel] = out.glob(f"{PROJECT}-*.whl")
    return wheel


def _pip_install_for(minor: int) -> list[str | Path]:
    """pip install for CPython 3.<minor> on Linux x86_64, binary wheels only, whatever runs pip."""
    command: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        f"3.{minor}",
        "--abi",
        f"cp3{minor}",
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    return command


def resolve_pins(wheel: Path, work: Path) -> Path:
    """Resolve codexgate[fast]'s dependencies once, for the oldest CPython; a constraints file."""
    report = work / "resolved.json"
    command = [
        *_pip_install_for(OLDEST_MINOR),
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        report,
        "--target",
        work / "resolve-target",
        f"{wheel}[fast]",
    ]
    _run(command, f"resolving the dependencies for CPython 3.{OLDEST_MINOR}")
    installs = json.loads(report.read_text())["install"]
    pins = sorted(
        f"{item['metadata']['name']}=={item['metadata']['version']}"
        for item in installs
        if item["metadata"]["name"] != PROJECT
    )
    constraints = work / "constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in pins))
    logger.info("pinned: %s", " ".join(pins))
    return constraints


def install_site(minor: int, wheel: Path, constraints: Path, work: Path) -> Site | str:
    """codexgate[fast] and its pinned dependencies for CPython 3.<minor>, or why pip could not."""
    target = work / f"site-3.{minor}"
    shutil.rmtree(target, ignore_errors=True)
    command = [
        *_pip_install_for(minor),
        # Byte code is per version; the interpreter that runs the archive writes its own.
        "--no-compile",
        "--quiet",
        "--target",
        target,
        "--constraint",
        constraints,
        f"{wheel}[fast]",
    ]
    try:
        _run(command, f"pip install for CPython 3.{minor}")
    except BuildError as error:
        # pip names the pinned release it found no wheel of as a conflict with the constraint.
        missing = re.findall(r"The user requested \(constraint\) (\S+)", str(error))
        if missing:
            return f"no cp3{minor} wheel of {', '.join(missing)}"
        errors = [line for line in str(error).splitlines() if line.startswith("ERROR")]
        return errors[-1] if errors else str(error)
    # Console scripts whose first line names the interpreter that ran pip: of no use here.
    shutil.rmtree(target / "bin", ignore_errors=True)
    site = Site(minor, target)
    _check_extension_modules(site)
    _strip_debug_info(target)
    return site


def _check_extension_modules(site: Site) -> None:
    """Every extension module in the site is for its CPython version (or the stable ABI)."""
    for module in site.path.rglob("*.so"):
        if ".cpython-" in module.name and not module.name.endswith(site.extension_suffix):
            raise BuildError(f"CPython {site.version}'s site-packages holds {module}")
    if not any(site.path.rglob(f"*{site.extension_suffix}")):
        raise BuildError(f"CPython {site.version}'s site-packages has no {site.extension_suffix}")


def _strip_debug_info(folder: Path) -> None:
    """Drop the debug sections of the wheels' shared objects: one Python's 60 MB of them shrink
    to 8, so the archives are smaller and unpack faster. What runs is unchanged."""
    strip = shutil.which("strip")
    if strip is None:
        logger.warning("no strip program (binutils): the compiled modules keep their debug info")
        return
    shared_objects = sorted(path for path in folder.rglob("*.so*") if path.is_file())
    for start in range(0, len(shared_objects), 100):
        _run([strip, "--strip-debug", *shared_objects[start : start + 100]], "strip")


class BinaryJob:
    """The standalone binary, built in the background once the site for this Python is ready."""

    def __init__(self, out: Path, work: Path) -> None:
        self.out = out
        self.work = work
        self.future: Future[Path] | None = None

    def site_ready(self, site: Site, pool: ThreadPoolExecutor) -> None:
        """Start PyInstaller if this is the site for the Python running the build."""
        if site.minor == sys.version_info.minor and self.future is None:
            self.future = pool.submit(build_binary, site, self.out, self.work)

    def result(self) -> Path:
        if self.future is None:
            raise BuildError(
                f"the standalone binary is built with the running Python, {sys.version_info.major}"
                f".{sys.version_info.minor}, and not every dependency has a wheel for it"
            )
        return self.future.result()


def install_sites(
    wheel: Path, constraints: Path, work: Path, background: ThreadPoolExecutor, binary: BinaryJob
) -> list[Site]:
    """A site for CPython 3.11, 3.12, ... up to the last version every pinned wheel exists for."""
    sites: list[Site] = []
    for minor in count(OLDEST_MINOR):
        started = time.monotonic()
        installed = install_site(minor, wheel, constraints, work)
        if isinstance(installed, str):
            if minor == OLDEST_MINOR:
                raise BuildError(f"no wheels for CPython 3.{minor}: {installed}")
            logger.info("CPython 3.%d: not every dependency has a wheel (%s)", minor, installed)
            break
        logger.info("CPython 3.%d: installed in %.1f s", minor, time.monotonic() - started)
        sites.append(installed)
        binary.site_ready(installed, background)
    return sites


def merge_sites(sites: Sequence[Site], merged: Path) -> None:
    """One site-packages holding every version's files; fails on a file two versions disagree on.

    The pure-Python files are the same for every version (the same pinned releases), and the
    extension modules have per-version names. Only the dist-info folders differ (RECORD, WHEEL
    and a bill of materials list the version's own files); the oldest version's are kept.
    """
    shutil.rmtree(merged, ignore_errors=True)
    shutil.copytree(sites[0].path, merged, symlinks=True)
    for site in sites[1:]:
        for source in sorted(site.path.rglob("*")):
            relative = source.relative_to(site.path)
            destination = merged / relative
            if source.is_dir():
                destination.mkdir(exist_ok=True)
            elif not destination.exists():
                shutil.copy2(source, destination)
            elif not filecmp.cmp(source, destination, shallow=False) and not any(
                part.endswith(".dist-info") for part in relative.parts
            ):
                raise BuildError(
                    f"{relative} differs between CPython {sites[0].version} and {site.version}"
                )


def oldest_glibc(sites: Sequence[Site]) -> tuple[int, int]:
    """The oldest glibc that every wheel installed in the sites accepts."""
    needed = (2, 5)
    for site in sites:
        for wheel_file in site.path.glob("*.dist-info/WHEEL"):
            tags = [
                line.split(":", 1)[1].strip()
                for line in wheel_file.read_text().splitlines()
                if line.startswith("Tag:")
            ]
            accepted = [_glibc_of(tag) for tag in tags]
            if accepted and None not in accepted:  # a pure wheel accepts any
                needed = max(needed, min(version for version in accepted if version))
    return needed


def _glibc_of(tag: str) -> tuple[int, int] | None:
    """The glibc a wheel tag (cp311-cp311-manylinux_2_17_x86_64) asks for; None for none."""
    platform = tag.rsplit("-", 1)[-1]
    legacy = platform.split("_", 1)[0]
    if legacy in _MANYLINUX_LEGACY:
        return _MANYLINUX_LEGACY[legacy]
    match = _MANYLINUX_TAG.match(platform)
    return (int(match[1]), int(match[2])) if match else None


def build_pyz(sites: Sequence[Site], out: Path, work: Path) -> Path:
    """codexgate.pyz from the merged site-packages, with the preamble that checks the Python."""
    merged = work / "site-pyz"
    merge_sites(sites, merged)
    glibc = oldest_glibc(sites)
    (merged / "bin").mkdir(exist_ok=True)
    targets = {
        "python": [site.version for site in sites],
        "extension_suffixes": [site.extension_suffix for site in sites],
        "glibc": ".".join(map(str, glibc)),
    }
    (merged / "bin" / PYZ_TARGETS).write_text(json.dumps(targets, indent=2) + "\n")
    pyz = out / PYZ_NAME
    command: list[str | Path] = [
        sys.executable,
        "-m",
        "shiv",
        "--site-packages",
        merged,
        "--entry-point",
        ENTRY_POINT,
        "--python",
        "/usr/bin/env python3",
        "--preamble",
        RELEASE / "pyz_check.py",
        "--output-file",
        pyz,
    ]
    _run(command, "shiv")
    return pyz


def build_binary(site: Site, out: Path, work: Path) -> Path:
    """The standalone codexgate: PyInstaller, one file, from the pinned site of this Python."""
    pyinstaller_work = work / "pyinstaller"
    shutil.rmtree(pyinstaller_work, ignore_errors=True)
    command: list[str | Path] = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--onefile",
        "--name",
        PROJECT,
        "--distpath",
        out,
        "--workpath",
        pyinstaller_work,
        "--specpath",
        pyinstaller_work,
        "--noconfirm",
        "--log-level",
        "WARN",
        "--paths",
        site.path,
        # Symbols only a debugger reads: libpython alone carries 20 MB of them.
        "--strip",
    ]
    for module in BINARY_COLLECT_SUBMODULES:
        command += ["--collect-submodules", module]
    for module in BINARY_HIDDEN_IMPORTS:
        command += ["--hidden-import", module]
    for module in BINARY_COLLECT_DATA:
        command += ["--collect-data", module]
    command.append(RELEASE / "frozen_main.py")
    # The pinned site first on the path, ahead of whatever the build's own environment holds
    # (an editable codexgate, other versions), for the analysis and for PyInstaller's hooks.
    environment = {**os.environ, "PYTHONPATH": str(site.path)}
    started = time.monotonic()
    _run(command, "PyInstaller", cwd=work, env=environment)
    logger.info("PyInstaller: %.1f s", time.monotonic() - started)
    return out / PROJECT


def build(out: Path, work: Path) -> list[Path]:
    """Every artifact into out, using work for the intermediate files; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    wheel = build_wheel_and_sdist(out)
    constraints = resolve_pins(wheel, work)
    binary = BinaryJob(out, work)
    with ThreadPoolExecutor(max_workers=1) as background:
        sites = install_sites(wheel, constraints, work, background, binary)
        logger.info("the .pyz carries CPython %s", ", ".join(site.version for site in sites))
        pyz = build_pyz(sites, out, work)
        logger.info("%s built after %.1f s", pyz.name, time.monotonic() - started)
        executable = binary.result()
    logger.info("%s built after %.1f s", executable.name, time.monotonic() - started)
    artifacts = sorted([*out.glob(f"{PROJECT}-*"), pyz, executable])
    for artifact in artifacts:
        logger.info("%10.1f MB  %s", artifact.stat().st_size / 1e6, artifact)
    return artifacts


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m release.dist`."""
    parser = argparse.ArgumentParser(
        prog="python -m release.dist",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="default: dist/")
    parser.add_argument(
        "--work", type=Path, default=REPO / "build", help="intermediate files; default: build/"
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="release.dist: %(message)s")
    try:
        build(arguments.out.resolve(), arguments.work.resolve())
    except BuildError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
