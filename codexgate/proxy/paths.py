"""Which request paths the proxy relays: the Codex backend's, never codexgate's own.

A path is relayed only if it starts with a Codex prefix as sent and still does once it is read
the way a lenient server might read it: percent-decoded (repeatedly), backslashes taken as
slashes, `;` parameters dropped, empty and dot segments resolved, case folded. So no spelling of
`/codexgate/...` (`//codexgate`, `/%63odexgate`, `/x/../codexgate`, `/CODEXGATE`, ...) leaves.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote

# The ChatGPT backend (`chatgpt_base_url` ending in /backend-api/) and the Codex API style that a
# `chatgpt_base_url` without /backend-api makes the client use (`/api/codex/usage`, tasks, ...).
CODEX_PREFIXES: Final = ("/backend-api/", "/api/codex/")
_CODEX_SEGMENTS: Final = (("backend-api",), ("api", "codex"))
# Each round of percent-decoding shortens the text; more rounds than this is no real client.
_MAX_DECODES: Final = 8


def relayed(raw_path: str, admin_prefix: str) -> bool:
    """Whether the proxy relays `raw_path` (percent-encoded, without the query) upstream."""
    if not raw_path.startswith(CODEX_PREFIXES):
        return False
    # Only these can make a path read as another; a plain Codex path has none (the hot path).
    # Written out: a generator over a tuple of marks costs ten times as much.
    if not (
        "%" in raw_path
        or "\\" in raw_path
        or ";" in raw_path
        or "//" in raw_path
        or "/." in raw_path
    ):
        return True
    segments = normalised_segments(raw_path)
    if segments[:1] == [admin_prefix.casefold()]:
        return False
    return any(segments[: len(codex)] == list(codex) for codex in _CODEX_SEGMENTS)


def normalised_segments(raw_path: str) -> list[str]:
    """The segments of `raw_path` as the most lenient server would read them, case-folded."""
    path = raw_path
    for _ in range(_MAX_DECODES):
        if "%" not in path:
            break
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    segments: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment.casefold())
    return segments
