"""JSON read strictly, so that every consumer of the same bytes reads the same event.

NaN/Infinity, integers longer than ``MAX_INTEGER_DIGITS`` digits, a key repeated within one object (parsers
disagree on which copy wins) and nesting deeper than the interpreter's recursion limit are all ``invalid_json``.
"""

from __future__ import annotations

import json
from typing import Final

from service.pipeline.events.errors import InvalidEvent, excerpt

__all__ = ["MAX_INTEGER_DIGITS", "parse_json"]

MAX_INTEGER_DIGITS: Final = 4300
"""Python's default int-string limit, enforced here whatever the interpreter's setting (parsing is quadratic)."""


class _NotStrictJson(Exception):
    """Raised from inside json.loads by the hooks below; json passes it through untouched."""


def _refuse_constant(name: str) -> object:
    raise _NotStrictJson(f"{name} is not JSON")


def _integer_within_limit(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _NotStrictJson(f"an integer of {len(digits.lstrip('-'))} digits, at most {MAX_INTEGER_DIGITS} allowed")
    try:
        return int(digits)
    except ValueError:  # the interpreter's int-string limit was set lower
        raise _NotStrictJson(f"an integer of {len(digits)} digits is beyond this interpreter's limit") from None


def _object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _NotStrictJson(f"key {excerpt(key)} appears twice in one object")
            seen.add(key)
    return document


_STRICT_JSON: Final = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_int=_integer_within_limit, object_pairs_hook=_object_without_repeated_keys
)
"""Shared: ``json.loads`` with these hooks would build a decoder per call. (json.loads shares one the same way.)"""


def _loads_strict(text: str) -> object:
    if text.startswith("\ufeff"):  # json.loads checks this before decoding; JSONDecoder.decode does not
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _STRICT_JSON.decode(text)


def parse_json(raw: bytes, where: str) -> object:
    # `from None` throughout: the chained exceptions would carry (and a traceback print) the payload.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent("invalid_utf8", f"{where}: not valid UTF-8 (byte {error.start}: {error.reason})") from None
    try:
        return _loads_strict(text)
    except json.JSONDecodeError as error:
        raise InvalidEvent(
            "invalid_json", f"{where}: not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except _NotStrictJson as error:
        raise InvalidEvent("invalid_json", f"{where}: {error}") from None
    except RecursionError:
        raise InvalidEvent("invalid_json", f"{where}: nested too deeply") from None
