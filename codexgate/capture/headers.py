"""Pure parsers for what the upstream tells about usage: rate-limit headers and identities."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from codexgate.core.limits import LIMIT_ID, MAIN_LIMIT, limit_id_of
from codexgate.core.models import (
    DAILY,
    FIVE_HOUR,
    MONTHLY,
    SEVEN_DAY,
    TOKEN_KEY_PREFIX,
    ClassifiedBy,
    Credits,
    Identity,
    LimitReport,
    Slot,
    UsageReport,
    Window,
)
from codexgate.core.sanitize import clean_text

__all__ = [
    "LIMIT_ID",
    "IdentityCache",
    "RateLimitHeaderParser",
    "classify_window",
    "header_text",
    "identity_from_token",
    "known_reached_type",
    "parse_rate_limit_headers",
    "time_text_seconds",
    "token_expiry",
]

# ---------------------------------------------------------------------------------------------
# Rate-limit headers
# ---------------------------------------------------------------------------------------------

_USED_TAIL: Final = "-used-percent"  # found first, then the two below
_PRIMARY_USED: Final = "-primary-used-percent"
_SECONDARY_USED: Final = "-secondary-used-percent"
_LINE_ENDS: Final = ("\n", "")  # after a whole name in the joined names
_CODEX_ID: Final = MAIN_LIMIT
_CODEX_PREFIX: Final = "x-codex"
_CODEX_NAMES_START: Final = _CODEX_PREFIX + "-"  # every codex-wide header's name starts so
_ACTIVE_LIMIT: Final = "x-codex-active-limit"
# The reached type the upstream sends when it has none to tell, and what a kind's name is.
_NO_REACHED_TYPE: Final = "unknown"
_KIND_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Integers go to SQLite INTEGER columns: anything beyond a signed 64-bit value is junk.
_INT_MAX: Final = 2**63 - 1

# Known window lengths in minutes and their labels; a length within ±5% takes the label.
_KNOWN_LENGTHS: Final = ((300, FIVE_HOUR), (1440, DAILY), (10080, SEVEN_DAY), (43200, MONTHLY))


class _SlotNames(NamedTuple):
    """The lower-case header names of one slot of one family."""

    used: str
    minutes: str
    reset_at: str
    reset_after: str


class _FamilyNames(NamedTuple):
    """The lower-case header names of one limit family."""

    primary: _SlotNames
    secondary: _SlotNames
    over_secondary: str
    limit_name: str


def _slot_names(prefix: str, slot: Slot) -> _SlotNames:
    """Build the header names of `slot` under `prefix` (such as "x-codex")."""
    base = f"{prefix}-{slot}-"
    return _SlotNames(
        base + "used-percent",
        base + "window-minutes",
        base + "reset-at",
        base + "reset-after-seconds",
    )


def _family_names(prefix: str) -> _FamilyNames:
    """Build the header names of the family whose names start with `prefix`."""
    return _FamilyNames(
        _slot_names(prefix, "primary"),
        _slot_names(prefix, "secondary"),
        prefix + "-primary-over-secondary-limit-percent",
        prefix + "-limit-name",
    )


# The family on nearly every response: its names are built once.
_CODEX_NAMES: Final = _family_names(_CODEX_PREFIX)


def classify_window(minutes: int | None, slot: Slot) -> tuple[str, ClassifiedBy]:
    """Label a window by its length in minutes, or by its slot when the length is unknown."""
    if minutes is None or minutes <= 0:
        # Without a length only the slot order is left: Plus sends 5h first and weekly second.
        return (FIVE_HOUR if slot == "primary" else SEVEN_DAY), "slot"
    for target, label in _KNOWN_LENGTHS:
        # Integer form of |minutes - target| <= 5% of target: exact at the boundaries.
        if 20 * abs(minutes - target) <= target:
            return label, "length"
    return f"{minutes}m", "length"


def _parse_float(raw: str | None) -> float | None:
    """Read a finite number >= 0, or None."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    # NaN fails both comparisons; "-0" becomes 0.0 through the addition.
    if 0.0 <= value < math.inf:
        return value + 0.0
    return None


def time_text_seconds(text: str) -> int | None:
    """Unix seconds of an RFC 3339 time ("2026-12-04T12:00:00Z", an offset, a fraction; without
    an offset it is UTC), rounded; None for anything else or a time not after 1970."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = round(moment.timestamp())
    return seconds if 0 < seconds <= _INT_MAX else None


def _parse_reset_at(raw: str | None) -> int | None:
    """A reset-at header: unix seconds, or RFC 3339 text (older servers); 0 is no time."""
    if raw is None:
        return None
    seconds = _parse_int(raw)
    if seconds is None:
        seconds = time_text_seconds(raw)
    return seconds or None


def known_reached_type(text: str | None) -> str | None:
    """A rate_limit_reached_type as stored: a kind's name, even one not known yet, as sent;
    None for "unknown" (the upstream's way of saying it has none) and for anything that is no
    name (a byte that was not UTF-8, spaces, punctuation)."""
    if text is None or text.lower() == _NO_REACHED_TYPE or not _KIND_NAME.fullmatch(text):
        return None
    return text


def _parse_int(raw: str | None) -> int | None:
    """Read an integral number >= 0 ("300.0" is 300) that fits 64 bits, or None."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        try:
            number = float(raw)
        except ValueError:
            return None
        # is_integer() is False for NaN and the infinities.
        if not number.is_integer():
            return None
        value = int(number)
    if 0 <= value <= _INT_MAX:
        return value
    return None


def header_text(raw: str | None) -> str | None:
    """A header's text value fit to store (clean_text); empty means unknown."""
    if raw is None or raw.isascii():
        return clean_text(raw)
    # Bytes that were not UTF-8 arrive as lone surrogates (aiohttp decodes with
    # surrogateescape); SQLite refuses those, and with them the whole batch: U+FFFD instead.
    try:
        data = raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come off the wire
        data = raw.encode("utf-8", "surrogatepass")
    return clean_text(data.decode("utf-8", "replace"))


def _parse_bool(raw: str | None) -> bool | None:
    """Read true/false/1/0 in any case, or None."""
    if raw is None:
        return None
    value = raw.strip().lower()
    if value == "true" or value == "1":
        return True
    if value == "false" or value == "0":
        return False
    return None


def _parse_balance(raw: str | None) -> str | None:
    """Keep a balance as sent (stripped) when it is a finite decimal, else None."""
    value = header_text(raw)
    if value is None:
        return None
    try:
        finite = Decimal(value).is_finite()
    except InvalidOperation:
        return None
    return value if finite else None


def _parse_slot(
    found: Mapping[str, str], names: _SlotNames, slot: Slot, now: float
) -> Window | None:
    """Read one slot; None when the upstream did not report it."""
    used = _parse_float(found.get(names.used))
    minutes = _parse_int(found.get(names.minutes)) or None  # 0 minutes means no length
    resets_at = _parse_reset_at(found.get(names.reset_at))
    after: float | None = None
    if resets_at is None:
        # Older servers send only the relative form; the absolute one wins when both are valid.
        after = _parse_float(found.get(names.reset_after))
    # An empty slot comes as zeros (used 0, minutes 0, reset-after 0, reset-at ""): not reported.
    if not used and minutes is None and resets_at is None and not after:
        return None
    if after is not None:
        total = now + after
        # The bound check first: round() raises on NaN and infinities.
        if 0.0 < total <= _INT_MAX:
            resets_at = round(total) or None
    label, classified_by = classify_window(minutes, slot)
    return Window(slot, label, classified_by, used, minutes, resets_at)


def _parse_family(
    found: Mapping[str, str], limit_id: str, names: _FamilyNames, now: float
) -> LimitReport:
    """Read the windows and family-level fields of one limit family."""
    primary = _parse_slot(found, names.primary, "primary", now)
    secondary = _parse_slot(found, names.secondary, "secondary", now)
    if primary is None:
        windows: tuple[Window, ...] = () if secondary is None else (secondary,)
    else:
        windows = (primary,) if secondary is None else (primary, secondary)
    return LimitReport(
        limit_id,
        header_text(found.get(names.limit_name)),
        windows,
        _parse_float(found.get(names.over_secondary)),
    )


def _parse_credits(found: Mapping[str, str]) -> Credits | None:
    """Read the x-codex-credits-* fields; None when none of them was sent."""
    has_credits = found.get("x-codex-credits-has-credits")
    unlimited = found.get("x-codex-credits-unlimited")
    balance = found.get("x-codex-credits-balance")
    if has_credits is None and unlimited is None and balance is None:
        return None
    return Credits(_parse_bool(has_credits), _parse_bool(unlimited), _parse_balance(balance))


# The codex-wide fields, read whatever families a response reports.
_REPORT_NAMES: Final = (
    "x-codex-plan-type",
    _ACTIVE_LIMIT,
    "x-codex-credits-has-credits",
    "x-codex-credits-unlimited",
    "x-codex-credits-balance",
    "x-codex-rate-limit-reached-type",
    "x-codex-promo-message",
)
_NOTHING_REPORTED: Final = UsageReport(limits=())
_NOT_MEMOISED: Final = object()
# Reports memoised by RateLimitHeaderParser before it starts afresh. A seat's values repeat
# until they move, so a memo hit needs one entry per seat (and per limit family it reports):
# 256 covers a team's gateway, and each entry is memory every idle connection pays for too.
REPORT_MEMO_SIZE: Final = 256


class _Reported(NamedTuple):
    """The raw text of every header a report is read from: equal ones give equal reports."""

    limit_ids: tuple[str, ...]  # "codex" first, the other families sorted
    prefixes: tuple[str, ...]  # their lower-case header prefixes, such as "x-codex"
    values: tuple[str | None, ...]  # each family's _FamilyNames, then _REPORT_NAMES

    def found(self) -> dict[str, str]:
        """The values by lower-case header name."""
        names = [name for prefix in self.prefixes for name in _flat_names(prefix)]
        names.extend(_REPORT_NAMES)
        pairs = zip(names, self.values, strict=True)
        return {name: value for name, value in pairs if value is not None}

    def uses_clock(self, found: Mapping[str, str]) -> bool:
        """Whether a window's reset time comes from reset-after-seconds, so from `now`;
        `found` is what found() returned."""
        for prefix in self.prefixes:
            names = _names_of(prefix)
            for slot in (names.primary, names.secondary):
                if _parse_reset_at(found.get(slot.reset_at)) is None and slot.reset_after in found:
                    return True
        return False


def _names_of(prefix: str) -> _FamilyNames:
    return _CODEX_NAMES if prefix == _CODEX_PREFIX else _family_names(prefix)


def _all_names(names: _FamilyNames) -> tuple[str, ...]:
    return (*names.primary, *names.secondary, names.over_secondary, names.limit_name)


_CODEX_ALL_NAMES: Final = _all_names(_CODEX_NAMES)


def _flat_names(prefix: str) -> tuple[str, ...]:
    """Every header name of a family, in _Reported.values's order."""
    return _CODEX_ALL_NAMES if prefix == _CODEX_PREFIX else _all_names(_family_names(prefix))


def _reported(headers: Mapping[str, str]) -> _Reported | None:
    """The rate-limit headers among `headers` (None without any); a repeated header's first
    value counts, and names are compared without case.

    The families are those with a used-percent header, and the one x-codex-active-limit names
    when it has another header of its own (a bare 429 may name its limit and its limit-name
    only). A quota error's limit without any header of its own is added where it is recorded
    (core.recording.limits).
    """
    if not isinstance(headers, CIMultiDict | CIMultiDictProxy):
        headers = CIMultiDict(headers)
    # One string of every name, joined and lowered in C, then searched for the used-percent
    # names: far cheaper than a Python loop over every header of every relayed response.
    names = "\n".join(headers.keys()).lower()
    prefixes: dict[str, str] = {}  # limit id -> lower-case header prefix ("x-codex")
    at = names.find(_USED_TAIL)
    while at >= 0:
        end = at + len(_USED_TAIL)
        at = names.find(_USED_TAIL, end)
        if names[end : end + 1] not in _LINE_ENDS:
            continue
        name = names[names.rfind("\n", 0, end) + 1 : end]
        # Whatever precedes the suffix is the family, so "x-codex-credits-*" and
        # "x-codex-primary-over-secondary-limit-percent" never start one.
        if name.endswith(_PRIMARY_USED):
            prefix = name[: -len(_PRIMARY_USED)]
        elif name.endswith(_SECONDARY_USED):
            prefix = name[: -len(_SECONDARY_USED)]
        else:
            continue
        limit_id = prefix[2:].replace("-", "_")
        # A name with a line end inside (a wrapped error frame's JSON may have one) cannot
        # fake a family: the line must be a name of its own.
        if prefix.startswith("x-") and LIMIT_ID.fullmatch(limit_id) and name in headers:
            prefixes.setdefault(limit_id, prefix)
    if _CODEX_NAMES_START not in names:
        if not prefixes:
            return None  # the common case of a response without any: nothing more to look for
    elif _ACTIVE_LIMIT in names:
        active = headers.get(_ACTIVE_LIMIT)
        # Mostly it names a family read already ("codex"): no need to normalise it then.
        if active is not None and active not in prefixes:
            active_id = limit_id_of(active)
            if active_id is not None and active_id not in prefixes:
                active_prefix = "x-" + active_id.replace("_", "-")
                if "\n" + active_prefix + "-" in "\n" + names:  # a header of its own, its name
                    prefixes[active_id] = active_prefix
    elif not prefixes and not any(name in names for name in _REPORT_NAMES):
        return None
    # Only "x-codex" maps to the id "codex" (the id has no "_" to come from a "-").
    limit_ids = sorted(prefixes)
    if _CODEX_ID in prefixes:
        limit_ids.remove(_CODEX_ID)
        limit_ids.insert(0, _CODEX_ID)
    family_prefixes = tuple(prefixes[limit_id] for limit_id in limit_ids)
    get = headers.get
    values = [get(name) for prefix in family_prefixes for name in _flat_names(prefix)]
    values.extend(get(name) for name in _REPORT_NAMES)
    if not prefixes and all(value is None for value in values):
        return None
    return _Reported(tuple(limit_ids), family_prefixes, tuple(values))


def _report(reported: _Reported, found: Mapping[str, str], now: float) -> UsageReport | None:
    """Read every rate-limit family and the codex-wide fields (`found`: reported.found());
    None when no family came and every codex-wide field was junk."""
    limits = tuple(
        _parse_family(found, limit_id, _names_of(prefix), now)
        for limit_id, prefix in zip(reported.limit_ids, reported.prefixes, strict=True)
    )
    report = UsageReport(
        limits=limits,
        plan_type=header_text(found.get("x-codex-plan-type")),
        active_limit=header_text(found.get(_ACTIVE_LIMIT)),
        credits=_parse_credits(found),
        rate_limit_reached_type=known_reached_type(
            header_text(found.get("x-codex-rate-limit-reached-type"))
        ),
        promo_message=header_text(found.get("x-codex-promo-message")),
    )
    if not limits and report == _NOTHING_REPORTED:
        return None
    return report


def parse_rate_limit_headers(headers: Mapping[str, str], now: float) -> UsageReport | None:
    """Read every rate-limit family and the codex-wide fields from response headers."""
    reported = _reported(headers)
    return None if reported is None else _report(reported, reported.found(), now)


class RateLimitHeaderParser:
    """parse_rate_limit_headers with a bounded memo of the reports it read.

    A seat's headers repeat from one response to the next until a percentage moves, so most
    responses give a report already read: the same values always give the same report, unless
    a reset time is relative (reset-after-seconds without reset-at), which is never memoised.
    """

    __slots__ = ("_maxsize", "_reports")

    def __init__(self, maxsize: int = REPORT_MEMO_SIZE) -> None:
        """Keep at most `maxsize` reports; when full, start afresh."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._reports: dict[_Reported, UsageReport | None] = {}

    def __len__(self) -> int:
        """The number of memoised reports."""
        return len(self._reports)

    def parse(self, headers: Mapping[str, str], now: float) -> UsageReport | None:
        """What parse_rate_limit_headers(headers, now) returns."""
        reported = _reported(headers)
        if reported is None:
            return None
        known = self._reports.get(reported, _NOT_MEMOISED)
        if known is not _NOT_MEMOISED:
            return known  # type: ignore[return-value]  # a report or None, never the marker
        found = reported.found()
        report = _report(reported, found, now)
        if not reported.uses_clock(found):
            if len(self._reports) >= self._maxsize:
                self._reports.clear()
            self._reports[reported] = report
        return report


# ---------------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------------

_AUTH_CLAIM: Final = "https://api.openai.com/auth"
_PROFILE_CLAIM: Final = "https://api.openai.com/profile"


def _jwt_payload(token: str) -> dict[str, Any] | None:
    """Decode the payload of a JWT without checking it; None when `token` is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = orjson.loads(raw)
    except ValueError:
        # binascii.Error, UnicodeEncodeError (non-ASCII) and orjson.JSONDecodeError all land here.
        return None
    return claims if isinstance(claims, dict) else None


def _claim(claims: Mapping[str, Any], name: str) -> str | None:
    """A string claim fit to store (clean_text: it is unverified text), or None."""
    value = claims.get(name)
    # orjson refuses lone surrogates, so a string claim is valid Unicode already.
    return clean_text(value) if isinstance(value, str) else None


def _sub_claims(claims: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A nested claims object, or an empty one."""
    value = claims.get(name)
    return value if isinstance(value, dict) else {}


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT access token (unix seconds, unverified); None when it has none."""
    claims = _jwt_payload(token)
    if claims is None:
        return None
    exp = claims.get("exp")
    # bool is an int: true is not a time. Only a finite positive number is one.
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp < 1e11:
        return None
    return float(exp)


def identity_from_token(
    authorization: str | None, account_id_header: str | None
) -> Identity | None:
    """Derive the seat of a request from its bearer token and ChatGPT-Account-ID header."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token:
        return None
    # surrogatepass: a str that did not come off the wire must still hash, never raise.
    fingerprint = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    workspace = header_text(account_id_header)

    user_id: str | None = None
    plan_type: str | None = None
    email: str | None = None
    claims = _jwt_payload(token)
    if claims is not None:
        auth = _sub_claims(claims, _AUTH_CLAIM)
        user_id = (
            _claim(auth, "chatgpt_user_id") or _claim(auth, "user_id") or _claim(claims, "sub")
        )
        plan_type = _claim(auth, "chatgpt_plan_type")
        email = _claim(_sub_claims(claims, _PROFILE_CLAIM), "email") or _claim(claims, "email")
        # The header names the workspace the upstream bills, so it wins over the claim.
        workspace = workspace or _claim(auth, "chatgpt_account_id")

    if workspace is not None and user_id is not None:
        account_key = f"seat:{workspace}:{user_id}"
    else:
        account_key = TOKEN_KEY_PREFIX + fingerprint
    return Identity(account_key, fingerprint, workspace, user_id, email, plan_type)


class IdentityCache:
    """A bounded LRU of identities by (Authorization, ChatGPT-Account-ID) header values."""

    __slots__ = ("_entries", "_maxsize")

    def __init__(self, maxsize: int = 4096) -> None:
        """Keep at most `maxsize` identities."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._entries: OrderedDict[tuple[str, str | None], Identity | None] = OrderedDict()

    def __len__(self) -> int:
        """The number of cached identities."""
        return len(self._entries)

    def resolve(self, authorization: str | None, account_id_header: str | None) -> Identity | None:
        """Return the identity for these header values, decoding the token only on a miss."""
        if not authorization:
            return None  # nothing to decode; not worth a slot
        key = (authorization, account_id_header)
        entries = self._entries
        try:
            identity = entries[key]
        except KeyError:
            identity = identity_from_token(authorization, account_id_header)
            entries[key] = identity
            if len(entries) > self._maxsize:
                entries.popitem(last=False)
        else:
            entries.move_to_end(key)
        return identity
