"""Registry records -> the JSON document of the same event, and that document -> a ``DelistEvent``. Pure.

A record in the Confluent wire format (magic byte 0, a big-endian 4-byte schema id, the payload) is decoded by
confluent-kafka's deserializer for its schema type (``decoder``); what it returns (an Avro or JSON Schema
``dict``, a Protobuf message) is turned into the JSON document a producer of plain JSON would have sent, and
that document is decoded exactly as plain JSON is (``events.decode_event``): the same field names, the same
strictness, the same reasons and error classes. So:

- Ids must be strings in the schema too (Avro ``string``, Protobuf ``string``, JSON Schema ``"type": "string"``):
  an Avro ``long`` or a Protobuf ``int64`` id is refused as a number, like a JSON number (leading zeros,
  precision). Avro ``uuid`` values are strings.
- ``occurred_at`` may be an RFC 3339 string, an Avro ``timestamp-millis``/``-micros`` (an aware datetime) or a
  ``google.protobuf.Timestamp``; a local (naive) timestamp is refused, its offset being unknown.
- A Protobuf field that is not set is absent, as in proto3's JSON mapping; for proto3 scalars, which cannot be
  told unset from their default, a field holding its default ("", 0, an empty list) is absent too: a
  ``product_id`` left "" is refused as missing, a ``type`` left "" is no type (a delist). Enums read as names.
- An Avro record field holding null (an optional field, a union with null) is absent; JSON Schema records keep
  their nulls, as JSON does (``"type": null`` is refused there as in JSON).
- ``bytes`` / ``fixed`` values are not text: they read as null. Non-finite floats read as null. Decimals read as
  numbers. Unknown members are ignored, as in JSON.
- A record's ``content-type`` header describes the registry format, so it is left out; ``ce_`` headers are kept:
  a binary-mode CloudEvent whose data is registry-encoded is decoded as one.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, Literal

from service.pipeline.events import DEFAULT_EVENT_TYPES, DelistEvent, EventTypes, InvalidEvent, decode_event

__all__ = [
    "HEADER_BYTES",
    "MAGIC_BYTE",
    "SchemaType",
    "event_from_document",
    "is_registry_framed",
    "json_document",
    "message_document",
    "schema_id_of",
    "schema_type_of",
]

MAGIC_BYTE: Final = 0
HEADER_BYTES: Final = 5
"""The magic byte and the 4-byte schema id; Protobuf adds its message indexes after them."""

SchemaType = Literal["AVRO", "PROTOBUF", "JSON"]
_SCHEMA_TYPES: Final[tuple[SchemaType, ...]] = ("AVRO", "PROTOBUF", "JSON")

Headers = Sequence[tuple[str, bytes | str | None]]


def is_registry_framed(value: bytes | None) -> bool:
    """Whether the record says it is in the registry wire format. JSON never starts with a NUL byte."""
    return bool(value) and value is not None and value[0] == MAGIC_BYTE


def schema_id_of(value: bytes) -> int:
    """The schema id of a framed record; ``InvalidEvent`` when the frame is cut short."""
    if len(value) <= HEADER_BYTES:
        raise InvalidEvent(
            "invalid_registry_record",
            f"value: {len(value)} bytes, a schema registry record holds a magic byte, a 4-byte schema id and a payload",
        )
    schema_id: int = struct.unpack(">I", value[1:HEADER_BYTES])[0]
    return schema_id


def schema_type_of(declared: str | None, schema_id: int) -> SchemaType:
    """The registry's ``schemaType`` (absent means Avro); ``InvalidEvent`` for one confluent-kafka cannot read."""
    kind = (declared or "AVRO").upper()
    for known in _SCHEMA_TYPES:
        if kind == known:
            return known
    raise InvalidEvent(
        "invalid_registry_record",
        f"schema id {schema_id}: schema type {kind[:40]!r} is not supported (AVRO, PROTOBUF, JSON)",
    )


def json_document(value: object, *, drop_nulls: bool = False) -> object:  # noqa: PLR0911 - one line per kind
    """A deserialized Avro / JSON Schema value as the JSON value a plain-JSON producer would have sent.

    ``drop_nulls`` (Avro): a record field holding null is left out, null being how Avro says "not set" (an
    optional field is a union with null); JSON Schema documents keep their nulls, as JSON does."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, datetime):
        return value.isoformat()  # naive: no offset, refused where a timestamp is read
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {
            str(key): json_document(item, drop_nulls=drop_nulls)
            for key, item in value.items()
            if not (drop_nulls and item is None)
        }
    if isinstance(value, list | tuple):
        return [json_document(item, drop_nulls=drop_nulls) for item in value]
    if hasattr(value, "DESCRIPTOR") and hasattr(value, "ListFields"):  # a Protobuf message
        return message_document(value)
    return None  # bytes, fixed, and anything else that is not text or a number


# google.protobuf.FieldDescriptor's type numbers and labels (stable parts of descriptor.proto)
_TYPE_MESSAGE: Final = 11
_TYPE_BYTES: Final = 12
_TYPE_ENUM: Final = 14
_LABEL_REPEATED: Final = 3
_WRAPPERS: Final = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)


def message_document(message: Any) -> dict[str, object]:
    """A Protobuf message as a JSON object keyed by the fields' proto names: the fields that are set (``ListFields``:
    for proto3 scalars, those not holding their default). Unlike proto3's JSON mapping, 64-bit integers stay
    numbers (an int64 id is refused as a number, as in JSON)."""
    document: dict[str, object] = {}
    for field, value in message.ListFields():
        if _is_map(field):
            entry = field.message_type.fields_by_name["value"]
            document[field.name] = {str(key): _field_value(entry, item) for key, item in value.items()}
        elif _is_repeated(field):
            document[field.name] = [_field_value(field, item) for item in value]
        else:
            document[field.name] = _field_value(field, value)
    return document


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf 7 drops ``label``
    return bool(repeated) if repeated is not None else bool(field.label == _LABEL_REPEATED)


def _is_map(field: Any) -> bool:
    return _is_repeated(field) and field.type == _TYPE_MESSAGE and bool(field.message_type.GetOptions().map_entry)


def _field_value(field: Any, value: Any) -> object:
    if field.type == _TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            text: str = value.ToJsonString()  # RFC 3339, "Z"
            return text
        if name in _WRAPPERS:
            return _field_value(field.message_type.fields_by_name["value"], value.value)
        return message_document(value)
    if field.type == _TYPE_ENUM:
        described = field.enum_type.values_by_number.get(value)
        return described.name if described is not None else value
    if field.type == _TYPE_BYTES:
        return None
    return json_document(value)


def event_from_document(
    document: object, headers: Headers | None, types: EventTypes = DEFAULT_EVENT_TYPES
) -> DelistEvent:
    """The event the document holds, decoded as plain JSON (or CloudEvents) is: same rules, reasons, classes."""
    encoded = json.dumps(json_document(document), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    kept = [(name, value) for name, value in headers or () if name.lower() != "content-type"]
    return decode_event(encoded, kept, types)
