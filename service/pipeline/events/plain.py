"""Plain JSON: the value is the event's fields (``PlainDelistEvent``), its type (if any) a member of them."""

from __future__ import annotations

from service.pipeline.events.errors import InvalidEvent, excerpt
from service.pipeline.events.event_types import EventTypes
from service.pipeline.events.fields import delist_event, is_identifier, is_text, plain_fields, relist_event
from service.pipeline.events.schema import MAX_EVENT_ID_CHARS, DelistEvent
from service.vocabulary import EventKind

__all__ = ["decode_plain"]


def decode_plain(document: object, types: EventTypes) -> DelistEvent:
    event_type: str | None = None
    if isinstance(document, dict) and types.type_field in document:
        declared = document[types.type_field]
        if not is_text(declared):
            raise InvalidEvent("invalid_schema", f"{excerpt(types.type_field)}: expected a non-empty string")
        event_type = declared
        if types.kind(declared) is EventKind.RELIST:
            event_id = document.get("event_id")
            if not is_identifier(event_id, MAX_EVENT_ID_CHARS):
                raise InvalidEvent("invalid_schema", "event_id: expected a non-empty id without control characters")
            return relist_event(event_id, document, declared, None, "json")
    event_id, fields = plain_fields(document)
    return delist_event(event_id, fields, fallback_time=None, source_format="json", event_type=event_type)
