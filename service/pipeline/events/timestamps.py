"""RFC 3339 date-times, as an event's ``occurred_at`` and a CloudEvent's ``time`` carry them.

Only date-times with an offset: a naive one is ambiguous. Each becomes an aware UTC datetime; fractions below a
microsecond are truncated, and a leap second (``:60``) becomes ``:59.999999`` (datetime cannot hold it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Final

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from service.pipeline.events.errors import excerpt, json_type

__all__ = ["MAX_TIMESTAMP_CHARS", "WireTimestamp", "aware_utc", "common_timestamp", "parse_rfc3339"]

MAX_TIMESTAMP_CHARS: Final = 64

_RFC3339: Final = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt ]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<offset_hours>[0-9]{2}):(?P<offset_minutes>[0-9]{2}))"
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time as an aware UTC datetime; ValueError with a readable reason otherwise."""
    if len(text) > MAX_TIMESTAMP_CHARS:
        raise ValueError(f"{len(text)} characters, too long for an RFC 3339 date-time")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{excerpt(text)} is not an RFC 3339 date-time with an offset (like 2025-11-23T08:15:00Z)")
    second, microsecond = int(match["second"]), int((match["fraction"] or "")[:6].ljust(6, "0"))
    if second == 60:  # a leap second, which datetime cannot hold
        second, microsecond = 59, 999_999
    offset = timedelta(0)
    if match["utc"] is None:
        hours, minutes = int(match["offset_hours"]), int(match["offset_minutes"])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{excerpt(text)} has an offset out of range")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if match["sign"] == "-" else 1)
    try:
        moment = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            second,
            microsecond,
            tzinfo=timezone(offset),
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"{excerpt(text)} is not a valid date-time: {error}") from None


def _timestamp_from_wire(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError(
            "timestamp_type", "expected an RFC 3339 date-time string, got {json_type}", {"json_type": json_type(value)}
        )
    try:
        return parse_rfc3339(value)
    except ValueError as error:
        raise PydanticCustomError("timestamp_format", "{problem}", {"problem": str(error)}) from None


def aware_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        raise PydanticCustomError("timestamp_naive", "a date-time without a UTC offset is ambiguous")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("timestamp_range", "out of range once converted to UTC") from None


WireTimestamp = Annotated[datetime | None, BeforeValidator(_timestamp_from_wire)]


_COMMON_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
"""The usual timestamp: time and offset in range, no leap second. ``datetime.fromisoformat`` reads it exactly as
``parse_rfc3339`` does (fractions below a microsecond truncated) and refuses a date the calendar lacks."""


def common_timestamp(value: object) -> datetime | None:
    if type(value) is not str or _COMMON_RFC3339.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):  # a day the month does not have; a moment beyond year 1..9999 in UTC
        return None
