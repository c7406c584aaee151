"""Commit: the last step. Per partition, the watermark of finished events and the done offsets above it.

The checkpoint order is spelled out in one function, ``commit`` (quix-streams' ``Checkpoint.commit`` is the
model). The publish step, which polls this one, has served the producer's acknowledgements just before (or, on
a revoke and at shutdown, waited for them). Commits go out at most once per interval while running, and
synchronously on a revoke and at shutdown.

A commit that fails is sent again: a synchronous one raises and its positions stay unrecorded; an asynchronous
one is reported to ``on_commit`` (the consumer's callback, served by ``consume``), which puts the partitions'
last recorded positions back, so the next checkpoint finds them moved. Each failure counts in
``imgsweep_commit_failures_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Final, Protocol

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.halt import Halt
from service.pipeline.ledger import Ledger
from service.pipeline.outlet import Acknowledged, Delivered, Outlet
from service.pipeline.partitions import PartitionState, Position
from service.pipeline.steps.abstract import Step
from service.pipeline.transaction import STUCK_SECONDS, Transaction
from service.settings.kafka import KafkaSettings

__all__ = [
    "COMMIT_INTERVAL_SECONDS",
    "TRANSACTION_INTERVAL_SECONDS",
    "Checkpoint",
    "CommitStep",
    "TransactionStep",
    "delivery",
]

log = logging.getLogger(__name__)

COMMIT_INTERVAL_SECONDS: Final = 1.0
TRANSACTION_INTERVAL_SECONDS: Final = 0.1
"""Exactly-once: a transaction is committed at most this often, so a call's outcomes are committed 100-150 ms
after they are produced (the commit itself runs on its own thread; see docs/reliability.md)."""
STAGE_POLL_SECONDS: Final = 0.01
"""Exactly-once: how often the loop turns while a closed transaction moves through its stages."""
DELIVERY_WAIT_SECONDS: Final = 5.0
"""How long a checkpoint waits for the open transaction's records to be acknowledged before trying later."""


class Checkpoint(Step[object], Protocol):
    """The last step: commits what the ledger says is done (``CommitStep`` or ``TransactionStep``)."""

    def commit(self, *, sync: bool = False, only: Collection[int] | None = None) -> None:
        """One checkpoint now; ``sync`` waits for the broker; ``only`` limits it to some partitions if it can."""

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's report of an asynchronous commit."""

    def seconds_until_due(self) -> float | None:
        """How soon the loop should turn again for the checkpoint to move on (None: it waits for nothing)."""

    def settle(self) -> None:
        """Waits for the commit under way, if any, and records its positions: each partition's ``committed`` is
        then what the group holds (the baseline of answers kept after a loss)."""


class CommitStep:
    def __init__(
        self, *, consumer: Consumer, ledger: Ledger, health: HealthState, metrics: Metrics,
        interval: float = COMMIT_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._consumer = consumer
        self._ledger = ledger
        self._health = health
        self._metrics = metrics
        self._interval = interval
        self._clock = clock
        self._last = 0.0
        self._before: dict[int, Position | None] = {}
        """Per partition, the position recorded before the last asynchronous commit: put back if it fails."""

    def submit(self, item: object) -> None:
        pass  # what to commit is read from the ledger

    def poll(self) -> None:
        """Commits what moved, at most once an interval. Never blocks (the commit is asynchronous)."""
        if self._clock() - self._last >= self._interval:
            self.commit()

    def close(self) -> None:
        pass

    def join(self, deadline: float) -> None:
        """Commits and waits for the broker (the publish step delivered what it could until ``deadline``)."""
        self.commit(sync=True)

    def terminate(self) -> None:
        pass  # nothing more is committed: what is unfinished is redone by the next owner

    def commit(self, *, sync: bool = False, only: Collection[int] | None = None) -> None:
        """One checkpoint, asynchronous unless ``sync``; ``only`` limits it to some partitions."""
        self._last = self._clock()
        # 1. Each partition's position: the first unfinished offset and, in its metadata, the finished ones above
        #    it (acknowledgements were served by the publish step). Only positions that changed since the last
        #    commit.
        moved = self._ledger.positions(only)
        self._metrics.offset_metadata_truncated.set(self._ledger.truncated())
        if not moved:
            return
        topic = self._ledger.topic
        offsets = [
            TopicPartition(topic, state.number, position.offset, metadata=position.metadata)
            for state, position in moved
        ]
        # 2. Send them: asynchronously while running; synchronously on a revoke or at shutdown.
        try:
            if sync:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as error:  # noqa: BLE001 - a failed commit is retried with the next position
            log.warning("offset commit failed: %s", error)
            self._metrics.commit_failures.inc()
            return
        if not sync:
            self._before.update((state.number, state.committed) for state, _ in moved)
        # 3. Remember what was committed, for the next comparison and for /readyz.
        self._ledger.committed(moved)
        self._health.committed = self._ledger.committed_offsets()
        self._metrics.commits.inc()

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's ``on_commit``: a failed asynchronous commit puts the partitions' previous positions back,
        so the next checkpoint sends them again (librdkafka never does). Runs in ``consume``, on the loop's thread."""
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if not any(tp.partition in self._before for tp in failed):
            return  # nothing failed, or a synchronous commit's failure (counted where it raised)
        self._metrics.commit_failures.inc()
        reason = error.str() if error is not None else str(failed[0].error)
        log.warning("offset commit failed, sending it again: %s", reason, extra={"count": len(failed)})
        for tp in failed:
            state = self._ledger.get(tp.partition)
            # By offset: the report may not carry the metadata that was sent with it.
            sent = state is not None and state.committed is not None and state.committed.offset == tp.offset
            if state is not None and sent and tp.partition in self._before:
                state.committed = self._before.pop(tp.partition)  # nothing newer went out: send it again
        self._last = 0.0

    def seconds_until_due(self) -> float | None:
        return None  # the consumer's commit is asynchronous and its interval loose: nothing to turn for

    def settle(self) -> None:
        pass  # positions are recorded when sent (a failure reported later puts the previous ones back)


class TransactionStep:
    """Exactly-once's checkpoint: the offsets of what was published go into the producer's transaction, which
    then commits (``Transaction``); nothing is committed by the consumer.

    While running, a checkpoint never blocks the loop: once an interval, the transaction closes (what is
    published from then on waits for the next one); on a later turn, once its records are acknowledged, the
    offsets are read from the ledger and the commit starts on its own thread; a later turn reads its outcome
    and the waiting records open the next transaction. A revoke and the shutdown commit synchronously."""

    def __init__(
        self, *, transaction: Transaction, ledger: Ledger, health: HealthState, metrics: Metrics,
        interval: float = TRANSACTION_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._transaction = transaction
        self._ledger = ledger
        self._health = health
        self._metrics = metrics
        self._interval = interval
        self._clock = clock
        self._last = 0.0
        self._moved: list[tuple[PartitionState, Position]] = []
        """The positions sent with the commit under way: recorded once it succeeds."""
        self._spent = 0.0
        """The loop's time on the current transaction's checkpoint so far."""

    def submit(self, item: object) -> None:
        pass  # what to commit is read from the ledger

    def poll(self) -> None:
        """Moves the checkpoint on by one stage if it can (close, commit, outcome), at most one commit an
        interval. Never waits for the broker; the loop's time on each transaction's stages is measured."""
        transaction = self._transaction
        if not transaction.closed:
            if self._clock() - self._last < self._interval:
                return
            self._last = self._clock()
            transaction.close()
        started = time.monotonic()
        committed = None
        if transaction.committing:
            committed = transaction.settle(0.0)
            self._settled(committed)
        else:
            self._begin(0.0)
        self._spent += time.monotonic() - started
        if committed is not None:  # over: committed, or failed and produced again
            self._metrics.transaction_loop_seconds.observe(self._spent)
        if not transaction.closed:  # the next transaction is open (or there was nothing to commit)
            self._spent = 0.0

    def close(self) -> None:
        pass

    def join(self, deadline: float) -> None:
        self.commit(wait=max(DELIVERY_WAIT_SECONDS, deadline - time.monotonic()))

    def terminate(self) -> None:
        pass  # the open transaction is left to abort (at the next start of this transactional id, or its timeout)

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        pass  # with exactly-once delivery the consumer commits nothing: the transaction does

    def seconds_until_due(self) -> float | None:
        """A closed transaction moves on by one stage a turn (acknowledged, committing, committed): the loop turns
        soon; an open one carrying records closes at the interval's end. Without this an idle loop waits its full
        fetch timeout (0.2 s) between the stages, and a read_committed reader sees each outcome later."""
        if self._transaction.closed:
            return STAGE_POLL_SECONDS
        if self._transaction.carrying:
            return max(0.0, self._last + self._interval - self._clock())
        return None

    def settle(self) -> None:
        self._settled(self._transaction.settle(None))

    def commit(
        self, *, sync: bool = False, only: Collection[int] | None = None, wait: float = DELIVERY_WAIT_SECONDS
    ) -> None:
        """One checkpoint now, waiting for the broker. ``sync`` and ``only`` are the consumer commit's: a
        transaction always commits every partition's offsets, synchronously."""
        self._last = self._clock()
        transaction = self._transaction
        self._settled(transaction.settle(None))  # the commit under way first
        transaction.reopen()  # what waited goes in this one
        transaction.close()
        if self._begin(wait):
            self._settled(transaction.settle(None))

    def _begin(self, wait: float) -> bool:
        """Starts the commit of the closed transaction once its records are acknowledged (waits up to ``wait``
        for them); False if they are not yet."""
        # 1. Every record of the closed transaction acknowledged, so that no record commits without its event's
        #    offset (acknowledgements move the watermarks; on a healthy cluster this is the producer's linger).
        #    A failed delivery aborts the transaction and produces its records again: a later turn commits.
        if not self._transaction.delivered(wait):
            return False
        # 2. Each partition's position that moved: the first unfinished offset, the done ones in its metadata.
        self._moved = self._ledger.positions()
        self._metrics.offset_metadata_truncated.set(self._ledger.truncated())
        topic = self._ledger.topic
        offsets = [
            TopicPartition(topic, state.number, position.offset, metadata=position.metadata)
            for state, position in self._moved
        ]
        # 3. The offsets into the transaction, and its commit: outcomes, dead letters and offsets at once.
        self._transaction.begin_commit(offsets)
        return True

    def _settled(self, committed: bool | None) -> None:
        # 4. Once committed: remember what was, for the next comparison and for /readyz.
        if committed is None:
            return  # under way still, or none was
        moved, self._moved = self._moved, []
        if committed and moved:
            self._ledger.committed(moved)
            self._health.committed = self._ledger.committed_offsets()
            self._metrics.commits.inc()


def delivery(
    kafka: KafkaSettings, *, producer: Producer, consumer: Consumer, ledger: Ledger,
    health: HealthState, halt: Halt, metrics: Metrics, wake: threading.Event | None = None,
    renew: Callable[[], Producer] | None = None,
) -> tuple[Transaction | None, Outlet, Checkpoint]:  # fmt: skip
    """How records reach Kafka and how offsets are committed (``IMGSWEEP_KAFKA__DELIVERY``): in one transaction
    (exactly-once: the transaction, which is also the outlet, and its step), or records acknowledged one by one,
    then offsets committed by the consumer (at-least-once). ``wake``: set when a transaction's commit is over;
    ``renew``: ``Transaction``'s (its ``stuck_seconds``: a third of ``transaction.timeout.ms``, at most 10 s)."""
    delivered = Delivered(ledger, metrics)
    if kafka.delivery == "exactly_once":
        transaction = Transaction(
            producer,
            consumer,
            ledger=ledger,
            acked=delivered,
            halt=halt,
            metrics=metrics,
            wake=wake,
            renew=renew,
            stuck_seconds=min(STUCK_SECONDS, kafka.transaction_timeout_ms / 3000),
        )
        return (
            transaction,
            transaction,
            TransactionStep(transaction=transaction, ledger=ledger, health=health, metrics=metrics),
        )
    outlet = Acknowledged(producer, held=ledger.holds, acked=delivered, halt=halt)
    return None, outlet, CommitStep(consumer=consumer, ledger=ledger, health=health, metrics=metrics)
