"""Which event types are delists, which are relists, and which are none of imgsweep's business.

A topic may carry a catalog's other events too: those are skipped (``OtherEventType``: counted and committed,
with no call and no outcome), not dead-lettered as invalid. ``IMGSWEEP_EVENTS__*`` configure the patterns.
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from typing import Final

from service.vocabulary import DEFAULT_DELIST_TYPES, DEFAULT_RELIST_TYPES, EventKind

__all__ = ["DEFAULT_EVENT_TYPES", "EventTypes", "OtherEventType"]


class OtherEventType(Exception):
    """The record is a well-formed event of a type that is neither a delist nor a relist: skip it."""

    def __init__(self, event_type: str) -> None:
        super().__init__(event_type)
        self.event_type = event_type


@dataclass(frozen=True, slots=True)
class EventTypes:
    """Which event types are delists and which are relists (shell-style patterns, case-sensitive)."""

    delist: tuple[str, ...] = DEFAULT_DELIST_TYPES
    relist: tuple[str, ...] = DEFAULT_RELIST_TYPES
    type_field: str = "type"
    """The plain JSON member holding the type; a plain event without it is a delist."""

    def kind(self, event_type: str) -> EventKind:
        """Raises ``OtherEventType`` for a type that is neither."""
        kind = _kind_of(self, event_type)
        if kind is None:
            raise OtherEventType(event_type)
        return kind


@functools.lru_cache(maxsize=1024)
def _kind_of(types: EventTypes, event_type: str) -> EventKind | None:
    """Matched once per distinct type: a topic carries a handful, and every event would match them again."""
    if any(fnmatch.fnmatchcase(event_type, pattern) for pattern in types.delist):
        return EventKind.DELIST
    if any(fnmatch.fnmatchcase(event_type, pattern) for pattern in types.relist):
        return EventKind.RELIST
    return None


DEFAULT_EVENT_TYPES: Final = EventTypes()
