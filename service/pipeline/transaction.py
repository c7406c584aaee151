"""Exactly-once: outcomes, dead letters and the input's offsets written in one Kafka transaction.

Kafka Streams' exactly-once v2 for a Python consumer (KIP-447): one transactional producer per replica, its
``transactional.id`` the group instance id's (the chart's pod name), so a restarted pod fences its predecessor
and aborts its open transaction at once (``init_transactions``); the offsets go into the transaction with the
consumer's group metadata (``send_offsets_to_transaction``), so a zombie whose partitions were taken cannot
commit. A ``read_committed`` reader of the outcome topic sees each event's outcome once, whatever crashes.

The open transaction keeps every record it carries (``_Entry``): an abortable error (a failed delivery, a commit
the broker refused) aborts it and produces the same records again in the next one, so a call's answer in hand
is never asked of the API again. A fatal error (fenced by a newer producer with the same id, or the producer's
own fatal state) trips the halt for an exit: the process ends and Kubernetes starts a fresh one. Any other fatal
error (librdkafka's, e.g. an abort refused after an output topic was deleted) gives the transaction a new producer
with the same ``transactional.id`` (``ProducerRenewal``): the records kept go into its first transaction, and
nothing the API answered is asked again.

The commit does not stop the poll loop (``begin_commit``, ``settle``): the transaction is closed first (records
handed over from then on wait, in order, for the next one), its records' acknowledgements are awaited turn by
turn, then the offsets are sent and the transaction committed on a thread of its own (``InFlight``) while the
loop goes on reading records and starting calls; once it is over the waiting records open the next transaction.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from service.metrics import Metrics
from service.pipeline.halt import Halt
from service.pipeline.inflight import InFlight
from service.pipeline.ledger import Ledger
from service.pipeline.outlet import REFUSED_FOR_GOOD, Acked, Record, Refused, produce_now
from service.pipeline.partitions import PartitionState
from service.pipeline.renewal import INIT_TIMEOUT_SECONDS, ProducerRenewal, fenced
from service.pipeline.topic_wait import MISSING, TopicWait
from service.vocabulary import AbortReason

__all__ = ["INIT_TIMEOUT_SECONDS", "STUCK_SECONDS", "Transaction"]

log = logging.getLogger(__name__)

STUCK_SECONDS: Final = 10.0
"""A third of ``transaction.timeout.ms``'s default (30 s): see ``Transaction``'s ``stuck_seconds``."""
SWITCH_INTERVAL_SECONDS: Final = 0.001
"""How long a thread may keep the GIL while another waits for it (Python's default: 5 ms)."""


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
        self, producer: Producer, consumer: Consumer, *, ledger: Ledger, acked: Acked, halt: Halt, metrics: Metrics,
        wake: threading.Event | None = None, renew: Callable[[], Producer] | None = None,
        stuck_seconds: float = STUCK_SECONDS,
    ) -> None:  # fmt: skip
        """``wake``: set when a commit is over, so that the loop turns at once to open the next transaction;
        ``renew``: makes a producer like this one, to take over from one librdkafka made fatal (None: exit);
        ``stuck_seconds``: a transaction whose records are not all delivered this long after it began is aborted
        (well before ``transaction.timeout.ms``, after which the coordinator aborts it and fences the producer)."""
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
        self._wake = wake or threading.Event()
        self._closed = False
        """Between ``close`` and the end of the commit: records handed over wait in ``_waiting``."""
        self._waiting: list[_Entry] = []
        self._committing: InFlight[KafkaError | None] | None = None
        self._renewal = None if renew is None else ProducerRenewal(renew, finished=self._wake.set)
        self._missing = TopicWait[_Entry](lambda entry: entry.record.topic, wake=self._wake.set)
        """Records for topics that are gone: kept until the metadata shows them again."""
        self._suspect: set[str] = set()
        """Topics a delivery failed for since the last abort: their records wait in ``_missing`` after it."""
        self._stuck = stuck_seconds
        self._began = 0.0

    @property
    def closed(self) -> bool:
        """Closed for a commit: acknowledgements awaited, or the commit under way."""
        return self._closed

    @property
    def committing(self) -> bool:
        return self._committing is not None

    @property
    def missing_topics(self) -> frozenset[str]:
        """Topics that are gone, their records waiting (``TopicWait``)."""
        return self._missing.topics

    @property
    def carrying(self) -> bool:
        """Whether the open transaction holds records (they wait for its close)."""
        return bool(self._entries)

    def start(self, timeout: float = INIT_TIMEOUT_SECONDS) -> None:
        """Fences an earlier producer of the same ``transactional.id`` and aborts its open transaction. Blocks.

        Also shortens the interpreter's switch interval (``SWITCH_INTERVAL_SECONDS``): the commit's thread needs
        the GIL back after each of its librdkafka calls, and with the default 5 ms a busy loop made a 6 ms commit
        take 30 ms (median; 11 ms with 1 ms)."""
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        self._producer.init_transactions(timeout)

    # ---- the outlet (``service.pipeline.outlet.Outlet``) ----------------------------------------------------

    def on_refused(self, refused: Refused) -> None:
        self._refused = refused

    def produce(self, state: PartitionState, offset: int, record: Record) -> None:
        self._add(_Entry(state, offset, record))

    def produce_state(self, record: Record) -> None:
        self._add(_Entry(None, -1, record))

    def poll(self) -> None:
        if self._ready():
            self._producer.poll(0)
            if not self._closed:
                for entry in self._missing.back(self._producer):
                    self._add(entry)

    def flush(self, timeout: float) -> None:
        if self._ready():
            self._producer.flush(max(0.0, timeout))

    # ---- the checkpoint (``service.pipeline.steps.commit.TransactionStep``) ---------------------------------

    def close(self) -> None:
        """Records handed over from now on wait for the next transaction: this one's can then all be
        acknowledged, so that the offsets sent with it cover every record it carries."""
        self._closed = True

    def delivered(self, timeout: float) -> bool:
        """Waits up to ``timeout`` (0: not at all) for the open transaction's records; True once all are
        acknowledged (their events' offsets then are committable). A failed delivery aborts the transaction and
        sends its records again: False until they are delivered."""
        if self._halt.exit or not self._ready():
            return False
        self._producer.poll(0)  # the acknowledgements that came (``flush`` of 0 s serves none)
        if self._producer.flush(max(0.0, timeout)) > 0 or self._renewing:  # (a report may have made it fatal)
            if self._open and not self._renewing and time.monotonic() - self._began > self._stuck:
                self._suspect.update(entry.record.topic for entry in self._entries)
                self._abort(AbortReason.DELIVERY_FAILED, f"records not delivered after {self._stuck:.0f} s")
            return False
        if self._failed is not None:
            self._abort(AbortReason.DELIVERY_FAILED, self._failed)
            return False
        return True

    def begin_commit(self, offsets: Sequence[TopicPartition]) -> None:
        """The offsets into the open transaction (beginning one if none is open), then its commit, on a thread
        of its own: the loop goes on; ``settle`` reads the outcome. Nothing to commit: the transaction reopens."""
        self.settle(None)  # one commit at a time
        self._closed = True
        if self._halt.exit or (not offsets and not self._open):
            self.reopen()
            return
        self._begin()
        metadata = self._consumer.consumer_group_metadata() if offsets else None
        producer = self._producer

        def commit() -> KafkaError | None:
            try:
                if offsets:
                    producer.send_offsets_to_transaction(list(offsets), metadata)
                producer.commit_transaction()
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                return error
            return None

        self._committing = InFlight(commit, finished=self._wake.set)

    def settle(self, timeout: float | None = 0.0) -> bool | None:
        """The outcome of the commit under way, once it is over (waits up to ``timeout``; None: forever): True
        committed, False failed (aborted and produced again, or fatal); None while it is still under way or when
        none is. The records that waited then open the next transaction."""
        committing = self._committing
        if committing is None or not committing.wait(timeout):
            return None
        self._committing = None
        error = committing.result()
        if error is not None:
            # Fatal here ends the process even without a fence: the commit may have reached the broker, and its
            # records produced again by a new producer would be read twice.
            if not self._fatal(error, renew=False):
                self._abort(AbortReason.COMMIT_FAILED, error.str())  # retriable or abortable alike
            self.reopen()
            return False
        self._metrics.transaction_commit_seconds.observe(committing.seconds)
        self._metrics.transaction_commits.inc()
        self._open = False
        self._entries.clear()
        self.reopen()
        return True

    def reopen(self) -> None:
        """The records that waited go into the next transaction (none while a commit is under way)."""
        if self._committing is not None or self._halt.exit or not self._ready():
            return
        self._closed = False
        waiting, self._waiting = self._waiting, []
        for entry in waiting:
            if self._held(entry):
                self._add(entry)

    def dropped(self) -> None:
        """Partitions were lost: records of theirs in the open transaction must not commit (their next owner
        publishes them); the transaction is aborted (after the commit under way) and the rest produced again."""
        self.settle(None)
        self._waiting = [entry for entry in self._waiting if self._held(entry)]
        self._missing.keep(self._held)
        if any(not self._held(entry) for entry in self._entries):
            self._abort(AbortReason.PARTITIONS_LOST, "partitions lost")

    # ---- the transaction's states ------------------------------------------------------------------------------

    def _add(self, entry: _Entry) -> None:
        if self._closed or not self._ready():
            self._waiting.append(entry)
            return
        if self._missing.holds(entry.record.topic):  # behind the records that wait for it, in order
            self._missing.hold(entry, "")
            return
        self._entries.append(entry)
        self._send(entry)

    def _begin(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open, self._began = True, time.monotonic()

    def _send(self, entry: _Entry) -> None:
        if self._renewing:
            return  # kept in ``_entries``: the new producer sends it
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
        if isinstance(refusal, KafkaError) and refusal.code() in MISSING:  # the topic is gone: not the record's fault
            self._entries = [other for other in self._entries if other is not entry]
            self._missing.hold(entry, refusal.str())
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
            elif error.code() in MISSING or error.code() == KafkaError._MSG_TIMED_OUT:
                self._suspect.add(entry.record.topic)
            self._failed = self._failed or error.str()
            return
        if entry.state is not None and not entry.acked and self._ledger.holds(entry.state):
            entry.acked = True
            self._acked(entry.state, entry.offset, entry.record)

    def _abort(self, reason: AbortReason, cause: str) -> None:
        """Aborts the open transaction; what it carried for partitions still held is produced again."""
        log.warning("transaction aborted, its records are produced again: %s", cause, extra={"reason": str(reason)})
        if self._renewing:  # the old producer's transaction ends with it
            self._entries = [entry for entry in self._entries if self._held(entry)]
            return
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
        self._again()

    def _again(self) -> None:
        """What the ended transaction carried, for partitions still held, goes into the next; records for topics
        a delivery failed for wait for them instead (``_missing``), rather than failing the next one too."""
        entries, self._entries = [entry for entry in self._entries if self._held(entry)], []
        suspect, self._suspect = self._suspect, set()
        for entry in entries:
            if entry.record.topic in suspect or self._missing.holds(entry.record.topic):
                self._missing.hold(entry, "its delivery failed")
            else:
                self._entries.append(entry)
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

    def _fatal(self, error: KafkaError, *, renew: bool = True) -> bool:
        """A fenced or fatally failed producer can do nothing more. Fenced (or ``renew`` False, or no way to make
        a producer): the process exits for a fresh one. Else a new producer takes over (``_ready``)."""
        if not (error.fatal() or fenced(error)):
            return False
        if fenced(error) or not renew or self._renewal is None:
            self._halt.trip(f"Kafka producer fatal error in its transaction: {error.str()}", exit=True)
            return True
        if not self._renewal.under_way:
            log.error(
                "the producer failed for good (%s): a new one with the same transactional.id takes over; the "
                "records of its transaction are kept and produced again, no API call is made again",
                error.str(),
                extra={"count": len(self._entries)},
            )
            self._metrics.transaction_aborts.labels(AbortReason.PRODUCER_FAILED).inc()
            self._open, self._failed = False, None
            self._generation += 1
            self._renewal.begin(self._producer)
        return True

    @property
    def _renewing(self) -> bool:
        return self._renewal is not None and self._renewal.under_way

    def _ready(self) -> bool:
        """Whether the producer can take records: True unless a new one is being made. Once it is ready, the
        kept records of partitions still held go into its first transaction (and the waiting ones, if open)."""
        renewal = self._renewal
        if renewal is None or not renewal.under_way:
            return True
        outcome = renewal.outcome()
        if outcome is None:
            return False
        if isinstance(outcome, KafkaError):
            if fenced(outcome):
                self._halt.trip(f"Kafka producer fenced while taking over: {outcome.str()}", exit=True)
            else:
                log.warning("a new producer could not start, trying again: %s", outcome.str())
                renewal.begin(self._producer)
            return False
        self._producer = outcome
        log.warning("a new producer took over: the records kept go again", extra={"count": len(self._entries)})
        self._again()
        if not self._closed:
            self.reopen()
        return not self._renewing
