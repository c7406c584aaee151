"""Publish: what the ledger finished -> outcomes (and dead-letter copies) and invalid records' dead letters.

The ledger is the one hand-off: every turn this step takes what it finished (``Ledger.outbox``) and produces it.

Offsets never run ahead of outcomes: an event's offset becomes committable only when the broker acknowledged
every record it produced. How records reach the broker is the outlet's (``service.pipeline.outlet``): one by
one, a failed delivery produced again while the partition is held (at-least-once), or inside the producer's
transaction (exactly-once).

One record never stops the process (docs/decisions/0018-poison-records.md). A dead-letter copy over the
producer's ``message.max.bytes`` is written with a prefix of the value (``fit_dead_letter``). A record the
producer refuses (``produce`` raises, or the broker refuses it for good: too large, invalid) is replaced by
what can be written: an outcome by the event's ``internal_error`` dead letter, a dead letter by a copy without
the value; when nothing can be written, it is logged, counted and the event counts as published. An error while
an event's outcome is built dead-letters the event as ``internal_error``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from service.kafka_clients import DEFAULT_MESSAGE_MAX_BYTES
from service.metrics import Metrics
from service.pipeline.events import InvalidEvent
from service.pipeline.ledger import Due, Finished, Ledger, Recalled, Rejected
from service.pipeline.outcomes import (
    DLQ_HEADER_PREFIX,
    TRUNCATION_HEADERS,
    build_outcome,
    dead_letter_headers,
    failure_summary,
    outcome_headers,
)
from service.pipeline.outlet import Outlet, Record
from service.pipeline.partitions import PartitionState
from service.pipeline.pending import Headers, PendingEvent, SourceRecord
from service.pipeline.poison import HandlingFailed, handling_failed
from service.pipeline.steps.abstract import Step
from service.pipeline.trace_context import record_trace_context
from service.vocabulary import DeadLetterReason, TraceContext

__all__ = ["PublishStep", "Topics", "event_ids", "fit_dead_letter"]

log = logging.getLogger(__name__)

_RECORD_OVERHEAD: Final = 1024
"""Bytes kept free below ``message.max.bytes`` for the record's framing (librdkafka counts headers its way)."""
_HEADER_OVERHEAD: Final = 10


@dataclass(frozen=True, slots=True)
class Topics:
    """Where and how outcomes are written: the topics, the outcomes' ``source``, and whether it is a dry run."""

    outcomes: str
    dead_letters: str
    state: str = "catalog.imgsweep.deletions"
    """The changelog topic of the memory of deletions."""
    source: str = "imgsweep"
    dry_run: bool = False
    max_record_bytes: int = DEFAULT_MESSAGE_MAX_BYTES
    """The producer's ``message.max.bytes``: a dead-letter copy larger than this is written truncated."""


def fit_dead_letter(
    key: bytes | None, value: bytes | None, headers: Headers, limit: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """A dead-letter copy that the producer takes whole (under ``limit``, its ``message.max.bytes``): as it is
    if it fits; else a prefix of the value, with ``TRUNCATION_HEADERS`` (and without the original headers, then
    the key, if even they do not fit). Pure."""
    budget = limit - _RECORD_OVERHEAD
    if _size(key, value, headers) <= budget:
        return key, value, headers
    data = value or b""
    cut = ["value"]
    own = [(name, data) for name, data in headers if _own(name)]
    kept = headers
    if _size(None, None, [*kept, *_truncation_headers([*cut, "headers", "key"], data)]) > budget:
        kept, cut = own, [*cut, "headers"]
    if _size(key, None, [*kept, *_truncation_headers([*cut, "key"], data)]) > budget:
        key, cut = None, [*cut, "key"]
    marked = [*kept, *_truncation_headers(cut, data)]
    room = max(0, budget - _size(key, None, marked))
    return key, data[:room], marked


def _own(name: str) -> bool:
    return name.startswith(DLQ_HEADER_PREFIX) and name not in TRUNCATION_HEADERS


def _truncation_headers(cut: list[str], data: bytes) -> Headers:
    return list(
        zip(
            TRUNCATION_HEADERS,
            (",".join(cut).encode(), str(len(data)).encode(), hashlib.sha256(data).hexdigest().encode()),
            strict=True,
        )
    )


def _size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name.encode()) + len(data or b"") + _HEADER_OVERHEAD for name, data in headers)
    )


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
        self, *, outlet: Outlet, topics: Topics, ledger: Ledger, next_step: Step[object], metrics: Metrics
    ) -> None:
        self._outlet = outlet
        self._topics = topics
        self._ledger = ledger
        self._next = next_step
        self._metrics = metrics
        outlet.on_refused(self._instead)

    def submit(self, item: Due) -> None:
        if isinstance(item, Finished):
            source = item.pending.source
            with self._ledger.handling(source):  # poison records: a process that dies here leaves the mark
                try:
                    records = self._outcome(item.pending)
                except Exception as error:  # noqa: BLE001 - one event's failure is never the process's
                    failed = handling_failed("publish", error)
                    records = [self._internal_error(source, failed, error, item.pending.trace)]
                self._publish(source, records)
        elif isinstance(item, Rejected):
            self._invalid(item.record, item.error)
        elif isinstance(item, Recalled):  # answered before its partition was lost: the same records, no call
            self._publish(item.record, list(item.records))
        else:
            change = item.record
            self._outlet.produce_state(
                Record(self._topics.state, change.key, change.value, [], "state", "deletions", None, change.partition)
            )

    def poll(self) -> None:
        """Produces what the ledger finished and serves delivery reports (acknowledgements move the commit
        watermark); then polls the commit. Never blocks."""
        self._take()
        self._outlet.poll()
        self._next.poll()

    def flush(self, deadline: float) -> None:
        """Produces what the ledger finished and waits until every record is acknowledged, or ``deadline``."""
        self._take()
        self._outlet.flush(deadline - time.monotonic())

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

    def _outcome(self, pending: PendingEvent) -> list[Record]:
        """Every image of the event is decided: its outcome, and a dead-letter copy if one failed for good."""
        outcome = build_outcome(pending, completed_at=datetime.now(UTC), dry_run=self._topics.dry_run)
        records = [
            Record(
                topic=self._topics.outcomes,
                key=pending.event.product_id.encode(),
                value=outcome.value,
                headers=outcome_headers(outcome, source=self._topics.source, trace=pending.trace),
                kind="outcome",
                label=outcome.status,
                timestamp_ms=pending.source.timestamp_ms,
                source=pending.source,
                trace=pending.trace,
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
        return records

    def _invalid(self, record: SourceRecord, error: InvalidEvent | HandlingFailed) -> None:
        """A record that is not a delist event, or whose handling failed, goes to the dead-letter topic as it came."""
        reason = DeadLetterReason.INVALID_EVENT if isinstance(error, InvalidEvent) else DeadLetterReason.INTERNAL_ERROR
        trace = record_trace_context(record.headers, record.value)
        dead_letter = self._dead_letter(record, reason, error.reason, error.error_class, trace)
        self._publish(record, [dead_letter])

    def _internal_error(
        self, record: SourceRecord, error: HandlingFailed, cause: Exception, trace: TraceContext | None
    ) -> Record:
        self._metrics.internal_errors.labels("publish").inc()
        log.error(
            "record sent to the dead-letter topic as internal_error: %s",
            error.reason,
            exc_info=cause,
            extra={"partition": record.partition, "offset": record.offset, "error_class": error.error_class},
        )
        return self._dead_letter(record, DeadLetterReason.INTERNAL_ERROR, error.reason, error.error_class, trace)

    def _dead_letter(
        self,
        record: SourceRecord,
        reason: DeadLetterReason,
        text: str,
        error_class: str | None = None,
        trace: TraceContext | None = None,
    ) -> Record:
        headers = dead_letter_headers(
            record, error_class=error_class or reason, reason=text, at=datetime.now(UTC), trace=trace
        )
        key, value, headers = fit_dead_letter(record.key, record.value, headers, self._topics.max_record_bytes)
        if value is not record.value:
            self._metrics.dead_letters_truncated.inc()
            log.warning(
                "dead letter over the producer's message.max.bytes: written with the first %d of %d bytes",
                len(value or b""),
                len(record.value or b""),
                extra={"partition": record.partition, "offset": record.offset, "reason": str(reason)},
            )
        return Record(
            topic=self._topics.dead_letters,
            key=key,
            value=value,
            headers=headers,
            kind="dead_letter",
            label=reason,
            timestamp_ms=None,
            source=record,
            trace=trace,
        )

    def _publish(self, source: SourceRecord, records: list[Record]) -> None:
        state = self._ledger.produced(source, len(records))
        if state is None:
            return  # revoked meanwhile: the new owner redoes the event
        for record in records:
            self._outlet.produce(state, source.offset, record)

    def _instead(self, state: PartitionState, offset: int, record: Record, error: str) -> Record | None:
        """The producer refused ``record`` for good: what can be written in its place (the outlet produces it),
        else None (the event then counts as published)."""
        source = record.source
        if source is None:  # a changelog record: the memory of one product, lost
            self._metrics.publish_failures.labels(record.kind, "dropped").inc()
            log.error("a changelog record could not be written: %s", error)
            return None
        ids = {"partition": source.partition, "offset": source.offset, "reason": record.kind}
        if record.kind == "outcome":
            failed = HandlingFailed(f"its outcome could not be published: {error}")
            instead = self._dead_letter(source, DeadLetterReason.INTERNAL_ERROR, failed.reason, None, record.trace)
            label = "dead_letter"
        elif not record.stripped:
            own = [(name, data) for name, data in record.headers if _own(name)]
            key, value, headers = fit_dead_letter(None, source.value, own, 0)  # imgsweep's headers only
            instead = replace(record, key=key, value=value, headers=headers, stripped=True)
            label = "truncated"
        else:
            self._metrics.publish_failures.labels(record.kind, "dropped").inc()
            log.error("a dead letter could not be written, even without its value: %s", error, extra=ids)
            if self._ledger.holds(state):
                self._ledger.acknowledged(state, offset)  # nothing will come for it: the event counts as published
            return None
        self._metrics.publish_failures.labels(record.kind, label).inc()
        log.error("the producer refused a record (%s); writing %s instead", error, label, extra=ids)
        return instead
