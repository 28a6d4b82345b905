"""Pure rules for text that came from outside: what may be stored, logged or printed.

Claims in a client's token, header values and request paths are written by whoever reaches the
gateway. Stored text is stripped of control and bidirectional-formatting characters and capped;
text shown in a log line or a terminal has them escaped, so it can neither fake a log line nor
move the cursor, retitle the terminal or reorder what is on screen.
"""

from __future__ import annotations

import re
from typing import Final

# C0 controls, DEL, C1 controls, and Unicode's invisible formatting that can reorder or hide
# text: bidi embeddings, overrides and isolates, marks, zero-width characters, line and
# paragraph separators, the byte-order mark.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
# The longest text kept from a single claim or header value.
MAX_STORED_TEXT: Final = 256


def has_unsafe(text: str) -> bool:
    """Whether `text` holds a control or invisible formatting character."""
    return _UNSAFE.search(text) is not None


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_unsafe(text: str) -> str:
    """`text` with every control or invisible formatting character written as \\xNN or \\uNNNN.

    For log lines and terminal cells: the reader sees what was sent, and nothing acts on it.
    """
    if text.isprintable():
        return text
    return _UNSAFE.sub(_escaped, text)


def _json_escaped(match: re.Match[str]) -> str:
    char = match.group()
    # orjson writes a control character inside a string as an escape: a raw newline is layout.
    return char if char == "\n" else f"\\u{ord(char):04x}"


def escape_unsafe_json(json_text: str) -> str:
    """Serialised JSON, same value, with DEL, C1 controls and bidi characters as \\uNNNN."""
    if json_text.isascii() and "\x7f" not in json_text:
        return json_text
    return _UNSAFE.sub(_json_escaped, json_text)


def clean_text(text: str | None, limit: int = MAX_STORED_TEXT) -> str | None:
    """Text fit to store: unsafe characters removed, surrounding space stripped, at most `limit`
    characters; None when nothing is left."""
    if text is None:
        return None
    if not text.isprintable():
        text = _UNSAFE.sub("", text)
    text = text.strip()[:limit].strip()
    return text or None
