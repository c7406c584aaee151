"""One Kafka message to one event: which wire form it is, told apart the way the CloudEvents Kafka binding says."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from service.pipeline.events.cloudevents import (
    binary_attributes,
    content_type_header,
    decode_binary,
    decode_structured,
    is_cloudevents_format,
)
from service.pipeline.events.errors import InvalidEvent
from service.pipeline.events.event_types import DEFAULT_EVENT_TYPES, EventTypes
from service.pipeline.events.plain import decode_plain
from service.pipeline.events.schema import DelistEvent
from service.pipeline.events.strict_json import parse_json

__all__ = ["MAX_VALUE_BYTES", "EventDecoder", "decode_event"]

MAX_VALUE_BYTES: Final = 1024 * 1024


class EventDecoder(Protocol):
    """What turns a record's value and headers into an event: ``decode_event``, or one that reads another wire
    format first (``service.registry``: the Schema Registry's) and hands the rest to it."""

    def __call__(
        self,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | str | None]] | None,
        types: EventTypes = DEFAULT_EVENT_TYPES,
        /,
    ) -> DelistEvent: ...


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
    content_type = content_type_header(headers)
    if content_type is not None and is_cloudevents_format(content_type):
        return decode_structured(parse_json(payload, "value"), types)
    attributes = binary_attributes(headers)
    if attributes:
        return decode_binary(payload, attributes, content_type, types)
    document = parse_json(payload, "value")
    if isinstance(document, dict) and "specversion" in document:
        return decode_structured(document, types)
    return decode_plain(document, types)


def _bounded_value(value: bytes | None) -> bytes:
    if not value:
        raise InvalidEvent("empty_value", "value: empty (null or zero bytes), there is no event to decode")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidEvent("too_large", f"value: {len(value)} bytes, at most {MAX_VALUE_BYTES} allowed")
    return value
