"""What a person may give an account: its display name and its token's size. Pure rules."""

from __future__ import annotations

import re
from typing import Final

from codexgate.core.sanitize import has_unsafe

# Display names: at most this many characters (code points).
MAX_NAME: Final = 100
# Why a display name with a control or bidi character is refused (API and command line).
UNSAFE_NAME: Final = (
    "the name must not contain control characters or invisible formatting "
    "(such as ESC, BEL, newlines or bidi overrides)"
)
# A bearer token longer than this is not one (ChatGPT access tokens are a few kB).
MAX_TOKEN: Final = 16384
_BEARER: Final = re.compile(r"bearer\s+", re.IGNORECASE)


def name_fits(name: str) -> bool:
    """Whether a display name has 1 to MAX_NAME characters."""
    return 1 <= len(name) <= MAX_NAME


def name_is_safe(name: str) -> bool:
    """Whether a display name is free of control and invisible formatting characters."""
    return not has_unsafe(name)


def bearer_value(token: str) -> str:
    """A pasted token as its bearer value: people paste the header, the token follows "Bearer "."""
    token = token.strip()
    scheme = _BEARER.match(token)
    return token if scheme is None else token[scheme.end() :]
