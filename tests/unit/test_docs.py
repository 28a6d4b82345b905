"""The README stays short and keeps what a new user needs; every link in it and in docs/ works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

ROOT = REPO
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown file (lowercase, punctuation dropped)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}"


def test_the_readme_is_short_and_keeps_the_essentials() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    # Exactly two set-up commands.
    assert "make run     # " in text
    assert "make test    # " in text
    # The recommended configuration and the warning about the one that bypasses the gateway.
    assert 'model_provider = "codexgate"' in text
    assert "[model_providers.codexgate]" in text
    assert "silently bypasses the gateway" in text
    for target in ("run", "test", "test-fast", "lint", "bench", "clean"):
        assert f"`make {target}`" in text, target


def test_the_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    for page in PAGES[1:]:
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name


# A file of the repository named in prose (`codexgate/api/feed.py`, `tests/app/test_events.py`),
# optionally with a test in it (`...py::test_name`).
NAMED_FILE = re.compile(
    r"(?<![\w/.-])((?:codexgate|tests|web|migrations|bench|deploy)/[\w./-]*\w\.(?:py|js|mjs|sql|html|css))(?!\w)"
    r"(?:::(\w+))?"
)


@pytest.mark.parametrize(
    "page", [*PAGES, ROOT / "web" / "README.md"], ids=lambda page: str(page.relative_to(ROOT))
)
def test_every_file_and_test_the_docs_name_exists(page: Path) -> None:
    text = page.read_text()
    for match in NAMED_FILE.finditer(text):
        path, test = match.groups()
        named = ROOT / path
        assert named.exists(), f"{page.relative_to(ROOT)} names {path}, which does not exist"
        if test:
            defined = re.search(rf"^\s*(?:async )?def {test}\(", named.read_text(), re.MULTILINE)
            assert defined, f"{page.relative_to(ROOT)} names {path}::{test}, which is not there"
