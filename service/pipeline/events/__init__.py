"""Decodes one Kafka message into a ``DelistEvent``, or says in one bounded sentence why it never will.

Pure: no I/O, no logging, no clock. Anything a producer can put on the topic ends as one of three things, never
another exception: a ``DelistEvent`` (a delist or a relist, ``kind``); an ``OtherEventType``, a well-formed event
of a type that is neither, to skip; or an ``InvalidEvent``, whose ``error_class`` is one of ``ERROR_CLASSES`` (a
bounded metric label) and whose ``reason`` names the field, is at most ``MAX_REASON_CHARS`` long and quotes at
most a short, escaped excerpt of the input. An invalid event cannot become valid by retrying: it belongs in the
dead-letter topic.

Three wire forms, told apart the way the CloudEvents Kafka binding says (content-type first, then ``ce_`` headers):

- **CloudEvents structured**: a ``content-type: application/cloudevents+json`` header, or (no such header and no
  ``ce_`` headers) a JSON object with a ``specversion`` member. The fields are in ``data`` (a JSON object) or in
  ``data_base64`` (base64 of a JSON object); ``id`` is the event id; ``time`` stands in for a missing
  ``occurred_at``.
- **CloudEvents binary**: any ``ce_`` header (names matched case-insensitively). ``ce_specversion`` (``1.0``),
  ``ce_id``, ``ce_source`` and ``ce_type`` are required, ``ce_time`` is optional, a ``content-type`` must be JSON;
  the value holds the fields as plain JSON. The binding keys on ``ce_specversion`` alone; a message with other
  ``ce_`` headers but not that one is a broken CloudEvent, refused rather than misread as plain JSON.
- **Plain JSON**: everything else; the value is ``PlainDelistEvent`` (``input_event_json_schema()`` publishes it).

The event's type (the CloudEvents ``type``, or the plain member ``EventTypes.type_field``) says what it is
(``EventTypes``): a delist, a relist (whose data needs only ``collection_name`` and ``product_id``), or another
type. A plain event without a type member is a delist: the plain form predates types.

Decisions a producer can rely on:

- Ids are JSON strings, never numbers: a JD SKU is a numeric *string* and a JSON number loses leading zeros and,
  in many producers, precision beyond 2**53. Ids are opaque: not trimmed, not case-folded. They must be non-empty,
  within the caps below, and free of control characters (C0, DEL, C1), U+2028/U+2029 and lone surrogates (which
  could not be written back out as UTF-8).
- Unknown members are ignored, at every level, so producers can add fields without breaking this consumer.
- A CloudEvent's own id is the event id; an ``event_id`` inside its data is ignored like any unknown member.
- ``image_ids`` holds 1 to ``MAX_IMAGES_PER_EVENT`` entries as sent (the published schema says the same);
  duplicates are merged, keeping the order of first appearance.
- Only ``content-type`` and ``ce_`` headers are read (others, like binary tracing headers, may hold anything); a
  header the binding reads that is not UTF-8 or repeats with a different value, or a ``ce_`` header without a
  value, is refused.
- JSON is read strictly (``strict_json``).
- ``occurred_at`` (and CloudEvents ``time``) is RFC 3339 with an offset (``timestamps``).

Where things live, one job per module:

- ``decode``: ``decode_event``, which tells the wire forms apart and hands the message to one of them;
- ``plain`` and ``cloudevents``: one module per wire format. A new format gets a module of its own beside them
  (its envelope and headers, down to ``fields``' builders), and a branch in ``decode_event``;
- ``fields``: from checked fields to a ``DelistEvent``, the common case in plain Python, the rest by the models;
- ``schema``: the identifier types and the models (the plain form, a CloudEvent's data, the decoded event);
- ``event_types``: delist, relist or neither; ``strict_json``, ``timestamps``: the parsers;
- ``errors``: ``InvalidEvent`` and the readable, bounded reasons.

Records in the Schema Registry's wire format (Avro, Protobuf, JSON Schema) are decoded before this package, by
``service.registry``, into the plain form's document, and then read here like any plain event.
"""

from __future__ import annotations

from service.pipeline.events.decode import MAX_VALUE_BYTES, EventDecoder, decode_event
from service.pipeline.events.errors import ERROR_CLASSES, MAX_REASON_CHARS, ErrorClass, InvalidEvent
from service.pipeline.events.event_types import DEFAULT_EVENT_TYPES, EventTypes, OtherEventType
from service.pipeline.events.schema import (
    MAX_COLLECTION_NAME_CHARS,
    MAX_EVENT_ID_CHARS,
    MAX_IMAGE_ID_CHARS,
    MAX_IMAGES_PER_EVENT,
    MAX_PRODUCT_ID_CHARS,
    CollectionName,
    DelistEvent,
    DelistEventData,
    EventId,
    ImageId,
    PlainDelistEvent,
    ProductId,
    SourceFormat,
    input_event_json_schema,
)
from service.pipeline.events.strict_json import MAX_INTEGER_DIGITS
from service.pipeline.events.timestamps import MAX_TIMESTAMP_CHARS
from service.vocabulary import EventKind

__all__ = [
    "DEFAULT_EVENT_TYPES",
    "ERROR_CLASSES",
    "MAX_COLLECTION_NAME_CHARS",
    "MAX_EVENT_ID_CHARS",
    "MAX_IMAGES_PER_EVENT",
    "MAX_IMAGE_ID_CHARS",
    "MAX_INTEGER_DIGITS",
    "MAX_PRODUCT_ID_CHARS",
    "MAX_REASON_CHARS",
    "MAX_TIMESTAMP_CHARS",
    "MAX_VALUE_BYTES",
    "CollectionName",
    "DelistEvent",
    "DelistEventData",
    "ErrorClass",
    "EventDecoder",
    "EventId",
    "EventKind",
    "EventTypes",
    "ImageId",
    "InvalidEvent",
    "OtherEventType",
    "PlainDelistEvent",
    "ProductId",
    "SourceFormat",
    "decode_event",
    "input_event_json_schema",
]
