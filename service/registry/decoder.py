"""Decoding with a Schema Registry: a registry-framed record's schema is fetched (retried, bounded), the record is
decoded by confluent-kafka's deserializer for its schema type, and the result read as plain JSON (``mapping``).

Every other record goes the old way (``events.decode_event``). ``event_decoder(settings)`` is what the decode
step calls: ``decode_event`` itself while ``IMGSWEEP_SCHEMA_REGISTRY__URL`` is unset.

Failures never escape as anything but ``InvalidEvent`` (or ``OtherEventType``):

- the schema cannot be fetched (registry down or refusing, unknown id): retried ``max_attempts`` times with a
  doubling backoff, then ``schema_unavailable``; for ``unavailable_seconds`` after that, records with that id are
  dead-lettered at once, so an outage costs the poll loop one bounded wait per id, not one per record;
- the payload does not decode with its schema, or the schema's type is unknown: ``invalid_registry_record``;
- the decoded record is not a delist/relist: the plain-JSON classes (``invalid_schema``...).

The fetches block the thread that decodes (the poll loop) for at most about
``max_attempts * timeout_seconds + the backoffs``; fetched schemas are cached by the client for the process's life.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.common.serde import SchemaId
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import empty_pb2
from google.protobuf.message_factory import GetMessageClass

from service.pipeline.events import (
    DEFAULT_EVENT_TYPES,
    MAX_VALUE_BYTES,
    DelistEvent,
    EventDecoder,
    EventTypes,
    InvalidEvent,
    decode_event,
)
from service.registry.mapping import (
    SchemaType,
    event_from_document,
    is_registry_framed,
    json_document,
    message_document,
    schema_id_of,
    schema_type_of,
)
from service.settings import SchemaRegistrySettings

__all__ = ["RegistryDecoder", "event_decoder"]

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes | str | None]]


def event_decoder(settings: SchemaRegistrySettings) -> EventDecoder:
    """What decodes a consumed record: with the registry when one is configured, else ``decode_event``."""
    if not settings.enabled:
        return decode_event
    return RegistryDecoder(settings)


def _fetch_errors() -> tuple[type[BaseException], ...]:
    """What a failed fetch raises: the registry's answer, or no answer (whichever httpx the client uses)."""
    errors: list[type[BaseException]] = [SchemaRegistryError, httpx.HTTPError]
    with contextlib.suppress(ImportError):  # without httpx2, confluent-kafka uses httpx
        errors.append(importlib.import_module("httpx2").HTTPError)
    return tuple(errors)


_FETCH_ERRORS: Final = _fetch_errors()
_NOT_THE_PAYLOAD: Final[tuple[type[BaseException], ...]] = (InvalidEvent, *_FETCH_ERRORS)
_NO_SUBJECT: Final[dict[str, Any]] = {"subject.name.strategy": lambda _ctx, _record_name: None}
"""The writer's schema, by id, is all that is read: no subject lookup, no latest version, no rules."""
_PROTOBUF_CONF: Final[dict[str, Any]] = {**_NO_SUBJECT, "use.deprecated.format": False}
_SERIALIZED: Final = "serialized"
"""The format every schema is fetched in: the Protobuf deserializer needs a descriptor, and the client caches
a schema by id whatever the format, so the first fetch of an id decides it for every deserializer."""
_MAX_PROTOBUF_TYPES: Final = 256


class RegistryDecoder:
    """``decode_event`` plus the registry wire format. Not thread-safe: one decoding thread (the poll loop)."""

    def __init__(
        self,
        settings: SchemaRegistrySettings,
        *,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        topic: str = "imgsweep-input",
    ) -> None:
        self._settings = settings
        # confluent-kafka's client logs every request line at INFO through httpx2 (service.logs quiets httpx so)
        logging.getLogger("httpx2").setLevel(max(logging.WARNING, logging.getLogger("httpx2").level))
        self._client = client if client is not None else SchemaRegistryClient(settings.client_config())
        self._sleep, self._clock = sleep, clock
        self._context = SerializationContext(topic, MessageField.VALUE)
        self._avro = AvroDeserializer(self._client, conf=_NO_SUBJECT)
        self._json = JSONDeserializer(None, conf=_NO_SUBJECT, schema_registry_client=self._client)
        self._protobuf_probe = ProtobufDeserializer(
            empty_pb2.Empty, _PROTOBUF_CONF, schema_registry_client=self._client
        )
        self._protobuf: OrderedDict[tuple[int, tuple[int, ...]], Any] = OrderedDict()
        self._unavailable: dict[int, float] = {}
        """Schema ids that could not be fetched, with when they may be asked for again."""

    def __call__(
        self, value: bytes | None, headers: Headers | None, types: EventTypes = DEFAULT_EVENT_TYPES, /
    ) -> DelistEvent:
        if not is_registry_framed(value):
            return decode_event(value, headers, types)
        assert value is not None  # is_registry_framed says so  # noqa: S101
        if len(value) > MAX_VALUE_BYTES:
            raise InvalidEvent("too_large", f"value: {len(value)} bytes, at most {MAX_VALUE_BYTES} allowed")
        return event_from_document(self.document(value), headers, types)

    def document(self, value: bytes) -> object:
        """The record's JSON document; ``InvalidEvent`` (``invalid_registry_record``, ``schema_unavailable``)."""
        schema_id = schema_id_of(value)
        now = self._clock()
        until = self._unavailable.get(schema_id)
        if until is not None:
            if now < until:
                raise InvalidEvent(
                    "schema_unavailable",
                    f"schema id {schema_id}: could not be fetched from the schema registry moments ago "
                    f"(not asked again for {self._settings.unavailable_seconds:g} s)",
                )
            del self._unavailable[schema_id]
        attempts, delay = self._settings.max_attempts, self._settings.backoff_initial_seconds
        for attempt in range(1, attempts + 1):
            try:
                return self._decode(schema_id, value)
            except _FETCH_ERRORS as error:
                problem = _fetch_problem(error)
                log.warning(
                    "schema registry: schema id %d could not be fetched (attempt %d of %d): %s",
                    schema_id, attempt, attempts, problem,
                    extra={"schema_id": schema_id, "attempt": attempt},
                )  # fmt: skip
                if attempt == attempts:
                    if self._settings.unavailable_seconds > 0:
                        self._unavailable[schema_id] = self._clock() + self._settings.unavailable_seconds
                    raise InvalidEvent(
                        "schema_unavailable",
                        f"schema id {schema_id}: could not be fetched from the schema registry in {attempts} "
                        f"attempt(s): {problem}",
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, self._settings.backoff_max_seconds)
        raise AssertionError("unreachable")  # pragma: no cover

    def _decode(self, schema_id: int, value: bytes) -> object:
        schema = self._client.get_schema(schema_id, None, _SERIALIZED)
        kind = schema_type_of(schema.schema_type, schema_id)
        try:
            if kind == "PROTOBUF":
                return message_document(self._protobuf_deserializer(schema_id, schema, value)(value, self._context))
            if kind == "AVRO":
                return json_document(self._avro(value, self._context), drop_nulls=True)
            return json_document(self._json(value, self._context))
        except _NOT_THE_PAYLOAD:
            raise
        except Exception as error:  # noqa: BLE001 - whatever a deserializer raises on bytes a producer sent
            raise InvalidEvent("invalid_registry_record", _decode_problem(kind, schema_id, error)) from None

    def _protobuf_deserializer(self, schema_id: int, schema: Any, value: bytes) -> Any:
        """A ``ProtobufDeserializer`` for the record's message type, built from the registry's schema (the
        deserializer parses into the class it is given; imgsweep has no generated classes)."""
        framing = SchemaId("PROTOBUF")
        framing.from_bytes(io.BytesIO(value))
        indexes = tuple(framing.message_indexes or (0,))
        key = (schema_id, indexes)
        found = self._protobuf.get(key)
        if found is not None:
            self._protobuf.move_to_end(key)
            return found
        file_proto, pool = self._protobuf_probe._get_parsed_schema(schema)  # no public way to the writer's descriptor
        descriptor = self._protobuf_probe._get_message_desc(pool, pool.FindFileByName(file_proto.name), list(indexes))
        deserializer = ProtobufDeserializer(
            GetMessageClass(descriptor), _PROTOBUF_CONF, schema_registry_client=self._client
        )
        self._protobuf[key] = deserializer
        if len(self._protobuf) > _MAX_PROTOBUF_TYPES:
            self._protobuf.popitem(last=False)
        return deserializer


def _fetch_problem(error: BaseException) -> str:
    if isinstance(error, SchemaRegistryError):
        return f"HTTP {error.http_status_code}, registry error code {error.error_code}"
    return type(error).__name__  # a transport error's text may name hosts; its class says enough


def _decode_problem(kind: SchemaType, schema_id: int, error: Exception) -> str:
    detail = str(error).replace("\n", " ")
    excerpt = repr(detail if len(detail) <= 80 else detail[:80] + "…")
    return f"value: does not decode with its {kind} schema (id {schema_id}): {type(error).__name__} {excerpt}"
