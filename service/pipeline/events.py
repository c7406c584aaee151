"""Decodes one Kafka message into a ``DelistEvent``, or says in one bounded sentence why it never will.

Pure: no I/O, no logging, no clock. Anything a producer can put on the topic ends as a ``DelistEvent`` or an
``InvalidEvent`` (never another exception), whose ``error_class`` is one of ``ERROR_CLASSES`` (a bounded metric
label) and whose ``reason`` names the field, is at most ``MAX_REASON_CHARS`` long and quotes at most a short,
escaped excerpt of the input. An invalid event cannot become valid by retrying: it belongs in the dead-letter topic.

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

Decisions a producer can rely on:

- Ids are JSON strings, never numbers: a JD SKU is a numeric *string* and a JSON number loses leading zeros and,
  in many producers, precision beyond 2**53. Ids are opaque: not trimmed, not case-folded. They must be non-empty,
  within the caps below, and free of control characters (C0, DEL, C1), U+2028/U+2029 and lone surrogates (which
  could not be written back out as UTF-8).
- Unknown members are ignored, at every level, so producers can add fields without breaking this consumer.
- A CloudEvent's own id is the event id; an ``event_id`` inside its data is ignored like any unknown member (a
  producer that moved to a CloudEvents SDK may keep its old body while the SDK mints the id).
- ``image_ids`` holds 1 to ``MAX_IMAGES_PER_EVENT`` entries as sent (the published schema says the same);
  duplicates are merged, keeping the order of first appearance.
- Only ``content-type`` and ``ce_`` headers are read (others, like binary tracing headers, may hold anything); a
  header the binding reads that is not UTF-8 or repeats with a different value, or a ``ce_`` header without a
  value, is refused.
- JSON is read strictly: NaN/Infinity, integers longer than ``MAX_INTEGER_DIGITS`` digits, a key repeated within
  one object (parsers disagree on which copy wins) and nesting deeper than the interpreter's recursion limit are
  all ``invalid_json``.
- ``occurred_at`` (and CloudEvents ``time``) is RFC 3339 with an offset; it becomes an aware UTC datetime. Fractions
  below a microsecond are truncated, and a leap second (``:60``) becomes ``:59.999999``.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NamedTuple, TypeGuard, TypeVar, cast, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

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

MAX_IMAGES_PER_EVENT: Final = 30
MAX_VALUE_BYTES: Final = 1024 * 1024
MAX_EVENT_ID_CHARS: Final = 256
MAX_COLLECTION_NAME_CHARS: Final = 128
MAX_PRODUCT_ID_CHARS: Final = 128
MAX_IMAGE_ID_CHARS: Final = 256
MAX_TIMESTAMP_CHARS: Final = 64
MAX_INTEGER_DIGITS: Final = 4300
"""Python's default int-string limit, enforced here whatever the interpreter's setting (parsing is quadratic)."""
MAX_REASON_CHARS: Final = 300

ErrorClass = Literal[
    "empty_value",  # null (a tombstone) or zero bytes
    "too_large",  # over MAX_VALUE_BYTES
    "invalid_utf8",  # the value (or data_base64) is not UTF-8
    "invalid_json",  # not (strict) JSON
    "invalid_schema",  # JSON, but not the delist fields: types, missing fields, caps, timestamps
    "invalid_cloudevent",  # a CloudEvents envelope or header that breaks the spec or this consumer's support
    "invalid_registry_record",  # Schema Registry wire format, but the payload does not decode with its schema
    "schema_unavailable",  # Schema Registry wire format, but its schema could not be fetched (service.registry)
]
ERROR_CLASSES: Final[tuple[ErrorClass, ...]] = get_args(ErrorClass)

SourceFormat = Literal["json", "cloudevents-structured", "cloudevents-binary"]


class EventKind(StrEnum):
    DELIST = "delist"
    RELIST = "relist"


class OtherEventType(Exception):
    """The record is a well-formed event of a type that is neither a delist nor a relist: skip it."""

    def __init__(self, event_type: str) -> None:
        super().__init__(event_type)
        self.event_type = event_type


@dataclass(frozen=True, slots=True)
class EventTypes:
    """Which event types are delists and which are relists (shell-style patterns, case-sensitive)."""

    delist: tuple[str, ...] = ("*product.delisted", "*product-delisted", "*product_delisted", "*ProductDelisted")
    relist: tuple[str, ...] = ("*product.relisted", "*product-relisted", "*product_relisted", "*ProductRelisted")
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

_CLOUDEVENTS_JSON: Final = "application/cloudevents+json"
_EXCERPT_CHARS: Final = 40


class InvalidEvent(Exception):
    """The message can never become a ``DelistEvent``; retrying cannot help, it goes to the dead-letter topic."""

    def __init__(self, error_class: ErrorClass, reason: str) -> None:
        if error_class not in ERROR_CLASSES:  # a metric label: the set must stay fixed
            raise ValueError(f"unknown error class {error_class!r}")
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        super().__init__(error_class, reason)
        self.error_class: ErrorClass = error_class
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.error_class}: {self.reason}"


# --- identifiers -----------------------------------------------------------------------------------------------

# Python's re and ECMA-262 (JSON Schema's dialect) both read \uXXXX, so the schema can state the same rule.
# Surrogates stay out of the schema's pattern: a UTF-16 regex would then refuse every astral character (emoji),
# which it sees as a surrogate pair.
_FORBIDDEN_CHARACTERS: Final = r"\u0000-\u001F\u007F-\u009F\u2028\u2029"
_FORBIDDEN_CHARACTER: Final = re.compile(f"[{_FORBIDDEN_CHARACTERS}\\uD800-\\uDFFF]")
# The end is `(?![\s\S])`, not `$`: Python's `$` (used by Python validators) also matches before a final "\n".
_IDENTIFIER_SCHEMA: Final[dict[str, Any]] = {"pattern": f"^[^{_FORBIDDEN_CHARACTERS}]+(?![\\s\\S])"}


def _without_forbidden_characters(value: str) -> str:
    found = _FORBIDDEN_CHARACTER.search(value)
    if found is not None:
        raise PydanticCustomError(
            "forbidden_character",
            "contains {character} at position {position} (control characters, U+2028/U+2029 and lone "
            "surrogates are not allowed)",
            {"character": f"U+{ord(found.group()):04X}", "position": found.start()},
        )
    return value


EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_EVENT_ID_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
CollectionName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_COLLECTION_NAME_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
ProductId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PRODUCT_ID_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
ImageId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_IMAGE_ID_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
_NonEmptyText = Annotated[str, StringConstraints(min_length=1)]


# --- timestamps ------------------------------------------------------------------------------------------------

_RFC3339: Final = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt ]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<offset_hours>[0-9]{2}):(?P<offset_minutes>[0-9]{2}))"
)


def _parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time as an aware UTC datetime; ValueError with a readable reason otherwise."""
    if len(text) > MAX_TIMESTAMP_CHARS:
        raise ValueError(f"{len(text)} characters, too long for an RFC 3339 date-time")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{_excerpt(text)} is not an RFC 3339 date-time with an offset (like 2025-11-23T08:15:00Z)")
    second, microsecond = int(match["second"]), int((match["fraction"] or "")[:6].ljust(6, "0"))
    if second == 60:  # a leap second, which datetime cannot hold
        second, microsecond = 59, 999_999
    offset = timedelta(0)
    if match["utc"] is None:
        hours, minutes = int(match["offset_hours"]), int(match["offset_minutes"])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{_excerpt(text)} has an offset out of range")
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
        raise ValueError(f"{_excerpt(text)} is not a valid date-time: {error}") from None


def _timestamp_from_wire(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError(
            "timestamp_type", "expected an RFC 3339 date-time string, got {json_type}", {"json_type": _json_type(value)}
        )
    try:
        return _parse_rfc3339(value)
    except ValueError as error:
        raise PydanticCustomError("timestamp_format", "{problem}", {"problem": str(error)}) from None


def _aware_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        raise PydanticCustomError("timestamp_naive", "a date-time without a UTC offset is ambiguous")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("timestamp_range", "out of range once converted to UTC") from None


_WireTimestamp = Annotated[datetime | None, BeforeValidator(_timestamp_from_wire)]


# --- the wire formats ------------------------------------------------------------------------------------------

_IMAGE_IDS_DESCRIPTION: Final = (
    f"The product's images to remove, 1 to {MAX_IMAGES_PER_EVENT} entries; duplicates are merged."
)
_OCCURRED_AT_DESCRIPTION: Final = "When the product was delisted, RFC 3339 with an offset. Optional."


class PlainDelistEvent(BaseModel):
    """A product was delisted: delete these images of it from this JD image search collection.

    Members not listed here are ignored. Ids are strings (numbers are refused) and are used exactly as sent.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, title="Product delisted event")

    event_id: EventId = Field(description="Unique per event; the outcome event repeats it.")
    collection_name: CollectionName = Field(description="The JD product image search collection.")
    product_id: ProductId = Field(description="The product (JD SKU), as a string.")
    image_ids: list[ImageId] = Field(min_length=1, max_length=MAX_IMAGES_PER_EVENT, description=_IMAGE_IDS_DESCRIPTION)
    occurred_at: _WireTimestamp = Field(default=None, description=_OCCURRED_AT_DESCRIPTION)


class DelistEventData(BaseModel):
    """The ``data`` of a delist CloudEvent (or a binary-mode value): the event id is the CloudEvent's ``id``."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, title="Product delisted event data")

    collection_name: CollectionName = Field(description="The JD product image search collection.")
    product_id: ProductId = Field(description="The product (JD SKU), as a string.")
    image_ids: list[ImageId] = Field(min_length=1, max_length=MAX_IMAGES_PER_EVENT, description=_IMAGE_IDS_DESCRIPTION)
    occurred_at: _WireTimestamp = Field(
        default=None, description=_OCCURRED_AT_DESCRIPTION + " The CloudEvent's time stands in when absent."
    )


class _CloudEventAttributes(BaseModel):
    """The CloudEvents 1.0 context attributes this consumer checks; extensions and the rest are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: EventId
    source: _NonEmptyText
    type: _NonEmptyText
    time: _WireTimestamp = None
    datacontenttype: str | None = None


# --- the decoded event -----------------------------------------------------------------------------------------


def _merge_duplicates(image_ids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(image_ids))


class DelistEvent(BaseModel):
    """One product's delisting, validated: which distinct images of which collection must go."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: EventId
    collection_name: CollectionName
    product_id: ProductId
    image_ids: Annotated[
        tuple[ImageId, ...],
        Field(min_length=1, max_length=MAX_IMAGES_PER_EVENT),
        AfterValidator(_merge_duplicates),
    ]
    """Distinct, in order of first appearance."""
    occurred_at: Annotated[datetime | None, AfterValidator(_aware_utc)] = None
    """Aware and in UTC, or None when the producer did not say."""
    source_format: SourceFormat
    kind: EventKind = EventKind.DELIST
    """A relist's ``image_ids`` may be empty: it cancels whatever of the product's images is not yet sent."""
    event_type: str | None = None
    """The CloudEvents ``type`` (or the plain JSON type member) as sent; None for an untyped plain event."""
    traceparent: str | None = None
    """The CloudEvents Distributed Tracing extension as sent (a structured envelope's ``traceparent`` member, a
    binary event's ``ce_traceparent`` header), unchecked: ``trace_context`` checks it and never refuses an event."""
    tracestate: str | None = None


def input_event_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a plain-JSON input event, as producers should see it published."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **PlainDelistEvent.model_json_schema()}


# --- decoding --------------------------------------------------------------------------------------------------


def decode_event(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | str | None]] | None,
    types: EventTypes = DEFAULT_EVENT_TYPES,
) -> DelistEvent:
    """The event a Kafka message (its value and headers, as confluent-kafka gives them) carries.

    Raises ``InvalidEvent`` for anything a producer can send that is not a valid event, and ``OtherEventType``
    for a valid envelope of a type that is neither a delist nor a relist (its data is not looked at).
    """
    payload = _bounded_value(value)
    headers = headers or ()
    content_type = _content_type(headers)
    if content_type is not None and _is_cloudevents_format(content_type):
        return _decode_structured(_parse_json(payload, "value"), types)
    attributes = _cloudevent_attributes(headers)
    if attributes:
        return _decode_binary(payload, attributes, content_type, types)
    document = _parse_json(payload, "value")
    if isinstance(document, dict) and "specversion" in document:
        return _decode_structured(document, types)
    return _decode_plain(document, types)


def _bounded_value(value: bytes | None) -> bytes:
    if not value:
        raise InvalidEvent("empty_value", "value: empty (null or zero bytes), there is no event to decode")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidEvent("too_large", f"value: {len(value)} bytes, at most {MAX_VALUE_BYTES} allowed")
    return value


def _content_type(headers: Sequence[tuple[str, bytes | str | None]]) -> str | None:
    content_type: str | None = None
    for key, raw in headers:
        if raw is None or key.lower() != "content-type":
            continue
        text = _header_text(key, raw)
        if content_type is not None and content_type != text:
            raise InvalidEvent("invalid_cloudevent", "content-type: header repeated with different values")
        content_type = text
    return content_type


def _cloudevent_attributes(headers: Sequence[tuple[str, bytes | str | None]]) -> dict[str, str]:
    """The ``ce_`` headers by lower-cased attribute name (prefix removed); other headers are left unread."""
    attributes: dict[str, str] = {}
    for key, raw in headers:
        name = key.lower()
        if not name.startswith("ce_"):
            continue
        if raw is None:
            raise InvalidEvent("invalid_cloudevent", f"{_label(key)}: header has no value")
        text = _header_text(key, raw)
        if attributes.setdefault(name.removeprefix("ce_"), text) != text:
            raise InvalidEvent("invalid_cloudevent", f"{_label(key)}: header repeated with different values")
    return attributes


def _header_text(key: str, raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent(
            "invalid_cloudevent", f"{_label(key)}: header value is not valid UTF-8 (byte {error.start}: {error.reason})"
        ) from None


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _is_cloudevents_format(content_type: str) -> bool:
    """Whether the content-type announces structured mode; refuses the CloudEvents formats not supported here."""
    media_type = _media_type(content_type)
    if media_type == _CLOUDEVENTS_JSON:
        return True
    if media_type.startswith("application/cloudevents-batch"):
        raise InvalidEvent("invalid_cloudevent", "content-type: batched CloudEvents are not supported")
    if media_type.startswith("application/cloudevents"):
        raise InvalidEvent(
            "invalid_cloudevent",
            f"content-type: {_excerpt(media_type)} is not supported, only {_CLOUDEVENTS_JSON}",
        )
    return False


def _require_json_media_type(content_type: str, where: str) -> None:
    media_type = _media_type(content_type)
    if media_type not in {"application/json", "text/json"} and not media_type.endswith("+json"):
        raise InvalidEvent("invalid_cloudevent", f"{where}: {_excerpt(media_type)} is not a JSON media type")


def _decode_plain(document: object, types: EventTypes) -> DelistEvent:
    event_type: str | None = None
    if isinstance(document, dict) and types.type_field in document:
        declared = document[types.type_field]
        if not _is_text(declared):
            raise InvalidEvent("invalid_schema", f"{_excerpt(types.type_field)}: expected a non-empty string")
        event_type = declared
        if types.kind(declared) is EventKind.RELIST:
            event_id = document.get("event_id")
            if not _is_identifier(event_id, MAX_EVENT_ID_CHARS):
                raise InvalidEvent("invalid_schema", "event_id: expected a non-empty id without control characters")
            return _relist_event(event_id, document, declared, None, "json")
    if isinstance(document, dict):
        event_id, fields = document.get("event_id"), _common_fields(document)
        if fields is not None and _is_identifier(event_id, MAX_EVENT_ID_CHARS):
            return _delist_event(event_id, fields, fallback_time=None, source_format="json", event_type=event_type)
    plain = _validate(PlainDelistEvent, document, "invalid_schema")
    return _delist_event(
        plain.event_id, _Fields.of(plain), fallback_time=None, source_format="json", event_type=event_type
    )


def _decode_structured(document: object, types: EventTypes) -> DelistEvent:
    if not isinstance(document, dict):
        raise InvalidEvent(
            "invalid_cloudevent", f"value: a structured CloudEvent is a JSON object, got {_json_type(document)}"
        )
    attributes = _attributes(document)
    kind = types.kind(attributes.type)
    if attributes.datacontenttype is not None:
        _require_json_media_type(attributes.datacontenttype, "datacontenttype")
    if "data" in document and "data_base64" in document:
        raise InvalidEvent("invalid_cloudevent", "data, data_base64: both present, a CloudEvent carries one")
    if "data_base64" in document:
        data = _parse_json(_base64_data(document["data_base64"]), "data_base64")
        name = "data_base64"
    elif "data" in document:
        data, name = document["data"], "data"
    else:
        raise InvalidEvent("invalid_schema", "data: missing, the CloudEvent carries no delist fields")
    trace = _member_text(document, "traceparent"), _member_text(document, "tracestate")
    if kind is EventKind.RELIST:
        return _relist_event(
            attributes.id,
            data,
            attributes.type,
            attributes.time,
            "cloudevents-structured",
            document_name=name,
            trace=trace,
        )
    fields = _data_fields(data, document_name=name, path_prefix=f"{name}.")
    return _delist_event(
        attributes.id,
        fields,
        fallback_time=attributes.time,
        source_format="cloudevents-structured",
        event_type=attributes.type,
        trace=trace,
    )


def _member_text(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    return value if type(value) is str else None


def _base64_data(encoded: object) -> bytes:
    if not isinstance(encoded, str):
        raise InvalidEvent("invalid_cloudevent", f"data_base64: expected a base64 string, got {_json_type(encoded)}")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character
        raise InvalidEvent("invalid_cloudevent", "data_base64: not valid base64") from None


def _decode_binary(payload: bytes, headers: dict[str, str], content_type: str | None, types: EventTypes) -> DelistEvent:
    # In binary mode the content-type header is the data content type; a ce_datacontenttype header has no say.
    context: dict[str, object] = {name: text for name, text in headers.items() if name != "datacontenttype"}
    attributes = _attributes(context, path_prefix="ce_")
    kind = types.kind(attributes.type)
    if content_type is not None:
        _require_json_media_type(content_type, "content-type")
    data = _parse_json(payload, "value")
    trace = headers.get("traceparent"), headers.get("tracestate")
    if kind is EventKind.RELIST:
        return _relist_event(attributes.id, data, attributes.type, attributes.time, "cloudevents-binary", trace=trace)
    return _delist_event(
        attributes.id,
        _data_fields(data),
        fallback_time=attributes.time,
        source_format="cloudevents-binary",
        event_type=attributes.type,
        trace=trace,
    )


class _Attributes(NamedTuple):
    """The CloudEvents attributes decoding uses, once valid."""

    id: str
    type: str
    time: datetime | None
    datacontenttype: str | None


class _Fields(NamedTuple):
    """The delist fields, once valid; ``image_ids`` as sent."""

    collection_name: str
    product_id: str
    image_ids: tuple[str, ...]
    occurred_at: datetime | None

    @classmethod
    def of(cls, fields: PlainDelistEvent | DelistEventData) -> _Fields:
        return cls(fields.collection_name, fields.product_id, tuple(fields.image_ids), fields.occurred_at)


def _attributes(context: dict[str, object], *, path_prefix: str = "") -> _Attributes:
    attributes = _common_attributes(context)
    if attributes is not None:
        return attributes
    model = _validate(_CloudEventAttributes, context, "invalid_cloudevent", path_prefix=path_prefix)
    return _Attributes(model.id, model.type, model.time, model.datacontenttype)


def _data_fields(data: object, *, document_name: str = "value", path_prefix: str = "") -> _Fields:
    fields = _common_fields(data)
    if fields is not None:
        return fields
    model = _validate(DelistEventData, data, "invalid_schema", document_name=document_name, path_prefix=path_prefix)
    return _Fields.of(model)


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
"""Decoded events are copies of this one with every field replaced (see ``_delist_event``)."""


def _delist_event(
    event_id: str,
    fields: _Fields,
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
            "image_ids": _merge_duplicates(fields.image_ids),
            "occurred_at": fields.occurred_at if fields.occurred_at is not None else fallback_time,
            "source_format": source_format,
            "kind": EventKind.DELIST,
            "event_type": event_type,
            "traceparent": trace[0],
            "tracestate": trace[1],
        }
    )


def _relist_event(
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
        raise InvalidEvent("invalid_schema", f"{document_name}: expected a JSON object, got {_json_type(data)}")
    sent_images = "image_ids" in data
    checked = data if sent_images else {**data, "image_ids": ["-"]}  # the product's fields, checked as a delist's
    fields = _common_fields(checked) or _Fields.of(
        _validate(DelistEventData, checked, "invalid_schema", document_name=document_name)
    )
    event = _delist_event(
        event_id, fields, fallback_time=fallback_time, source_format=source_format, event_type=event_type, trace=trace
    )
    images = _merge_duplicates(fields.image_ids) if sent_images else ()
    return event.model_copy(update={"kind": EventKind.RELIST, "image_ids": images})


# --- the common case, checked without pydantic -------------------------------------------------------------------
#
# Nearly every event is well formed, and validating it through the models costs more than everything else in
# decoding. The checks below state the models' rules in plain Python for values as json.loads gives them. They
# answer only "certainly valid" (and then the same values the models would give) or "not sure" (None): anything
# unusual goes through the models, which decide and word the reason. tests/unit/test_events.py compares both.

_COMMON_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
"""The usual timestamp: time and offset in range, no leap second. ``datetime.fromisoformat`` reads it exactly as
``_parse_rfc3339`` does (fractions below a microsecond truncated) and refuses a date the calendar lacks."""
_SURROGATE: Final = re.compile(r"[\uD800-\uDFFF]")


def _is_identifier(value: object, max_chars: int) -> TypeGuard[str]:
    return type(value) is str and 0 < len(value) <= max_chars and _FORBIDDEN_CHARACTER.search(value) is None


def _is_text(value: object) -> TypeGuard[str]:
    # pydantic refuses a lone surrogate in a string with constraints (string_unicode)
    return type(value) is str and value != "" and _SURROGATE.search(value) is None


def _common_timestamp(value: object) -> datetime | None:
    if type(value) is not str or _COMMON_RFC3339.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):  # a day the month does not have; a moment beyond year 1..9999 in UTC
        return None


def _common_fields(data: object) -> _Fields | None:
    """``DelistEventData``'s (and ``PlainDelistEvent``'s, but the id) fields, when certainly valid."""
    if not isinstance(data, dict):
        return None
    collection, product, images = data.get("collection_name"), data.get("product_id"), data.get("image_ids")
    if not (
        _is_identifier(collection, MAX_COLLECTION_NAME_CHARS)
        and _is_identifier(product, MAX_PRODUCT_ID_CHARS)
        and type(images) is list
        and 1 <= len(images) <= MAX_IMAGES_PER_EVENT
        and all(type(image) is str and 0 < len(image) <= MAX_IMAGE_ID_CHARS for image in images)
        and _FORBIDDEN_CHARACTER.search("".join(images)) is None  # one search instead of one per id: same answer
    ):
        return None
    occurred_at = data.get("occurred_at")
    if occurred_at is not None:
        occurred_at = _common_timestamp(occurred_at)
        if occurred_at is None:
            return None
    return _Fields(collection, product, tuple(images), occurred_at)


def _common_attributes(context: dict[str, object]) -> _Attributes | None:
    """``_CloudEventAttributes``, when certainly valid."""
    event_id, time, content_type = context.get("id"), context.get("time"), context.get("datacontenttype")
    if not (
        context.get("specversion") == "1.0"
        and _is_identifier(event_id, MAX_EVENT_ID_CHARS)
        and _is_text(context.get("source"))
        and _is_text(context.get("type"))
        and (content_type is None or type(content_type) is str)
    ):
        return None
    if time is not None:
        time = _common_timestamp(time)
        if time is None:
            return None
    return _Attributes(event_id, cast("str", context["type"]), time, content_type)


# --- strict JSON -----------------------------------------------------------------------------------------------


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
                raise _NotStrictJson(f"key {_excerpt(key)} appears twice in one object")
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


def _parse_json(raw: bytes, where: str) -> object:
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


# --- readable, bounded reasons ---------------------------------------------------------------------------------

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _validate(
    model: type[_ModelT],
    document: object,
    error_class: ErrorClass,
    *,
    document_name: str = "value",
    path_prefix: str = "",
) -> _ModelT:
    """``model`` validated from ``document``; its first problem (top-level ones first) as the reason otherwise.

    A problem's field is written ``path_prefix`` + its path (``data.image_ids[3]``, ``ce_id``), or
    ``document_name`` when the document as a whole is wrong.
    """
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = sorted(error.errors(include_url=False), key=lambda problem: len(problem["loc"]))
        reason = _describe(problems[0], document_name=document_name, path_prefix=path_prefix)
        if len(problems) > 1:
            reason += f" (and {len(problems) - 1} more)"
        raise InvalidEvent(error_class, reason) from None


def _describe(problem: ErrorDetails, *, document_name: str, path_prefix: str) -> str:
    kind, given, context = problem["type"], problem["input"], problem.get("ctx", {})
    if kind == "missing":
        detail = "missing"
    elif kind == "string_type":
        detail = f"expected a string, got {_json_type(given)}"
    elif kind == "list_type":
        detail = f"expected an array of strings, got {_json_type(given)}"
    elif kind in {"model_type", "dict_type", "model_attributes_type"}:
        detail = f"expected a JSON object, got {_json_type(given)}"
    elif kind == "string_too_short":
        detail = "empty"
    elif kind == "string_too_long":
        detail = f"{_length(given)} characters, at most {context['max_length']} allowed"
    elif kind == "too_short":
        detail = f"{_length(given)} ids, at least {context['min_length']} required"
    elif kind == "too_long":
        detail = f"{_length(given)} ids, at most {context['max_length']} allowed"
    elif kind == "string_unicode":
        detail = "contains a lone surrogate, which is not Unicode text"
    elif kind == "literal_error" and isinstance(given, str):
        detail = f"{_excerpt(given)} is not supported, expected {context['expected']}"
    elif kind == "literal_error":
        detail = f"expected the string {context['expected']}, got {_json_type(given)}"
    else:
        detail = problem["msg"]  # our own messages, and pydantic's, which never quote the input
    return f"{_location(problem['loc'], document_name=document_name, path_prefix=path_prefix)}: {detail}"


def _location(loc: tuple[int | str, ...], *, document_name: str, path_prefix: str) -> str:
    if not loc:
        return document_name
    path = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in loc)
    return path_prefix + path.removeprefix(".")


def _length(given: object) -> int | str:
    return len(given) if isinstance(given, str | list | tuple) else "too many"


_JSON_TYPE_NAMES: Final = (
    (bool, "a boolean"),  # before int: a bool is an int
    (int | float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def _excerpt(text: str) -> str:
    """A short, escaped quotation of untrusted text: never the whole payload, never a raw control character."""
    return repr(text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…")


def _label(name: str) -> str:
    """A header name as written when it is short and printable, else as an excerpt."""
    return name if len(name) <= _EXCERPT_CHARS and name.isprintable() else _excerpt(name)
