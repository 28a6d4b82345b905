"""The rules for outside text: what is stored, logged and printed."""

from __future__ import annotations

import pytest

from codexgate.core.sanitize import MAX_STORED_TEXT, clean_text, escape_unsafe, has_unsafe

HOSTILE = [
    "\x1b]0;owned\x07",  # set the terminal title
    "\x1b[2J",  # clear the screen
    "line\r\nINFO forged log line",
    "admin\u202egpj.exe",  # right-to-left override
    "zero\u200bwidth",
    "sep\u2028arator",
    "\x9b31m",  # C1 control sequence introducer
    "nul\x00byte",
    "del\x7f",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_has_nothing_that_acts(text: str) -> None:
    escaped = escape_unsafe(text)
    assert not has_unsafe(escaped)
    assert escaped.isprintable()
    assert has_unsafe(text)


def test_escapes_show_what_was_sent() -> None:
    assert escape_unsafe("a\x1b[31mb") == "a\\x1b[31mb"
    assert escape_unsafe("x\u202ey") == "x\\u202ey"
    assert escape_unsafe("a\r\nb") == "a\\x0d\\x0ab"
    assert escape_unsafe("plain text, ünïcödé, 中文") == "plain text, ünïcödé, 中文"


@pytest.mark.parametrize("text", HOSTILE)
def test_stored_text_is_stripped(text: str) -> None:
    cleaned = clean_text(text)
    assert cleaned is not None
    assert not has_unsafe(cleaned)


def test_stored_text_is_capped_and_empty_is_unknown() -> None:
    assert clean_text("x" * 10_000) == "x" * MAX_STORED_TEXT
    assert clean_text("abc", limit=2) == "ab"
    assert clean_text("  \x1b\u200b ") is None
    assert clean_text(None) is None
    assert clean_text(" me@example.com ") == "me@example.com"
