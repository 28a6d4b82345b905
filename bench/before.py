"""An earlier revision of codexgate, exported from git beside today's tree, for --before.

The export is `git archive REV | tar -x` into the bench's temporary folder: no worktree, nothing
in the repository changes. A process runs the old package when the export comes first on its
PYTHONPATH (the venv's editable install of today's tree only comes after it). The recorder-alone
case imports codexgate in the bench's own code, so its subprocess gets a folder holding two
links instead: `codexgate` to the export's package, `bench` to today's bench.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .processes import BenchError, child_environment
from .protocol import REPO_ROOT

GIT_WITHIN: Final = 60.0
BENCH_DIR: Final = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Revision:
    """The exported revision: what was asked for, the commit it names, where its tree is."""

    asked: str
    commit: str  # abbreviated hash
    subject: str
    tree: Path  # the export: its codexgate/, migrations/, web/ as at the commit
    imports: Path  # `codexgate` → the export's package, `bench` → today's bench

    def describe(self) -> str:
        """The commit and its subject, for the report."""
        return f"{self.commit} ({self.subject})"

    def environment(self) -> dict[str, str]:
        """The PYTHONPATH that makes `python -m codexgate` run the exported package."""
        return {"PYTHONPATH": _first_on_path(self.tree)}

    def recorder_environment(self) -> dict[str, str]:
        """The PYTHONPATH for `python -m bench.recording` against the exported package."""
        return {"PYTHONPATH": _first_on_path(self.imports)}


def _first_on_path(folder: Path) -> str:
    """`folder`, then whatever PYTHONPATH the bench itself was given."""
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(folder), *([inherited] if inherited else [])])


def _git(*args: str) -> str:
    """A read-only git command in the repository; its output without the final newline."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=GIT_WITHIN,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"git {' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout.rstrip("\n")


def _archive(commit: str, folder: Path) -> None:
    """`git archive <commit> | tar -x -C <folder>`."""
    folder.mkdir(parents=True)
    with subprocess.Popen(
        ["git", "-C", str(REPO_ROOT), "archive", commit], stdout=subprocess.PIPE
    ) as archive:
        untar = subprocess.run(
            ["tar", "-x", "-C", str(folder)], stdin=archive.stdout, check=False, timeout=GIT_WITHIN
        )
        if archive.stdout is not None:
            archive.stdout.close()
        archived = archive.wait(timeout=GIT_WITHIN)
    if archived != 0 or untar.returncode != 0:
        raise BenchError(
            f"exporting {commit} failed: git archive exit {archived}, tar exit {untar.returncode}"
        )


def imported_from(environment: dict[str, str], cwd: Path) -> Path:
    """The codexgate package a `python -m` started with `environment` in `cwd` imports."""
    done = subprocess.run(
        [sys.executable, "-c", "import codexgate; print(codexgate.__file__)"],
        cwd=cwd,
        env={**child_environment(), **environment},
        capture_output=True,
        text=True,
        timeout=GIT_WITHIN,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"importing codexgate failed:\n{done.stderr.strip()}")
    return Path(done.stdout.strip())


def check_imported(revision: Revision, module_file: Path) -> None:
    """Fail unless `module_file` (a codexgate.__file__) lies inside the export."""
    if not module_file.resolve().is_relative_to(revision.tree.resolve()):
        raise BenchError(
            f"the before instance imports codexgate from {module_file}, not from the export of "
            f"{revision.commit} in {revision.tree}"
        )


def export(asked: str, workdir: Path) -> Revision:
    """Export revision `asked` into `workdir`/before and check that a process would run it."""
    commit = _git("rev-parse", "--verify", "--short", f"{asked}^{{commit}}")
    subject = _git("log", "-1", "--format=%s", commit)
    tree = workdir / "before"
    _archive(commit, tree)
    if not (tree / "codexgate" / "__init__.py").is_file():
        raise BenchError(f"{commit} has no codexgate package")
    imports = workdir / "before-imports"
    imports.mkdir()
    (imports / "codexgate").symlink_to(tree / "codexgate", target_is_directory=True)
    (imports / "bench").symlink_to(BENCH_DIR, target_is_directory=True)
    revision = Revision(asked, commit, subject, tree, imports)
    # The gateway runs in `workdir` (python -m puts it first on sys.path): ask the same there.
    module_file = imported_from(revision.environment(), workdir)
    check_imported(revision, module_file)
    print(f"before: codexgate {revision.describe()}, imported from {module_file}", flush=True)
    return revision
