"""The suite's own layout: tests grouped by kind, shared code only in tests/helpers."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

TESTS: Final = Path(__file__).resolve().parents[1]
GROUPS: Final = frozenset({"unit", "storage", "app", "process", "reliability", "e2e", "browser"})


def _python_files() -> list[Path]:
    return sorted(
        path
        for path in TESTS.rglob("*.py")
        if not {"node_modules", "data"} & set(path.relative_to(TESTS).parts)
    )


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, by its absolute name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{path}: a relative import"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_test_module(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def test_no_file_imports_a_test_module_or_a_conftest() -> None:
    found = sorted(
        f"{path.relative_to(TESTS).as_posix()} imports {module}"
        for path in _python_files()
        for module in _imported_modules(path)
        if _is_test_module(module)
    )
    assert not found, "move what is shared to tests/helpers/: " + "; ".join(found)


def test_every_test_file_sits_in_its_group() -> None:
    misplaced = [
        str(path.relative_to(TESTS))
        for path in _python_files()
        if path.name.startswith("test_") and path.relative_to(TESTS).parts[0] not in GROUPS
    ]
    assert not misplaced, f"put each test file in one of {sorted(GROUPS)}: {misplaced}"
