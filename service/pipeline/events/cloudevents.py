"""CloudEvents 1.0 over Kafka: structured mode (the envelope is the value) and binary mode (``ce_`` headers).

``decode`` tells the modes apart with ``content_type_header``, ``is_cloudevents_format`` and
``binary_attributes``, as the Kafka protocol binding says.

Only the JSON event format is supported (no batches); the event's fields are its data. Its own id is the event
id: an ``event_id`` inside the data is ignored like any unknown member (a producer that moved to a CloudEvents
SDK may keep its old body while the SDK mints the id). Its ``time`` stands in for a missing ``occurred_at``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple, cast

from pydantic import BaseModel, ConfigDict

from service.pipeline.events.errors import InvalidEvent, excerpt, json_type, label, validate
from service.pipeline.events.event_types import EventTypes
from service.pipeline.events.fields import data_fields, delist_event, is_identifier, is_text, relist_event
from service.pipeline.events.schema import MAX_EVENT_ID_CHARS, DelistEvent, EventId, NonEmptyText
from service.pipeline.events.strict_json import parse_json
from service.pipeline.events.timestamps import WireTimestamp, common_timestamp
from service.vocabulary import EventKind

__all__ = [
    "binary_attributes",
    "content_type_header",
    "decode_binary",
    "decode_structured",
    "is_cloudevents_format",
]

_CLOUDEVENTS_JSON: Final = "application/cloudevents+json"


class _CloudEventAttributes(BaseModel):
    """The CloudEvents 1.0 context attributes this consumer checks; extensions and the rest are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: EventId
    source: NonEmptyText
    type: NonEmptyText
    time: WireTimestamp = None
    datacontenttype: str | None = None


class _Attributes(NamedTuple):
    """The CloudEvents attributes decoding uses, once valid."""

    id: str
    type: str
    time: datetime | None
    datacontenttype: str | None


def _attributes(context: dict[str, object], *, path_prefix: str = "") -> _Attributes:
    attributes = _common_attributes(context)
    if attributes is not None:
        return attributes
    model = validate(_CloudEventAttributes, context, "invalid_cloudevent", path_prefix=path_prefix)
    return _Attributes(model.id, model.type, model.time, model.datacontenttype)


def _common_attributes(context: dict[str, object]) -> _Attributes | None:
    """``_CloudEventAttributes``, when certainly valid."""
    event_id, time, content_type = context.get("id"), context.get("time"), context.get("datacontenttype")
    if not (
        context.get("specversion") == "1.0"
        and is_identifier(event_id, MAX_EVENT_ID_CHARS)
        and is_text(context.get("source"))
        and is_text(context.get("type"))
        and (content_type is None or type(content_type) is str)
    ):
        return None
    if time is not None:
        time = common_timestamp(time)
        if time is None:
            return None
    return _Attributes(event_id, cast("str", context["type"]), time, content_type)


def content_type_header(headers: Sequence[tuple[str, bytes | str | None]]) -> str | None:
    content_type: str | None = None
    for key, raw in headers:
        if raw is None or key.lower() != "content-type":
            continue
        text = _header_text(key, raw)
        if content_type is not None and content_type != text:
            raise InvalidEvent("invalid_cloudevent", "content-type: header repeated with different values")
        content_type = text
    return content_type


def binary_attributes(headers: Sequence[tuple[str, bytes | str | None]]) -> dict[str, str]:
    """The ``ce_`` headers by lower-cased attribute name (prefix removed); other headers are left unread."""
    attributes: dict[str, str] = {}
    for key, raw in headers:
        name = key.lower()
        if not name.startswith("ce_"):
            continue
        if raw is None:
            raise InvalidEvent("invalid_cloudevent", f"{label(key)}: header has no value")
        text = _header_text(key, raw)
        if attributes.setdefault(name.removeprefix("ce_"), text) != text:
            raise InvalidEvent("invalid_cloudevent", f"{label(key)}: header repeated with different values")
    return attributes


def _header_text(key: str, raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent(
            "invalid_cloudevent", f"{label(key)}: header value is not valid UTF-8 (byte {error.start}: {error.reason})"
        ) from None


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def is_cloudevents_format(content_type: str) -> bool:
    """Whether the content-type announces structured mode; refuses the CloudEvents formats not supported here."""
    media_type = _media_type(content_type)
    if media_type == _CLOUDEVENTS_JSON:
        return True
    if media_type.startswith("application/cloudevents-batch"):
        raise InvalidEvent("invalid_cloudevent", "content-type: batched CloudEvents are not supported")
    if media_type.startswith("application/cloudevents"):
        raise InvalidEvent(
            "invalid_cloudevent",
            f"content-type: {excerpt(media_type)} is not supported, only {_CLOUDEVENTS_JSON}",
        )
    return False


def _require_json_media_type(content_type: str, where: str) -> None:
    media_type = _media_type(content_type)
    if media_type not in {"application/json", "text/json"} and not media_type.endswith("+json"):
        raise InvalidEvent("invalid_cloudevent", f"{where}: {excerpt(media_type)} is not a JSON media type")


def decode_structured(document: object, types: EventTypes) -> DelistEvent:
    if not isinstance(document, dict):
        raise InvalidEvent(
            "invalid_cloudevent", f"value: a structured CloudEvent is a JSON object, got {json_type(document)}"
        )
    attributes = _attributes(document)
    kind = types.kind(attributes.type)
    if attributes.datacontenttype is not None:
        _require_json_media_type(attributes.datacontenttype, "datacontenttype")
    if "data" in document and "data_base64" in document:
        raise InvalidEvent("invalid_cloudevent", "data, data_base64: both present, a CloudEvent carries one")
    if "data_base64" in document:
        data = parse_json(_base64_data(document["data_base64"]), "data_base64")
        name = "data_base64"
    elif "data" in document:
        data, name = document["data"], "data"
    else:
        raise InvalidEvent("invalid_schema", "data: missing, the CloudEvent carries no delist fields")
    trace = _member_text(document, "traceparent"), _member_text(document, "tracestate")
    if kind is EventKind.RELIST:
        return relist_event(
            attributes.id,
            data,
            attributes.type,
            attributes.time,
            "cloudevents-structured",
            document_name=name,
            trace=trace,
        )
    fields = data_fields(data, document_name=name, path_prefix=f"{name}.")
    return delist_event(
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
        raise InvalidEvent("invalid_cloudevent", f"data_base64: expected a base64 string, got {json_type(encoded)}")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character
        raise InvalidEvent("invalid_cloudevent", "data_base64: not valid base64") from None


def decode_binary(payload: bytes, headers: dict[str, str], content_type: str | None, types: EventTypes) -> DelistEvent:
    # In binary mode the content-type header is the data content type; a ce_datacontenttype header has no say.
    context: dict[str, object] = {name: text for name, text in headers.items() if name != "datacontenttype"}
    attributes = _attributes(context, path_prefix="ce_")
    kind = types.kind(attributes.type)
    if content_type is not None:
        _require_json_media_type(content_type, "content-type")
    data = parse_json(payload, "value")
    trace = headers.get("traceparent"), headers.get("tracestate")
    if kind is EventKind.RELIST:
        return relist_event(attributes.id, data, attributes.type, attributes.time, "cloudevents-binary", trace=trace)
    return delist_event(
        attributes.id,
        data_fields(data),
        fallback_time=attributes.time,
        source_format="cloudevents-binary",
        event_type=attributes.type,
        trace=trace,
    )
