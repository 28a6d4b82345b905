"""Limit ids: what one is, the main one, and which limit a report speaks for (pure).

The upstream meters a seat in limit families: "codex" (the seat's own, the main limit) and
others such as "codex_other" or "codex_bengalfox" (a model's). A quota error names the family it
is about in x-codex-active-limit; so does the report that carries it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from codexgate.core.models import UsageReport

# The seat's own limit: it decides whether the seat can be used at all.
MAIN_LIMIT: Final = "codex"
# What a limit id may be: Codex's families are "codex", "codex_bengalfox". A header family or
# body id that does not fit is not the upstream's, and could start a formula in a CSV export.
LIMIT_ID: Final = re.compile(r"[a-z0-9_]{1,64}")
# An id is lower-case ASCII letters, digits and "_"; any other run becomes one "_".
_ID_JUNK: Final = re.compile(r"[^a-z0-9_]+")


def limit_id_of(value: object) -> str | None:
    """A limit id from an id or a name: lower case, other runs → "_"; None unless it fits."""
    if not isinstance(value, str):
        return None
    # "codex-bengalfox" and "codex_bengalfox" are one family, as in the header names.
    limit_id = _ID_JUNK.sub("_", value.lower()).strip("_")
    return limit_id if LIMIT_ID.fullmatch(limit_id) else None


def report_limit_id(report: UsageReport) -> str:
    """The limit a report's quota error and account-wide fields belong to: the one its active
    limit names (as the Codex CLI files a 429), else the main limit."""
    return active_limit_id(report.active_limit)


# Recording asks for every limit report it lays out, and a seat's active limit is one or two
# texts: the regular expressions run once per text, not once per row.
@lru_cache(maxsize=64)
def active_limit_id(active: str | None) -> str:
    """The limit an x-codex-active-limit text names, else (None, or no limit id) the main one."""
    return MAIN_LIMIT if active is None else limit_id_of(active) or MAIN_LIMIT
