"""Exactly-once: outcomes, dead letters and the input's offsets written in one Kafka transaction.

Kafka Streams' exactly-once v2 for a Python consumer (KIP-447): one transactional producer per replica, its
``transactional.id`` the group instance id's (the chart's pod name), so a restarted pod fences its predecessor
and aborts its open transaction at once (``init_transactions``); the offsets go into the transaction with the
consumer's group metadata (``send_offsets_to_transaction``), so a zombie whose partitions were taken cannot
commit. A ``read_committed`` reader of the outcome topic sees each event's outcome once, whatever crashes.

The open transaction keeps every record it carries (``Carried``): an abortable error (a failed delivery, a commit
the broker refused) aborts it and produces the same records again in the next one, so a call's answer in hand
is never asked of the API again. A fatal error (fenced by a newer producer with the same id, or the producer's
own fatal state) trips the halt for an exit: the process ends and Kubernetes starts a fresh one. Any other fatal
error (librdkafka's, e.g. an abort refused after an output topic was deleted) gives the transaction a new producer
with the same ``transactional.id`` (``Producers``): the records kept go into its first transaction, and
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
from typing import Final, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from service.metrics import Metrics
from service.pipeline.carried import Carried, Entry
from service.pipeline.ending import Aborting, CommitFailure, commit_call
from service.pipeline.halt import Halt
from service.pipeline.inflight import InFlight
from service.pipeline.ledger import Ledger
from service.pipeline.outlet import Acked, Record, Refused
from service.pipeline.partitions import PartitionState
from service.pipeline.renewal import INIT_TIMEOUT_SECONDS, Producers
from service.vocabulary import AbortReason

__all__ = ["INIT_TIMEOUT_SECONDS", "STUCK_SECONDS", "Transaction"]

log = logging.getLogger(__name__)

STUCK_SECONDS: Final = 10.0
"""A third of ``transaction.timeout.ms``'s default (30 s): see ``Transaction``'s ``stuck_seconds``."""
ABORT_TIMEOUT_SECONDS: Final = 2.0
"""How long an abort may block the loop (no coordinator answering: a broker outage); the next checkpoint asks
again, and librdkafka goes on with the abort meanwhile."""
SWITCH_INTERVAL_SECONDS: Final = 0.001
"""How long a thread may keep the GIL while another waits for it (Python's default: 5 ms)."""


T = TypeVar("T")


def _begun(producer: Producer) -> bool:
    producer.begin_transaction()
    return True


def _undelivered(producer: Producer, timeout: float) -> int:
    """The records not delivered after ``timeout``: the acknowledgements that came are served first (``flush`` of
    0 s serves none)."""
    producer.poll(0)
    return int(producer.flush(max(0.0, timeout)))


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
        (well before ``transaction.timeout.ms``, after which the coordinator aborts it and fences the producer), and
        an abort of one that surely did not commit, unfinished this long, gives it a new producer (``_abort``)."""
        self._consumer = consumer
        self._halt = halt
        self._metrics = metrics
        self._open = False
        self._wake = wake or threading.Event()
        self._producers = Producers(producer, renew, halt=halt, metrics=metrics, wake=self._wake.set)
        self._carried = Carried(
            self._producers, ledger=ledger, acked=acked, begin=self._begin, fatal=self._fatal, wake=self._wake.set
        )
        self._closed = False
        """Between ``close`` and the end of the commit: records handed over wait in ``_waiting``."""
        self._waiting: list[Entry] = []
        self._committing: InFlight[CommitFailure | None] | None = None
        self._stuck = stuck_seconds
        self._began = 0.0
        self._aborting = Aborting()

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
        return self._carried.missing.topics

    @property
    def carrying(self) -> bool:
        """Whether the open transaction holds records (they wait for its close)."""
        return bool(self._carried.entries)

    def start(self, timeout: float = INIT_TIMEOUT_SECONDS) -> None:
        """Fences an earlier producer of the same ``transactional.id`` and aborts its open transaction. Blocks.
        Also shortens the interpreter's switch interval (``SWITCH_INTERVAL_SECONDS``: the commit's thread needs the
        GIL back after each librdkafka call; with 5 ms a busy loop made a 6 ms commit take 30 ms, 11 ms with 1 ms)."""
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        self._producers.current.init_transactions(timeout)

    # ---- the outlet (``service.pipeline.outlet.Outlet``) ----------------------------------------------------

    def on_refused(self, refused: Refused) -> None:
        self._carried.refused = refused

    def produce(self, state: PartitionState, offset: int, record: Record) -> None:
        self._add(Entry(state, offset, record))

    def produce_state(self, record: Record) -> None:
        self._add(Entry(None, -1, record))

    def poll(self) -> None:
        if self._ready() and self._call(lambda producer: producer.poll(0)) is not None and not self._closed:
            for entry in self._carried.back():
                self._add(entry)

    def flush(self, timeout: float) -> None:
        if self._ready():
            self._call(lambda producer: producer.flush(max(0.0, timeout)))

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
        undelivered = self._call(lambda producer: _undelivered(producer, timeout))
        if undelivered is None or self._producers.renewing:  # it is fatal (a report may have made it so)
            return False
        if undelivered > 0:
            if self._open and time.monotonic() - self._began > self._stuck:
                self._carried.stuck()
                self._abort(AbortReason.DELIVERY_FAILED, f"records not delivered after {self._stuck:.0f} s")
            return False
        if self._carried.failed is not None:
            self._abort(AbortReason.DELIVERY_FAILED, self._carried.failed)
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
        if self._producers.renewing:  # it was fatal: the new producer's transaction commits them
            return
        metadata = self._consumer.consumer_group_metadata() if offsets else None
        self._committing = InFlight(commit_call(self._producers.current, offsets, metadata), finished=self._wake.set)

    def settle(self, timeout: float | None = 0.0) -> bool | None:
        """The outcome of the commit under way, once it is over (waits up to ``timeout``; None: forever): True
        committed, False failed (aborted and produced again, or fatal); None while it is still under way or when
        none is. The records that waited then open the next transaction."""
        committing = self._committing
        if committing is None or not committing.wait(timeout):
            return None
        self._committing = None
        failure = committing.result()
        if failure is not None:
            # A failed commit_transaction that is fatal ends the process even without a fence: the commit may have
            # reached the broker, and its records produced again by a new producer would be read twice. Failed
            # offsets (send_offsets_to_transaction) mean no commit was asked: those records may go again.
            error, maybe_committed = failure.error, failure.maybe_committed
            if not self._fatal(error, renew=not maybe_committed):  # retriable or abortable alike: aborted
                self._abort(AbortReason.COMMIT_FAILED, error.str(), maybe_committed=maybe_committed)
            self.reopen()
            return False
        self._metrics.transaction_commit_seconds.observe(committing.seconds)
        self._metrics.transaction_commits.inc()
        self._open = False
        self._carried.entries.clear()
        self.reopen()
        return True

    def reopen(self) -> None:
        """The records that waited go into the next transaction (none while a commit is under way)."""
        if self._committing is not None or self._halt.exit or not self._ready():
            return
        self._closed = False
        waiting, self._waiting = self._waiting, []
        for entry in waiting:
            if self._carried.held(entry):
                self._add(entry)

    def carried(self, partitions: frozenset[int]) -> list[Entry]:
        """The records this transaction (and the next, waiting) carries for ``partitions``: answers in hand."""
        return self._carried.of(partitions, self._waiting)

    def dropped(self) -> None:
        """Partitions were lost: records of theirs in the open transaction must not commit (their next owner
        publishes them); the transaction is aborted (after the commit under way) and the rest produced again."""
        self.settle(None)
        self._waiting = [entry for entry in self._waiting if self._carried.held(entry)]
        self._carried.missing.keep(self._carried.held)
        if any(not self._carried.held(entry) for entry in self._carried.entries):
            self._abort(AbortReason.PARTITIONS_LOST, "partitions lost")

    # ---- the transaction's states ------------------------------------------------------------------------------

    def _add(self, entry: Entry) -> None:
        if self._closed or not self._ready():
            self._waiting.append(entry)
            return
        self._carried.add(entry)

    def _begin(self) -> None:
        if not self._open and not self._producers.renewing and self._call(_begun):
            self._open, self._began = True, time.monotonic()

    def _abort(self, reason: AbortReason, cause: str, *, maybe_committed: bool = False) -> None:
        """Aborts the open transaction; what it carried for partitions still held is produced again. An abort no
        coordinator answered is asked again at each checkpoint, logged once; unfinished after ``stuck_seconds``
        (a transaction that surely did not commit), a new producer takes its records over (``ending``)."""
        if self._aborting.reason is None:
            log.warning("transaction aborted, its records go again: %s", cause, extra={"reason": str(reason)})
        if self._producers.renewing:  # the old producer's transaction ends with it
            self._carried.keep_held()
            return
        first = self._aborting.begin(reason, maybe_committed=maybe_committed)
        try:
            self._producers.current.abort_transaction(ABORT_TIMEOUT_SECONDS)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not self._fatal(error, overdue=self._aborting.overdue(self._stuck)):  # the abort goes on in librdkafka
                if first:
                    log.warning("aborting the transaction failed, trying again: %s", error.str())
                self._carried.failed = self._carried.failed or f"abort unfinished: {error.str()}"
            return
        self._aborting.end()
        self._metrics.transaction_aborts.labels(reason).inc()
        self._open = False
        self._carried.ended()
        self._carried.again()

    def _fatal(self, error: KafkaError, *, renew: bool = True, overdue: bool = False) -> bool:
        """A fenced or fatally failed producer (or one whose abort is ``overdue``) can do nothing more
        (``Producers.fatal``): the process exits, or a new producer takes over and this transaction's records go
        into its first one (``_ready``)."""
        # After a failed commit, an abort refused as fatal may mean the commit went through (INVALID_TXN_STATE: the
        # coordinator's transaction is CompleteCommit): its records must not go again, so the process exits.
        renew = renew and not self._aborting.maybe_committed
        if not self._producers.fatal(error, renew=renew, carrying=len(self._carried.entries), overdue=overdue):
            return False
        self._open = False
        self._aborting.end()
        self._carried.ended()
        return True

    def _call(self, call: Callable[[Producer], T]) -> T | None:
        """``call``'s result on the producer; None if it raised librdkafka's fatal error (any call may, once fatal)."""
        try:
            return call(self._producers.current)
        except KafkaException as exc:
            if not self._fatal(exc.args[0]):
                raise
            return None

    def _ready(self) -> bool:
        """Whether the producer can take records: True unless a new one is being made. Once it is ready, the
        kept records of partitions still held go into its first transaction (and the waiting ones, if open)."""
        took_over = self._producers.took_over()
        if took_over is None:
            return False
        if took_over:
            log.warning(
                "a new producer took over: the records kept go again", extra={"count": len(self._carried.entries)}
            )
            self._carried.again()
            if not self._closed:
                self.reopen()
        return not self._producers.renewing
