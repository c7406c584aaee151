"""Decode: consumed records -> delist and relist events for the hold step; records that are not events -> the
ledger, as dead letters."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message

from service.metrics import Metrics
from service.pipeline.collections_topic import split_origin
from service.pipeline.events import DelistEvent, EventDecoder, EventTypes, InvalidEvent, OtherEventType, decode_event
from service.pipeline.halt import Halt
from service.pipeline.ledger import Ledger
from service.pipeline.outcomes import replay_of_from_headers
from service.pipeline.pending import Headers, PendingEvent, SourceRecord
from service.pipeline.poison import HandlingFailed, handling_failed
from service.pipeline.steps.abstract import MessageRejected
from service.pipeline.steps.guard import fail_record
from service.pipeline.steps.hold import Holding
from service.pipeline.trace_context import trace_context
from service.vocabulary import SkipReason

__all__ = ["DecodeStep", "EventFormat", "source_record"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventFormat:
    """How a record's value becomes an event: the decoder (plain JSON and CloudEvents, and the Schema Registry's
    wire format when one is configured) and which event types are delists and relists."""

    types: EventTypes = field(default_factory=EventTypes)
    decode: EventDecoder = decode_event

    def __call__(self, value: bytes | None, headers: Headers) -> DelistEvent:
        return self.decode(value, headers, self.types)


class DecodeStep:
    def __init__(
        self, *, next_step: Holding, ledger: Ledger, events: EventFormat, max_pending: int, halt: Halt,
        metrics: Metrics,
    ) -> None:  # fmt: skip
        self._next = next_step
        self._ledger = ledger
        self._events = events
        self._max_pending = max_pending
        self._halt = halt
        self._metrics = metrics
        self._closed = False

    def submit(self, message: Message) -> None:
        """Raises ``MessageRejected`` while ``max_pending`` events are in the pipeline (from the partitions of the
        record's account, with the collections topic): the loop keeps the record."""
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error.str(), extra={"code": str(error.code())})
                if error.fatal() or error.code() == KafkaError._FATAL:  # the consumer's fatal event: fatal() says no
                    self._halt.trip(f"Kafka consumer fatal error: {error.str()}")
            return
        record = source_record(message)
        if not self._ledger.held(record):
            return  # fetched before a revoke: the partition's new owner reads it
        if self._closed:
            raise MessageRejected
        if self._ledger.pending_beside(record.partition) >= self._max_pending:  # this account's share, if any
            self._next.press()  # the input waits: the oldest held delist goes now, its relist could not come first
            raise MessageRejected
        self._metrics.consumed(record.partition)
        if not self._ledger.admit(record):
            self._metrics.events_skipped.labels(SkipReason.ALREADY_DONE).inc()
            return
        failures = self._ledger.condemned(record)
        if failures:
            reason = f"the process stopped {failures} times while handling this record: not tried again"
            self._fail(record, HandlingFailed(reason), None)
            return
        # Any error while this record is handled (decoding it, holding or routing its event) is this record's:
        # it is dead-lettered as internal_error and the loop goes on. The mark names it if the process dies here.
        opened: list[PendingEvent] = []
        with self._ledger.handling(record):
            try:
                self._handle(record, opened)
            except Exception as failure:  # noqa: BLE001 - one record's failure is never the process's
                self._fail(record, handling_failed("decode", failure), opened[0] if opened else None, cause=failure)

    def _handle(self, record: SourceRecord, opened: list[PendingEvent]) -> None:
        try:
            event = self._events(record.value, record.headers)
        except OtherEventType:
            self._metrics.events_skipped.labels(SkipReason.OTHER_TYPE).inc()
            self._ledger.skip(record)
            return
        except InvalidEvent as invalid:
            self._metrics.invalid_event(invalid.error_class, record.partition)
            log.warning(
                "invalid event sent to the dead-letter topic: %s",
                invalid.reason,
                extra={"partition": record.partition, "offset": record.offset, "error_class": invalid.error_class},
            )
            self._ledger.reject(record, invalid)
            return
        trace = trace_context(record.headers, event.traceparent, event.tracestate)
        pending = PendingEvent(event=event, source=record, first_seen_at=datetime.now(UTC), trace=trace)
        self._ledger.open(pending)
        opened.append(pending)
        self._next.submit(pending)

    def _fail(
        self, record: SourceRecord, error: HandlingFailed, pending: PendingEvent | None, cause: Exception | None = None
    ) -> None:
        step = "decode" if cause else "restart"
        fail_record(self._ledger, self._metrics, record, error, pending, step=step, cause=cause)

    def poll(self) -> None:
        """Decoding finishes within submit: only the rest of the chain has work to move."""
        self._next.poll()

    def close(self) -> None:
        self._closed = True
        self._next.close()

    def join(self, deadline: float) -> None:
        self._next.join(deadline)

    def terminate(self) -> None:
        self._closed = True
        self._next.terminate()


def source_record(message: Message) -> SourceRecord:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a consumed message without topic, partition or offset")
    _, timestamp = message.timestamp()
    read: Headers = []
    raw = message.headers() or []
    for name, value in raw.items() if isinstance(raw, dict) else raw:
        read.append((name, value.encode() if isinstance(value, str) else value))
    origin, headers = split_origin(read)  # a record the router forwarded: where the user's record is
    return SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=_bytes(message.key()),
        value=_bytes(message.value()),
        headers=headers,
        timestamp_ms=timestamp if timestamp > 0 else None,
        replay_of=replay_of_from_headers(headers),
        origin=origin,
    )


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
