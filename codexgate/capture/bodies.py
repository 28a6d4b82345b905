"""Pure parsers for JSON bodies that carry usage: wham/usage answers, quota errors, encodings."""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

from codexgate.capture.headers import classify_window, known_reached_type, time_text_seconds
from codexgate.core.limits import MAIN_LIMIT, limit_id_of
from codexgate.core.models import (
    SPEND_LIMIT_KINDS,
    Credits,
    LimitHit,
    LimitReport,
    Slot,
    SpendControl,
    SpendLimit,
    UsageReport,
    Window,
)
from codexgate.core.sanitize import clean_text

__all__ = [
    "credits_from_json",
    "decode_body",
    "error_code_of_body",
    "json_bool",
    "json_decimal",
    "json_float",
    "json_int",
    "json_text",
    "limit_from_json",
    "limit_hit_from_error",
    "parse_error_body",
    "parse_usage_body",
    "plan_type_of_error_body",
    "reached_type_from_json",
    "reset_from_json",
    "window_from_json",
]

# Integers go to SQLite INTEGER columns: anything beyond a signed 64-bit value is junk.
_INT_MAX: Final = 2**63 - 1
_INT_MIN: Final = -(2**63)

# The quota errors the client does not retry: each one means "this seat is blocked for now".
_LIMIT_ERROR_TYPES: Final = frozenset({"usage_limit_reached", "usage_not_included"})

# A JSON object with none of these keys is not a usage report.
_USAGE_BODY_KEYS: Final = (
    "rate_limit",
    "additional_rate_limits",
    "plan_type",
    "spend_control",
    "rate_limit_reset_credits",
)

# Reset times come absolute (current servers) or relative (older ones); the absolute one wins.
_ABSOLUTE_RESET: Final = ("reset_at", "resets_at")
_RELATIVE_RESET: Final = ("reset_after_seconds", "resets_in_seconds")

# A decimal amount longer than this is junk, not a balance.
_DECIMAL_MAX_CHARS: Final = 64
# Error codes go to the request log: a longer one is cut.
_ERROR_CODE_MAX_CHARS: Final = 200
# Input per step for brotli releases without an output bound.
_BROTLI_SLICE: Final = 256
# zstd: the largest window accepted, and the least input fed per step.
_ZSTD_MAX_WINDOW: Final = 1 << 24
_ZSTD_MIN_STEP: Final = 64

# ---------------------------------------------------------------------------------------------
# Readers of decoded JSON values: each returns None for anything it does not accept.
# ---------------------------------------------------------------------------------------------


def json_int(value: object) -> int | None:
    """An integral JSON number in 0..2**63-1 (12.0 counts as 12), or None."""
    if isinstance(value, bool):
        return None  # bool is an int subclass; true is not 1 here
    if isinstance(value, int):
        return value if 0 <= value <= _INT_MAX else None
    # is_integer() is False for NaN and the infinities; the comparison is exact for floats.
    if isinstance(value, float) and value.is_integer() and 0 <= value <= _INT_MAX:
        return int(value)
    return None


def json_float(value: object) -> float | None:
    """A JSON number in 0..2**63-1 as a float (anything bigger is junk), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # float() of a huge int overflows; such a number is junk anyway.
        return float(value) if 0 <= value <= _INT_MAX else None
    if isinstance(value, float) and 0.0 <= value <= _INT_MAX:
        return value + 0.0  # -0.0 becomes 0.0
    return None


def json_text(value: object) -> str | None:
    """A JSON string, stripped; empty or not a string means unknown."""
    if isinstance(value, str):
        return value.strip() or None
    return None


def json_bool(value: object) -> bool | None:
    """A JSON boolean, or None."""
    return value if isinstance(value, bool) else None


def json_decimal(value: object) -> str | None:
    """A finite decimal amount sent as a string (kept as sent, stripped) or a number, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if _INT_MIN <= value <= _INT_MAX else None
    if isinstance(value, float):
        # The comparison also rejects NaN and the infinities.
        if not -_INT_MAX <= value <= _INT_MAX:
            return None
        # repr() is the shortest exact form; "f" keeps it a plain decimal (no exponent).
        written = format(Decimal(repr(value)), "f")
        return written if len(written) <= _DECIMAL_MAX_CHARS else None
    text = json_text(value)
    if text is None or len(text) > _DECIMAL_MAX_CHARS:
        return None
    try:
        finite = Decimal(text).is_finite()
    except (InvalidOperation, ValueError):
        return None
    return text if finite else None


def _timestamp(value: object) -> int | None:
    """Absolute unix seconds (a float is rounded), or RFC 3339 text (older servers); 0,
    negative or beyond 64 bits is None."""
    if isinstance(value, str):
        return time_text_seconds(value)
    seconds = json_float(value)
    return None if seconds is None else round(seconds) or None


def _after(now: float, seconds: float) -> int | None:
    """Absolute unix seconds `seconds` after `now`, or None when that is not a valid time."""
    total = now + seconds
    # The bound check first: round() raises on NaN and infinities.
    if 0.0 < total <= _INT_MAX:
        return round(total) or None
    return None


def _reset_parts(value: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """The absolute reset time if one is valid, else the relative one (seconds from now)."""
    for key in _ABSOLUTE_RESET:
        resets_at = _timestamp(value.get(key))
        if resets_at is not None:
            return resets_at, None
    for key in _RELATIVE_RESET:
        after = json_float(value.get(key))
        if after is not None:
            return None, after
    return None, None


def reset_from_json(value: Mapping[str, Any], now: float) -> int | None:
    """The reset time of an object: reset_at/resets_at, else now + reset_after/resets_in."""
    resets_at, after = _reset_parts(value)
    if after is not None:
        return _after(now, after)
    return resets_at


def _window_minutes(value: Mapping[str, Any]) -> int | None:
    """The window length in minutes: window_minutes, else limit_window_seconds / 60."""
    minutes = json_int(value.get("window_minutes"))
    if minutes:  # 0 minutes means no length
        return minutes
    seconds = json_float(value.get("limit_window_seconds"))
    if seconds is None:
        return None
    # Exact for whole minutes (18000 s is 300 min); anything else goes to the nearest minute.
    return round(seconds / 60) or None


def window_from_json(value: object, slot: Slot, now: float) -> Window | None:
    """One window object of an event or a usage body; None when it is not reported."""
    if not isinstance(value, dict):
        return None
    used = json_float(value.get("used_percent"))
    minutes = _window_minutes(value)
    resets_at, after = _reset_parts(value)
    # The same rule as for headers: used 0, no length and no reset time is an empty slot.
    if not used and minutes is None and resets_at is None and not after:
        return None
    if after is not None:
        resets_at = _after(now, after)
    label, classified_by = classify_window(minutes, slot)
    return Window(slot, label, classified_by, used, minutes, resets_at)


def _first(value: Mapping[str, Any], name: str, other: str) -> object:
    """The value under `name`, or under `other` when `name` is absent."""
    return value[name] if name in value else value.get(other)


def limit_from_json(
    limit_id: str, limit_name: str | None, value: object, now: float
) -> LimitReport:
    """One limit family from a rate-limit object; not an object means no reported window."""
    if not isinstance(value, dict):
        return LimitReport(limit_id, limit_name, ())
    # Usage bodies say "primary_window", events say "primary": one reader takes both.
    primary = window_from_json(_first(value, "primary_window", "primary"), "primary", now)
    secondary = window_from_json(_first(value, "secondary_window", "secondary"), "secondary", now)
    windows = tuple(window for window in (primary, secondary) if window is not None)
    over = json_float(value.get("primary_over_secondary_limit_percent"))
    return LimitReport(limit_id, limit_name, windows, over)


def credits_from_json(value: object) -> Credits | None:
    """The credits object; None when it is not an object or carries none of its fields."""
    if not isinstance(value, dict):
        return None
    if "has_credits" not in value and "unlimited" not in value and "balance" not in value:
        return None
    return Credits(
        json_bool(value.get("has_credits")),
        json_bool(value.get("unlimited")),
        json_decimal(value.get("balance")),
    )


def reached_type_from_json(value: object) -> str | None:
    """rate_limit_reached_type: a string, or an object whose "type" is one ("unknown" is none)."""
    if isinstance(value, dict):
        value = value.get("type")
    return known_reached_type(json_text(value))


def limit_hit_from_error(error: object, now: float) -> LimitHit | None:
    """A quota error object (usage_limit_reached, usage_not_included) as a LimitHit, or None."""
    if not isinstance(error, dict):
        return None
    kind = error.get("type")
    if not isinstance(kind, str) or kind not in _LIMIT_ERROR_TYPES:
        kind = error.get("code")  # some answers name the error by its code only
        if not isinstance(kind, str) or kind not in _LIMIT_ERROR_TYPES:
            return None
    return LimitHit(kind, reset_from_json(error, now))


# ---------------------------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------------------------


def _load_object(body: bytes) -> dict[str, Any] | None:
    """Decode a JSON object, or None for anything else (bad JSON, another type, bad UTF-8)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _spend_limit(kind: str, value: object, now: float) -> SpendLimit | None:
    """One spend limit: flat, or a group's {group_id, group_name, details: {...}}."""
    if not isinstance(value, dict):
        return None
    details = value.get("details")
    amounts: Mapping[str, Any] = details if isinstance(details, dict) else value
    return SpendLimit(
        kind=kind,
        limit=json_decimal(amounts.get("limit")),
        used=json_decimal(amounts.get("used")),
        remaining=json_decimal(amounts.get("remaining")),
        used_percent=json_float(amounts.get("used_percent")),
        remaining_percent=json_float(amounts.get("remaining_percent")),
        resets_at=reset_from_json(amounts, now),
        group_id=json_text(value.get("group_id")),
        group_name=json_text(value.get("group_name")),
    )


def _spend_control(value: object, now: float) -> SpendControl | None:
    """spend_control: whether and which limit is reached, and every limit it names (the flat
    fields are the individual limit's); None when absent or not an object."""
    if not isinstance(value, dict):
        return None
    limits = tuple(
        found
        for kind in SPEND_LIMIT_KINDS
        if (found := _spend_limit(kind, value.get(f"{kind}_limit"), now)) is not None
    )
    individual = value.get("individual_limit")
    limit: Mapping[str, Any] = individual if isinstance(individual, dict) else {}
    reached = json_bool(value.get("reached"))
    return SpendControl(
        reached=json_bool(limit.get("reached")) if reached is None else reached,
        limit=json_decimal(limit.get("limit")),
        used=json_decimal(limit.get("used")),
        used_percent=json_float(limit.get("used_percent")),
        resets_at=reset_from_json(limit, now),
        source=json_text(limit.get("source")),
        reached_limit_type=known_reached_type(json_text(value.get("reached_limit_type"))),
        limits=limits,
    )


def _reset_credits(value: object) -> int | None:
    """rate_limit_reset_credits.available_count: the reset credits the seat may still spend."""
    return json_int(value.get("available_count")) if isinstance(value, dict) else None


def _promo_message(answer: Mapping[str, Any]) -> str | None:
    """A promotion's text: promo_message, or promo as text or as {"message": ...}."""
    promo = answer.get("promo_message", answer.get("promo"))
    if isinstance(promo, dict):
        promo = promo.get("message")
    return clean_text(json_text(promo))


def _usage_limit_hit(rate_limit: object, codex: LimitReport) -> LimitHit | None:
    """A LimitHit when rate_limit says limit_reached, else None."""
    # Only limit_reached: "allowed": false alone is no hit (the Codex CLI reads neither, and
    # its own tests send allowed false with windows far from full).
    # Kept simple: the seat is back when its full window (>= 100%) resets; with no full
    # window reported, when the latest reported window resets (the latest of several).
    if not isinstance(rate_limit, dict) or rate_limit.get("limit_reached") is not True:
        return None
    full = [
        window.resets_at
        for window in codex.windows
        if window.resets_at is not None and (window.used_percent or 0.0) >= 100.0
    ]
    if not full:
        full = [window.resets_at for window in codex.windows if window.resets_at is not None]
    return LimitHit("usage_limit_reached", max(full) if full else None)


def _additional_limits(value: object, seen: set[str], now: float) -> list[LimitReport]:
    """additional_rate_limits[]: one family each, by metered_feature, else by its name."""
    if not isinstance(value, list):
        return []
    limits: list[LimitReport] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        name = json_text(item.get("limit_name"))
        limit_id = limit_id_of(item.get("metered_feature")) or limit_id_of(name)
        # Without an id there is nothing to file it under; a repeated id would shadow the first.
        if limit_id is None or limit_id in seen:
            continue
        seen.add(limit_id)
        limits.append(limit_from_json(limit_id, name, item.get("rate_limit"), now))
    return limits


def parse_usage_body(body: bytes, now: float) -> UsageReport | None:
    """Read the JSON answer of GET wham/usage (or api/codex/usage); None if it is not one."""
    answer = _load_object(body)
    if answer is None:
        return None
    if not any(key in answer for key in _USAGE_BODY_KEYS):
        return None
    rate_limit = answer.get("rate_limit")
    # "codex" is always there: rate_limit null means no window is reported, not no family.
    codex = limit_from_json(MAIN_LIMIT, None, rate_limit, now)
    limits = [codex]
    seen = {MAIN_LIMIT}
    review = answer.get("code_review_rate_limit")
    if isinstance(review, dict):
        limits.append(limit_from_json("code_review", None, review, now))
        seen.add("code_review")
    limits.extend(_additional_limits(answer.get("additional_rate_limits"), seen, now))
    return UsageReport(
        limits=tuple(limits),
        plan_type=json_text(answer.get("plan_type")),
        credits=credits_from_json(answer.get("credits")),
        rate_limit_reached_type=reached_type_from_json(answer.get("rate_limit_reached_type")),
        promo_message=_promo_message(answer),
        spend_control=_spend_control(answer.get("spend_control"), now),
        limit_hit=_usage_limit_hit(rate_limit, codex),
        reset_credits=_reset_credits(answer.get("rate_limit_reset_credits")),
    )


def parse_error_body(body: bytes, now: float) -> LimitHit | None:
    """A quota error body {"error": {"type": "usage_limit_reached", ...}} as a LimitHit."""
    answer = _load_object(body)
    if answer is None:
        return None
    return limit_hit_from_error(answer.get("error"), now)


def _short_code(value: object) -> str | None:
    """A non-empty string, cut to a length fit for the request log."""
    text = json_text(value)
    return None if text is None else text[:_ERROR_CODE_MAX_CHARS]


def error_code_of_body(body: bytes) -> str | None:
    """The error code of a JSON error answer: error.code, error.type, detail or code."""
    answer = _load_object(body)
    if answer is None:
        return None
    error = answer.get("error")
    if isinstance(error, dict):
        code = _short_code(error.get("code")) or _short_code(error.get("type"))
        if code is not None:
            return code
    elif isinstance(error, str):
        return _short_code(error)
    detail = answer.get("detail")
    if isinstance(detail, dict):
        return _short_code(detail.get("code")) or _short_code(detail.get("type"))
    return _short_code(detail) or _short_code(answer.get("code"))


def plan_type_of_error_body(body: bytes) -> str | None:
    """The plan_type that a JSON error answer names in its error object."""
    answer = _load_object(body)
    if answer is None:
        return None
    error = answer.get("error")
    return json_text(error.get("plan_type")) if isinstance(error, dict) else None


# ---------------------------------------------------------------------------------------------
# Content-Encoding
# ---------------------------------------------------------------------------------------------


def _zlib_decode(body: bytes, wbits: int, limit: int) -> bytes | None:
    """Inflate zlib, raw deflate or gzip (every member); None if bad, cut short or too big."""
    out: list[bytes] = []
    room = limit
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, room + 1)
        except zlib.error:
            return None
        # More than `room` bytes, or input left over that max_length held back: too big.
        if len(part) > room or inflater.unconsumed_tail:
            return None
        if not inflater.eof:
            return None  # the stream was cut short
        out.append(part)
        room -= len(part)
        data = inflater.unused_data
        # Only gzip has members; a zlib or raw stream ends at its end.
        if not data or wbits != 31:
            return b"".join(out) if not data else None


def _deflate(body: bytes, limit: int) -> bytes | None:
    """HTTP "deflate" is meant to be zlib; some servers send raw deflate: the header tells."""
    # A zlib header: compression method 8 and a 16-bit check value divisible by 31.
    zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
    return _zlib_decode(body, 15 if zlib_header else -15, limit)


def _gzip(body: bytes, limit: int) -> bytes | None:
    """Undo gzip, including bodies of several members."""
    return _zlib_decode(body, 31, limit)


def _optional_module(name: str) -> Any:
    """An installed module by name, or None (brotli and zstandard are optional)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _brotli(body: bytes, limit: int) -> bytes | None:
    """Undo br with the brotli module, never holding much more than `limit` bytes of output."""
    brotli = _optional_module("brotli")
    if brotli is None:
        return None
    decompressor = brotli.Decompressor()
    out: list[bytes] = []
    size = 0
    try:
        if hasattr(decompressor, "can_accept_more_data"):
            # brotli >= 1.2 bounds each call's output; drain it with empty input.
            part = decompressor.process(body, output_buffer_limit=limit + 1)
            while part:
                size += len(part)
                if size > limit:
                    return None
                out.append(part)
                if decompressor.can_accept_more_data():
                    break
                part = decompressor.process(b"", output_buffer_limit=limit + 1 - size)
        else:
            # Older releases have no bound: small slices keep each step's output small.
            for start in range(0, len(body), _BROTLI_SLICE):
                part = decompressor.process(body[start : start + _BROTLI_SLICE])
                size += len(part)
                if size > limit:
                    return None
                out.append(part)
        finished = decompressor.is_finished()
    except brotli.error:
        return None
    return b"".join(out) if finished else None


def _zstd(body: bytes, limit: int) -> bytes | None:
    """Undo zstd (every frame) with the zstandard module, in steps that bound the output."""
    zstandard = _optional_module("zstandard")
    if zstandard is None:
        return None
    # A bigger window than any level short of --ultra needs is refused, not allocated.
    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    out: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            frame = decompressor.decompressobj()
            start = 0
            while not frame.eof and start < len(data):
                # One input byte can become up to ~32 KiB: feed only what the room allows.
                step = max(_ZSTD_MIN_STEP, (limit - size) >> 15)
                part = frame.decompress(data[start : start + step])
                start += step
                size += len(part)
                if size > limit:
                    return None
                out.append(part)
            if not frame.eof:
                return None  # cut short
            data = frame.unused_data + data[start:]
    except zstandard.ZstdError:
        return None
    return b"".join(out)


_DECODERS: Final[Mapping[str, Callable[[bytes, int], bytes | None]]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes | None:
    """Undo Content-Encoding; None if unknown, undecodable or over `limit` bytes decoded."""
    if limit < 0:
        return None
    codings = [item.strip().lower() for item in (content_encoding or "").split(",")]
    # Codings are listed in the order they were applied: undo them last to first.
    for coding in reversed(codings):
        if coding in ("", "identity"):
            continue
        decoder = _DECODERS.get(coding)
        if decoder is None:
            return None
        if not body:
            continue  # nothing to undo (a 204, a HEAD): empty stays empty
        decoded = decoder(body, limit)
        if decoded is None:
            return None
        body = decoded
    return body if len(body) <= limit else None
