"""An account's display name, token and title: what a person may give it, how it is called."""

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
# A ChatGPT account id (ChatGPT-Account-ID) is a UUID or "user-..."; far longer is not one.
MAX_ACCOUNT_ID: Final = 200
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


# How an account nobody named is called, in English (the REST API, the command line, alerts and
# metrics); the page's languages have theirs in dashboard/i18n.py ("card.default_title").
DEFAULT_TITLE: Final = "Account {id}"


def default_title(account_id: int, template: str = DEFAULT_TITLE) -> str:
    """The readable, distinct name of an account without a display name or email: "Account 3".

    Only the id: it is distinct, never changes (a token's fingerprint does, with every refresh)
    and is known wherever an account is named, so the card, the alert and the CLI agree.
    """
    return template.format(id=account_id)


def account_title(
    account_id: int, display_name: str | None, email: str | None, template: str = DEFAULT_TITLE
) -> str:
    """How an account is called everywhere: its display name, else its email, else "Account 3"."""
    return display_name or email or default_title(account_id, template)
