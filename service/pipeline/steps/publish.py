"""Publish: what the ledger finished -> outcomes (and dead-letter copies) and invalid records' dead letters.

The ledger is the one hand-off: every turn this step takes what it finished (``Ledger.outbox``) and produces it.

Offsets never run ahead of outcomes: an event's offset becomes committable only when the broker acknowledged
every record it produced. How records reach the broker is the outlet's (``service.pipeline.outlet``): one by
one, a failed delivery produced again while the partition is held (at-least-once), or inside the producer's
transaction (exactly-once).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from service.pipeline.events import InvalidEvent
from service.pipeline.ledger import Due, Finished, Ledger, Rejected
from service.pipeline.outcomes import build_outcome, dead_letter_headers, failure_summary, outcome_headers
from service.pipeline.outlet import Outlet, Record
from service.pipeline.pending import PendingEvent, SourceRecord
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
    state: str = "catalog.imgsweep.deletions"
    """The changelog topic of the memory of deletions."""
    source: str = "imgsweep"
    dry_run: bool = False


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
    def __init__(self, *, outlet: Outlet, topics: Topics, ledger: Ledger, next_step: Step[object]) -> None:
        self._outlet = outlet
        self._topics = topics
        self._ledger = ledger
        self._next = next_step

    def submit(self, item: Due) -> None:
        if isinstance(item, Finished):
            self._outcome(item.pending)
        elif isinstance(item, Rejected):
            self._invalid(item.record, item.error)
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

    def _outcome(self, pending: PendingEvent) -> None:
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
    ) -> Record:
        headers = dead_letter_headers(
            record, error_class=error_class or reason, reason=text, at=datetime.now(UTC), trace=trace
        )
        return Record(
            topic=self._topics.dead_letters,
            key=record.key,
            value=record.value,
            headers=headers,
            kind="dead_letter",
            label=reason,
            timestamp_ms=None,
        )

    def _publish(self, source: SourceRecord, records: list[Record]) -> None:
        state = self._ledger.produced(source, len(records))
        if state is None:
            return  # revoked meanwhile: the new owner redoes the event
        for record in records:
            self._outlet.produce(state, source.offset, record)
