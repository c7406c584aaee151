"""Exactly-once: outcomes, dead letters and the input's offsets written in one Kafka transaction.

Kafka Streams' exactly-once v2 for a Python consumer (KIP-447): one transactional producer per replica, its
``transactional.id`` the group instance id's (the chart's pod name), so a restarted pod fences its predecessor
and aborts its open transaction at once (``init_transactions``); the offsets go into the transaction with the
consumer's group metadata (``send_offsets_to_transaction``), so a zombie whose partitions were taken cannot
commit. A ``read_committed`` reader of the outcome topic sees each event's outcome once, whatever crashes.

The open transaction keeps every record it carries (``_Entry``): an abortable error (a failed delivery, a commit
the broker refused) aborts it and produces the same records again in the next one, so a call's answer in hand
is never asked of the API again. A fatal error (fenced by a newer producer with the same id, or the producer's
own fatal state) trips the halt for an exit: the process ends and Kubernetes starts a fresh one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from service.metrics import Metrics
from service.pipeline.halt import Halt
from service.pipeline.ledger import Ledger
from service.pipeline.outlet import REFUSED_FOR_GOOD, Acked, Record, Refused, produce_now
from service.pipeline.partitions import PartitionState
from service.vocabulary import AbortReason

__all__ = ["INIT_TIMEOUT_SECONDS", "Transaction"]

log = logging.getLogger(__name__)

INIT_TIMEOUT_SECONDS: Final = 30.0
"""``init_transactions`` at start: fences the previous producer of the same id and aborts its transaction."""


@dataclass(eq=False, slots=True)
class _Entry:
    """A record of the open transaction, kept until it commits: an event's (``state``, ``offset``), or a
    changelog record (``state`` None: no offset waits for it)."""

    state: PartitionState | None
    offset: int
    record: Record
    acked: bool = False


class Transaction:
    """The producer's transactions, one open at a time: what it carries, and its commit with the offsets."""

    def __init__(
        self, producer: Producer, consumer: Consumer, *, ledger: Ledger, acked: Acked, halt: Halt, metrics: Metrics
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        self._ledger = ledger
        self._acked = acked
        self._halt = halt
        self._metrics = metrics
        self._entries: list[_Entry] = []
        self._open = False
        self._failed: str | None = None
        """An error that dooms the open transaction (a failed delivery): it is aborted and produced again."""
        self._generation = 0
        """Counts aborts: a delivery report of a record sent before the last abort is of no transaction now."""
        self._refused: Refused = lambda _state, _offset, _record, _error: None

    def start(self, timeout: float = INIT_TIMEOUT_SECONDS) -> None:
        """Fences an earlier producer of the same ``transactional.id`` and aborts its open transaction. Blocks."""
        self._producer.init_transactions(timeout)

    # ---- the outlet (``service.pipeline.outlet.Outlet``) ----------------------------------------------------

    def on_refused(self, refused: Refused) -> None:
        self._refused = refused

    def produce(self, state: PartitionState, offset: int, record: Record) -> None:
        entry = _Entry(state, offset, record)
        self._entries.append(entry)
        self._send(entry)

    def produce_state(self, record: Record) -> None:
        entry = _Entry(None, -1, record)
        self._entries.append(entry)
        self._send(entry)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float) -> None:
        self._producer.flush(max(0.0, timeout))

    # ---- the checkpoint (``service.pipeline.steps.commit.TransactionStep``) ---------------------------------

    def delivered(self, timeout: float) -> bool:
        """Waits up to ``timeout`` for the open transaction's records; True once all are acknowledged (their
        events' offsets then are committable). A failed delivery aborts the transaction and sends its records
        again: False until they are delivered."""
        if self._halt.exit:
            return False
        if self._producer.flush(max(0.0, timeout)) > 0:
            return False
        if self._failed is not None:
            self._abort(AbortReason.DELIVERY_FAILED, self._failed)
            return False
        return True

    def commit(self, offsets: Sequence[TopicPartition]) -> bool:
        """The offsets into the open transaction (beginning one if none is open), then its commit. Blocks for
        the broker (a few milliseconds on a healthy cluster). True if committed, or nothing to commit."""
        if self._halt.exit or (not offsets and not self._open):
            return not self._halt.exit
        started = time.monotonic()
        try:
            self._begin()
            if offsets:
                self._producer.send_offsets_to_transaction(list(offsets), self._consumer.consumer_group_metadata())
            self._producer.commit_transaction()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if self._fatal(error):
                return False
            self._abort(AbortReason.COMMIT_FAILED, error.str())  # retriable or abortable alike: a clean restart
            return False
        self._metrics.transaction_commit_seconds.observe(time.monotonic() - started)
        self._metrics.transaction_commits.inc()
        self._open = False
        self._entries.clear()
        return True

    def dropped(self) -> None:
        """Partitions were lost: records of theirs in the open transaction must not commit (their next owner
        publishes them); the transaction is aborted and the rest produced again."""
        if any(not self._held(entry) for entry in self._entries):
            self._abort(AbortReason.PARTITIONS_LOST, "partitions lost")

    # ---- the transaction's states ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open = True

    def _send(self, entry: _Entry) -> None:
        generation = self._generation

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if generation == self._generation:  # else purged or discarded by an abort: sent again since
                self._delivered(entry, error)

        self._begin()
        refusal = produce_now(self._producer, entry.record, delivered)
        if refusal is None:
            return
        if isinstance(refusal, KafkaError) and self._fatal(refusal):
            return
        self._replace(entry, refusal.str() if isinstance(refusal, KafkaError) else refusal)
        if entry in self._entries:
            self._send(entry)

    def _delivered(self, entry: _Entry, error: KafkaError | None) -> None:
        if error is not None:
            if self._fatal(error):
                return
            if error.code() in REFUSED_FOR_GOOD:  # producing it again cannot help: what replaces it goes next time
                self._replace(entry, error.str())
            self._failed = self._failed or error.str()
            return
        if entry.state is not None and not entry.acked and self._ledger.holds(entry.state):
            entry.acked = True
            self._acked(entry.state, entry.offset, entry.record)

    def _abort(self, reason: AbortReason, cause: str) -> None:
        """Aborts the open transaction; what it carried for partitions still held is produced again."""
        log.warning("transaction aborted, its records are produced again: %s", cause, extra={"reason": str(reason)})
        try:
            self._producer.abort_transaction()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not self._fatal(error):
                log.warning("aborting the transaction failed, trying again: %s", error.str())
            return
        self._metrics.transaction_aborts.labels(reason).inc()
        self._open, self._failed = False, None
        self._generation += 1
        self._entries = [entry for entry in self._entries if self._held(entry)]
        for entry in self._entries:
            self._send(entry)

    def _replace(self, entry: _Entry, error: str) -> None:
        """A record refused for good: what the publish step writes in its place, or nothing."""
        instead = None if entry.state is None else self._refused(entry.state, entry.offset, entry.record, error)
        if instead is None:
            self._entries = [other for other in self._entries if other is not entry]
        else:
            entry.record = instead

    def _held(self, entry: _Entry) -> bool:
        if entry.state is not None:
            return self._ledger.holds(entry.state)
        return entry.record.partition is not None and self._ledger.get(entry.record.partition) is not None

    def _fatal(self, error: KafkaError) -> bool:
        """A fenced or fatally failed producer can do nothing more: the process exits for a fresh one."""
        if not (error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)):
            return False
        self._halt.trip(f"Kafka producer fatal error in its transaction: {error.str()}", exit=True)
        return True
