"""From an event's checked fields to a ``DelistEvent``: the common case in plain Python, the rest by the models.

Nearly every event is well formed, and validating it through the models costs more than everything else in
decoding. The checks here (and ``cloudevents``' for the envelope) state the models' rules in plain Python for
values as json.loads gives them. They answer only "certainly valid" (and then the same values the models would
give) or "not sure" (None): anything unusual goes through the models, which decide and word the reason.
``tests/unit/test_events.py`` compares both.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final, NamedTuple, TypeGuard

from service.pipeline.events.errors import InvalidEvent, json_type, validate
from service.pipeline.events.schema import (
    FORBIDDEN_CHARACTER,
    MAX_COLLECTION_NAME_CHARS,
    MAX_EVENT_ID_CHARS,
    MAX_IMAGE_ID_CHARS,
    MAX_IMAGES_PER_EVENT,
    MAX_PRODUCT_ID_CHARS,
    DelistEvent,
    DelistEventData,
    PlainDelistEvent,
    SourceFormat,
    merge_duplicates,
)
from service.pipeline.events.timestamps import common_timestamp
from service.vocabulary import EventKind

__all__ = [
    "Fields",
    "common_fields",
    "data_fields",
    "delist_event",
    "is_identifier",
    "is_text",
    "plain_fields",
    "relist_event",
]


class Fields(NamedTuple):
    """The delist fields, once valid; ``image_ids`` as sent."""

    collection_name: str
    product_id: str
    image_ids: tuple[str, ...]
    occurred_at: datetime | None

    @classmethod
    def of(cls, fields: PlainDelistEvent | DelistEventData) -> Fields:
        return cls(fields.collection_name, fields.product_id, tuple(fields.image_ids), fields.occurred_at)


def data_fields(data: object, *, document_name: str = "value", path_prefix: str = "") -> Fields:
    fields = common_fields(data)
    if fields is not None:
        return fields
    model = validate(DelistEventData, data, "invalid_schema", document_name=document_name, path_prefix=path_prefix)
    return Fields.of(model)


def plain_fields(document: object) -> tuple[str, Fields]:
    """A plain event's id and fields: ``PlainDelistEvent``'s rules, in plain Python when certainly valid."""
    if isinstance(document, dict):
        event_id, fields = document.get("event_id"), common_fields(document)
        if fields is not None and is_identifier(event_id, MAX_EVENT_ID_CHARS):
            return event_id, fields
    plain = validate(PlainDelistEvent, document, "invalid_schema")
    return plain.event_id, Fields.of(plain)


_ANY_EVENT: Final = DelistEvent(
    event_id="-",
    collection_name="-",
    product_id="-",
    image_ids=("-",),
    source_format="json",
    kind=EventKind.RELIST,
    event_type="-",
    traceparent="-",
    tracestate="-",
)
"""Decoded events are copies of this one with every field replaced (see ``delist_event``)."""


def delist_event(
    event_id: str,
    fields: Fields,
    *,
    fallback_time: datetime | None,
    source_format: SourceFormat,
    event_type: str | None = None,
    trace: tuple[str | None, str | None] = (None, None),
) -> DelistEvent:
    # Every value is valid already and every timestamp is in UTC, so DelistEvent's own validation could only
    # merge the duplicates: that is done here, and the event is built without validating a second time.
    # model_copy(update=...) of a valid event does that like model_construct, at half the cost per event.
    return _ANY_EVENT.model_copy(
        update={
            "event_id": event_id,
            "collection_name": fields.collection_name,
            "product_id": fields.product_id,
            "image_ids": merge_duplicates(fields.image_ids),
            "occurred_at": fields.occurred_at if fields.occurred_at is not None else fallback_time,
            "source_format": source_format,
            "kind": EventKind.DELIST,
            "event_type": event_type,
            "traceparent": trace[0],
            "tracestate": trace[1],
        }
    )


def relist_event(
    event_id: str,
    data: object,
    event_type: str,
    fallback_time: datetime | None,
    source_format: SourceFormat,
    *,
    document_name: str = "value",
    trace: tuple[str | None, str | None] = (None, None),
) -> DelistEvent:
    """A relist names the product (collection and product id); its ``image_ids`` are optional, checked if sent."""
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_schema", f"{document_name}: expected a JSON object, got {json_type(data)}")
    sent_images = "image_ids" in data
    checked = data if sent_images else {**data, "image_ids": ["-"]}  # the product's fields, checked as a delist's
    fields = common_fields(checked) or Fields.of(
        validate(DelistEventData, checked, "invalid_schema", document_name=document_name)
    )
    event = delist_event(
        event_id, fields, fallback_time=fallback_time, source_format=source_format, event_type=event_type, trace=trace
    )
    images = merge_duplicates(fields.image_ids) if sent_images else ()
    return event.model_copy(update={"kind": EventKind.RELIST, "image_ids": images})


_SURROGATE: Final = re.compile(r"[\uD800-\uDFFF]")


def is_identifier(value: object, max_chars: int) -> TypeGuard[str]:
    return type(value) is str and 0 < len(value) <= max_chars and FORBIDDEN_CHARACTER.search(value) is None


def is_text(value: object) -> TypeGuard[str]:
    # pydantic refuses a lone surrogate in a string with constraints (string_unicode)
    return type(value) is str and value != "" and _SURROGATE.search(value) is None


def common_fields(data: object) -> Fields | None:
    """``DelistEventData``'s (and ``PlainDelistEvent``'s, but the id) fields, when certainly valid."""
    if not isinstance(data, dict):
        return None
    collection, product, images = data.get("collection_name"), data.get("product_id"), data.get("image_ids")
    if not (
        is_identifier(collection, MAX_COLLECTION_NAME_CHARS)
        and is_identifier(product, MAX_PRODUCT_ID_CHARS)
        and type(images) is list
        and 1 <= len(images) <= MAX_IMAGES_PER_EVENT
        and all(type(image) is str and 0 < len(image) <= MAX_IMAGE_ID_CHARS for image in images)
        and FORBIDDEN_CHARACTER.search("".join(images)) is None  # one search instead of one per id: same answer
    ):
        return None
    occurred_at = data.get("occurred_at")
    if occurred_at is not None:
        occurred_at = common_timestamp(occurred_at)
        if occurred_at is None:
            return None
    return Fields(collection, product, tuple(images), occurred_at)
