"""Publish: what the ledger finished -> outcomes (and dead-letter copies) and invalid records' dead letters.

The ledger is the one hand-off: every turn this step takes what it finished (``Ledger.outbox``) and produces it.

Offsets never run ahead of outcomes: an event's offset becomes committable only when the broker acknowledged
every record it produced. Delivery reports arrive in ``poll``; a failed delivery is produced again as long as
this replica still holds the partition (the same ``PartitionState``: a partition revoked and assigned again
is a new one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import KafkaError, Message, Producer

from service.metrics import Metrics
from service.pipeline.events import InvalidEvent
from service.pipeline.halt import Halt
from service.pipeline.ledger import Finished, Ledger, Rejected
from service.pipeline.outcomes import build_outcome, dead_letter_headers, failure_summary, outcome_headers
from service.pipeline.partitions import PartitionState
from service.pipeline.pending import Headers, PendingEvent, SourceRecord
from service.pipeline.steps.abstract import Step
from service.pipeline.trace_context import record_trace_context
from service.vocabulary import DeadLetterReason, TraceContext

__all__ = ["PublishStep", "Topics", "event_ids"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Topics:
    """Where and how outcomes are written: the topics, the outcomes' ``source``, and whether it is a dry run."""

    outcomes: str
    dead_letters: str
    source: str = "imgsweep"
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    kind: Literal["outcome", "dead_letter"]
    label: str
    timestamp_ms: int | None


def event_ids(pending: PendingEvent) -> dict[str, object]:
    """The ids a line about one event carries: the event, its product and collection, its record, its trace."""
    event, source = pending.event, pending.source
    return {
        "event_id": event.event_id,
        "product_id": event.product_id,
        "collection": event.collection_name,
        "partition": source.partition,
        "offset": source.offset,
        "trace_id": None if pending.trace is None else pending.trace.traceparent[3:35],
    }


class PublishStep:
    def __init__(
        self, *, producer: Producer, topics: Topics, ledger: Ledger, next_step: Step[object], halt: Halt,
        metrics: Metrics,
    ) -> None:  # fmt: skip
        self._producer = producer
        self._topics = topics
        self._ledger = ledger
        self._next = next_step
        self._halt = halt
        self._metrics = metrics

    def submit(self, item: Finished | Rejected) -> None:
        if isinstance(item, Finished):
            self._outcome(item.pending)
        else:
            self._invalid(item.record, item.error)

    def poll(self) -> None:
        """Produces what the ledger finished and serves delivery reports (acknowledgements move the commit
        watermark); then polls the commit. Never blocks."""
        self._take()
        self._producer.poll(0)
        self._next.poll()

    def flush(self, deadline: float) -> None:
        """Produces what the ledger finished and waits until every record is acknowledged, or ``deadline``."""
        self._take()
        self._producer.flush(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._next.close()

    def join(self, deadline: float) -> None:
        self.flush(deadline)
        self._next.join(deadline)

    def terminate(self) -> None:
        self._next.terminate()

    def _take(self) -> None:
        for item in self._ledger.outbox():
            self.submit(item)

    def _outcome(self, pending: PendingEvent) -> None:
        """Every image of the event is decided: its outcome, and a dead-letter copy if one failed for good."""
        outcome = build_outcome(pending, completed_at=datetime.now(UTC), dry_run=self._topics.dry_run)
        records = [
            _Record(
                topic=self._topics.outcomes,
                key=pending.event.product_id.encode(),
                value=outcome.value,
                headers=outcome_headers(outcome, source=self._topics.source, trace=pending.trace),
                kind="outcome",
                label=outcome.status,
                timestamp_ms=pending.source.timestamp_ms,
            )
        ]
        if pending.dead_letter_reason is not None:
            reason = DeadLetterReason(pending.dead_letter_reason)
            summary = failure_summary(pending)
            records.append(self._dead_letter(pending.source, reason, summary, trace=pending.trace))
            log.warning(
                "event failed for good, sent to the dead-letter topic: %s",
                summary,
                extra={**event_ids(pending), "reason": str(reason), "status": outcome.status},
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("outcome published", extra={**event_ids(pending), "status": outcome.status})
        self._publish(pending.source, records)

    def _invalid(self, record: SourceRecord, error: InvalidEvent) -> None:
        """A record that is not a delist event goes to the dead-letter topic as it came."""
        trace = record_trace_context(record.headers, record.value)
        dead_letter = self._dead_letter(record, DeadLetterReason.INVALID_EVENT, error.reason, error.error_class, trace)
        self._publish(record, [dead_letter])

    def _dead_letter(
        self,
        record: SourceRecord,
        reason: DeadLetterReason,
        text: str,
        error_class: str | None = None,
        trace: TraceContext | None = None,
    ) -> _Record:
        headers = dead_letter_headers(
            record, error_class=error_class or reason, reason=text, at=datetime.now(UTC), trace=trace
        )
        return _Record(
            topic=self._topics.dead_letters,
            key=record.key,
            value=record.value,
            headers=headers,
            kind="dead_letter",
            label=reason,
            timestamp_ms=None,
        )

    def _publish(self, source: SourceRecord, records: list[_Record]) -> None:
        state = self._ledger.produced(source, len(records))
        if state is None:
            return  # revoked meanwhile: the new owner redoes the event
        for record in records:
            self._produce(state, source.offset, record)

    def _produce(self, state: PartitionState, offset: int, record: _Record) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            self._delivered(state, offset, record, error)

        while True:
            try:
                self._producer.produce(
                    record.topic, value=record.value, key=record.key, headers=[*record.headers], on_delivery=delivered
                )
            except BufferError:  # the producer's queue is full: let it deliver, then try again
                self._producer.poll(0.1)
            else:
                return

    def _delivered(self, state: PartitionState, offset: int, record: _Record, error: KafkaError | None) -> None:
        held = self._ledger.holds(state)
        if error is not None:
            if error.fatal():
                self._halt.trip(f"Kafka producer fatal error: {error.str()}")
                return
            log.warning(
                "publishing failed, trying again: %s", error.str(), extra={"partition": state.number, "offset": offset}
            )
            if held:
                self._produce(state, offset, record)
            return
        if not held:
            return  # the partition was revoked meanwhile; the new owner redoes the event
        self._ledger.acknowledged(state, offset)
        if record.kind == "outcome":
            self._metrics.outcomes.labels(record.label).inc()
            if record.timestamp_ms is not None:
                self._metrics.end_to_end_latency.observe(max(0.0, time.time() - record.timestamp_ms / 1000))
        else:
            self._metrics.dead_letters.labels(record.label).inc()
