"""Decode: consumed records -> delist events for the batch step; records that are not events -> dead letters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message

from service.metrics import Metrics
from service.pipeline.events import EventTypes, InvalidEvent, OtherEventType, decode_event
from service.pipeline.halt import Halt
from service.pipeline.outcomes import replay_of_from_headers
from service.pipeline.partitions import Partitions
from service.pipeline.pending import Headers, PendingEvent, SourceRecord
from service.pipeline.reasons import SkipReason
from service.pipeline.steps.abstract import MessageRejected, Step
from service.pipeline.trace_context import trace_context
from service.registry.decoder import EventDecoder

__all__ = ["DecodeStep", "source_record"]

log = logging.getLogger(__name__)


class DecodeStep:
    def __init__(
        self,
        *,
        topic: str,
        partitions: Partitions,
        events: Step[PendingEvent],
        invalid: Callable[[SourceRecord, InvalidEvent], None],
        types: EventTypes,
        max_pending: int,
        halt: Halt,
        metrics: Metrics,
        decode: EventDecoder = decode_event,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._events = events
        self._invalid = invalid
        self._types = types
        self._max_pending = max_pending
        self._halt = halt
        self._metrics = metrics
        self._decode = decode  # decode_event, or with the Schema Registry (service.registry.decoder)

    def submit(self, message: Message) -> None:
        """Raises ``MessageRejected`` while ``max_pending`` events are in the pipeline: the loop keeps the record."""
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error.str(), extra={"code": str(error.code())})
                if error.fatal() or error.code() == KafkaError._FATAL:  # the consumer's fatal event: fatal() says no
                    self._halt.trip(f"Kafka consumer fatal error: {error.str()}")
            return
        record = source_record(message)
        state = self._partitions.get(record.partition)
        if state is None or record.topic != self._topic:
            return  # fetched before a revoke: the partition's new owner reads it
        if self._partitions.pending_events() >= self._max_pending:
            raise MessageRejected
        self._metrics.events_consumed.inc()
        state.consumed(record.offset, record.timestamp_ms)
        if state.already_done(record.offset):
            self._metrics.events_skipped.labels(SkipReason.ALREADY_DONE).inc()
            return
        state.offsets.track(record.offset)
        try:
            event = self._decode(record.value, record.headers, self._types)
        except OtherEventType:
            self._metrics.events_skipped.labels(SkipReason.OTHER_TYPE).inc()
            state.offsets.published(record.offset, 0)
            return
        except InvalidEvent as invalid:
            self._metrics.invalid_event(invalid.error_class)
            log.warning(
                "invalid event sent to the dead-letter topic: %s",
                invalid.reason,
                extra={"partition": record.partition, "offset": record.offset, "error_class": invalid.error_class},
            )
            self._invalid(record, invalid)
            return
        trace = trace_context(record.headers, event.traceparent, event.tracestate)
        pending = PendingEvent(event=event, source=record, first_seen_at=datetime.now(UTC), trace=trace)
        self._partitions.add(pending)
        self._events.submit(pending)

    def poll(self) -> None:
        pass  # decoding finishes within submit

    def join(self, deadline: float) -> None:
        pass


def source_record(message: Message) -> SourceRecord:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a consumed message without topic, partition or offset")
    _, timestamp = message.timestamp()
    headers: Headers = []
    raw = message.headers() or []
    for name, value in raw.items() if isinstance(raw, dict) else raw:
        headers.append((name, value.encode() if isinstance(value, str) else value))
    return SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=_bytes(message.key()),
        value=_bytes(message.value()),
        headers=headers,
        timestamp_ms=timestamp if timestamp > 0 else None,
        replay_of=replay_of_from_headers(headers),
    )


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
