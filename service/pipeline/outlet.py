"""The outlet: how the publish step's records reach Kafka, and when an event's offset may be committed.

Two ways, one interface (``Outlet``), chosen by ``IMGSWEEP_KAFKA__DELIVERY``:

- ``Acknowledged`` (at-least-once): each record is produced on its own; the broker's acknowledgement makes its
  event's offset committable, and the consumer commits the offsets after them (``CommitStep``). A crash between
  the two publishes the outcomes again.
- ``service.pipeline.transaction.Transaction`` (exactly-once): records are produced inside the producer's
  transaction, and the offsets go into the same transaction; a ``read_committed`` reader sees each outcome once.

Either way ``acked`` is called once per record, on the poll loop's thread (librdkafka serves delivery reports in
``poll``/``flush``), and never for a partition no longer held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from service.metrics import Metrics
from service.pipeline.halt import Halt
from service.pipeline.ledger import Ledger
from service.pipeline.partitions import PartitionState
from service.pipeline.records import Record
from service.pipeline.topic_wait import MISSING, TopicWait

__all__ = ["REFUSED_FOR_GOOD", "Acked", "Acknowledged", "Delivered", "Outlet", "Record", "Refused", "produce_now"]

log = logging.getLogger(__name__)

Acked = Callable[[PartitionState, int, Record], None]
"""Called once a record of the event at (partition, offset) is acknowledged."""
Refused = Callable[[PartitionState, int, Record, str], Record | None]
"""Called when the producer refuses a record for good: what to write in its place, or None (nothing)."""

REFUSED_FOR_GOOD: Final = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError._INVALID_ARG,
    }
)
"""Errors about the record itself (delivery reports', or ``produce``'s: ``_INVALID_ARG``): producing it again
cannot help. Any other refusal is the producer's or the cluster's (``_STATE`` during an abort, a full or unknown
partition): the record is produced again, never replaced by a dead letter."""


class Delivered:
    """What an acknowledged record means: its event's offset may move on, and it is counted."""

    def __init__(self, ledger: Ledger, metrics: Metrics) -> None:
        self._ledger = ledger
        self._metrics = metrics

    def __call__(self, state: PartitionState, offset: int, record: Record) -> None:
        self._ledger.acknowledged(state, offset)
        if record.kind == "outcome":
            self._metrics.outcome_acknowledged(record.label, state.number)
            if record.timestamp_ms is not None:
                self._metrics.end_to_end_latency.observe(max(0.0, time.time() - record.timestamp_ms / 1000))
        else:
            self._metrics.dead_letters.labels(record.label).inc()


class Outlet(Protocol):
    def on_refused(self, refused: Refused) -> None:
        """Who says what to write instead of a record the producer refuses for good (the publish step)."""

    def produce(self, state: PartitionState, offset: int, record: Record) -> None:
        """Hands one record to the producer. Never blocks for long (a full queue is served, then retried)."""

    def produce_state(self, record: Record) -> None:
        """Hands one record of the state kept on Kafka (a changelog record) to the producer: with the outcomes'
        transaction (exactly-once), else on its own; no offset waits for it."""

    def poll(self) -> None:
        """Serves delivery reports. Never blocks."""

    def flush(self, timeout: float) -> None:
        """Waits up to ``timeout`` for every record to be delivered."""

    @property
    def missing_topics(self) -> frozenset[str]:
        """Topics that are gone, their records waiting for them (``TopicWait``)."""


def produce_now(
    producer: Producer, record: Record, delivered: Callable[[KafkaError | None, Message], None]
) -> KafkaError | str | None:
    """``produce``, serving delivery reports while the producer's queue is full. Returns why the producer refused
    the record (its ``KafkaError``, or the error's text), None when it took it."""
    while True:
        try:
            if record.partition is None:
                producer.produce(
                    record.topic, value=record.value, key=record.key, headers=[*record.headers], on_delivery=delivered
                )
            else:
                producer.produce(
                    record.topic, value=record.value, key=record.key, partition=record.partition, on_delivery=delivered
                )
        except BufferError:  # the producer's queue is full: let it deliver, then try again
            producer.poll(0.1)
        except Exception as error:  # noqa: BLE001 - this record's refusal, not the process's
            cause = error.args[0] if isinstance(error, KafkaException) and error.args else None
            return cause if isinstance(cause, KafkaError) else str(error)
        else:
            return None


class Acknowledged:
    """At-least-once: a record's acknowledgement makes its event committable; a failed delivery is produced
    again while this replica still holds the partition; a record for a topic that is gone waits for it
    (``TopicWait``), never dead-lettered for it."""

    def __init__(self, producer: Producer, *, held: Callable[[PartitionState], bool], acked: Acked, halt: Halt) -> None:
        self._producer = producer
        self._held = held
        self._acked = acked
        self._halt = halt
        self._refused: Refused = lambda _state, _offset, _record, _error: None
        self._missing = TopicWait[tuple[PartitionState, int, Record]](lambda item: item[2].topic)
        self._again: list[tuple[PartitionState, int, Record]] = []
        """Records the producer refused for a reason of its own: produced again at the next ``poll``."""

    def on_refused(self, refused: Refused) -> None:
        self._refused = refused

    def produce(self, state: PartitionState, offset: int, record: Record) -> None:
        if self._missing.holds(record.topic):  # behind the records waiting for it
            self._missing.hold((state, offset, record), "")
            return

        def delivered(error: KafkaError | None, _message: Message) -> None:
            self._delivered(state, offset, record, error)

        refusal = produce_now(self._producer, record, delivered)
        if refusal is not None:
            self._refuse(state, offset, record, refusal)

    def _refuse(self, state: PartitionState, offset: int, record: Record, refusal: KafkaError | str) -> None:
        if isinstance(refusal, KafkaError) and refusal.fatal():
            self._halt.trip(f"Kafka producer fatal error: {refusal.str()}")
            return
        if isinstance(refusal, KafkaError) and refusal.code() in MISSING:  # the topic is gone: the record waits
            self._missing.hold((state, offset, record), refusal.str())
            return
        if isinstance(refusal, KafkaError) and refusal.code() not in REFUSED_FOR_GOOD:  # not the record's fault
            if not self._again:
                log.warning("the producer refused a record, trying again: %s", refusal.str())
            self._again.append((state, offset, record))
            return
        instead = self._refused(state, offset, record, refusal.str() if isinstance(refusal, KafkaError) else refusal)
        if instead is not None:
            self.produce(state, offset, instead)

    def produce_state(self, record: Record) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None and not error.fatal() and record.partition is not None:
                log.warning("a changelog record failed, trying again: %s", error.str())
                produce_now(self._producer, record, delivered)

        if produce_now(self._producer, record, delivered) is not None:
            log.error("a changelog record was refused by the producer; its product's memory is lost")

    @property
    def missing_topics(self) -> frozenset[str]:
        return self._missing.topics

    def poll(self) -> None:
        self._producer.poll(0)
        again, self._again = self._again, []
        for state, offset, record in [*again, *self._missing.back(self._producer)]:
            if self._held(state):
                self.produce(state, offset, record)

    def flush(self, timeout: float) -> None:
        self._producer.flush(max(0.0, timeout))

    def _delivered(self, state: PartitionState, offset: int, record: Record, error: KafkaError | None) -> None:
        held = self._held(state)
        if error is not None:
            if error.fatal():
                self._halt.trip(f"Kafka producer fatal error: {error.str()}")
                return
            if error.code() in REFUSED_FOR_GOOD and held:
                self._refuse(state, offset, record, error)
                return
            log.warning(
                "publishing failed, trying again: %s", error.str(), extra={"partition": state.number, "offset": offset}
            )
            if held:
                self.produce(state, offset, record)
            return
        if held:  # else the partition was revoked meanwhile; the new owner redoes the event
            self._acked(state, offset, record)
