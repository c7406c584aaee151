"""Partitions coming and going: confluent-kafka's ``on_assign``, ``on_revoke`` and ``on_lost``.

On assign, each partition's state starts from what its previous owner committed (the offset's metadata names
the events it already finished). On revoke, the flow finishes the partition's work under way within a bound
and commits it (``Flow.revoke``) before the partition goes. Lost partitions belong to someone else already:
they are never committed, but the answers in hand for them are kept (``LostAnswers``), for when they come back
with nobody having committed them since. Every way out goes through ``Ledger.drop``, then ``Flow.dropped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Final, Protocol

from confluent_kafka import Consumer, TopicPartition

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.consumer_stats import ConsumerStats
from service.pipeline.kept import LostAnswers
from service.pipeline.ledger import Ledger
from service.pipeline.partitions import PartitionState, Position
from service.pipeline.share import QpsShare

__all__ = ["REVOKE_TIMEOUT_SECONDS", "Flow", "Rebalance"]

log = logging.getLogger(__name__)

REVOKE_TIMEOUT_SECONDS: Final = 10.0
COMMITTED_TIMEOUT_SECONDS: Final = 10.0


class Flow(Protocol):
    """What a rebalance asks of the pipeline (``Pipeline``)."""

    def revoke(self, partitions: frozenset[int], deadline: float) -> None:
        """Finishes the partitions' calls under way until ``deadline`` and commits their finished work."""

    def assigned(self, partitions: frozenset[int]) -> None:
        """The partitions are this replica's now: the state kept for them on Kafka is read back."""

    def dropped(self, partitions: frozenset[int]) -> None:
        """The partitions are gone: whatever still carries their work lets it go."""


class Rebalance:
    def __init__(
        self,
        *,
        consumer: Consumer,
        ledger: Ledger,
        flow: Flow,
        share: QpsShare,
        stats: ConsumerStats,
        health: HealthState,
        metrics: Metrics,
        revoke_seconds: float,
        kept: LostAnswers | None = None,
    ) -> None:
        """``kept``: keeps the answers in hand for lost partitions (exactly-once; None: they are forgotten)."""
        self._consumer = consumer
        self._ledger = ledger
        self._flow = flow
        self._share = share
        self._revoke_seconds = min(REVOKE_TIMEOUT_SECONDS, revoke_seconds)
        self._stats = stats
        self._health = health
        self._metrics = metrics
        self._kept = kept
        self._topic_partitions: int | None = None
        self.changed = False
        self.closing = False
        """Set when the consumer closes: a revoke then commits nothing more (the drain already did)."""

    def on_assign(self, _consumer: Consumer, assigned: list[TopicPartition]) -> None:
        committed = self._committed(assigned)
        states = [PartitionState.resumed_from(tp.partition, committed.get(tp.partition)) for tp in assigned]
        self._ledger.assign(states)
        self._flow.assigned(frozenset(tp.partition for tp in assigned))
        if self._kept is not None:
            self._kept.assigned(states, committed)  # after the memory of deletions is restored: on top of it
        self._health.brokers_up = True  # the group's coordinator just answered; statistics follow every 5 s
        self.changed = True
        inherited = sum(len(state.inherited_done) for state in states)
        log.info("partitions assigned", extra={"count": len(assigned), "state": f"{inherited} offsets already done"})

    def on_revoke(self, _consumer: Consumer, revoked_partitions: list[TopicPartition]) -> None:
        """Finishes the revoked partitions' calls under way within a bound and commits; drops the rest."""
        revoked = frozenset(tp.partition for tp in revoked_partitions)
        if not self.closing:
            self._flow.revoke(revoked, time.monotonic() + self._revoke_seconds)
        self._drop(revoked)
        log.info("partitions revoked", extra={"count": len(revoked)})

    def on_lost(self, _consumer: Consumer, lost: list[TopicPartition]) -> None:
        numbers = frozenset(tp.partition for tp in lost)
        if self._kept is not None:
            self._kept.lost(numbers)
        self._drop(numbers)
        log.warning("partitions lost", extra={"count": len(lost)})

    def _drop(self, numbers: frozenset[int]) -> None:
        self._ledger.drop(numbers)
        self._stats.forget(numbers)
        self._flow.dropped(numbers)
        self.changed = True

    def _committed(self, assigned: Collection[TopicPartition]) -> dict[int, Position | None]:
        """What the previous owners committed, with metadata (None: nothing yet); a partition whose position could
        not be read is missing (its finished events are then redone, and answers kept for it discarded)."""
        try:
            positions = self._consumer.committed(list(assigned), timeout=COMMITTED_TIMEOUT_SECONDS)
        except Exception as error:  # noqa: BLE001 - without it, finished events are redone, nothing is lost
            log.warning("could not read the committed offsets' metadata: %s", error)
            return {}
        return {
            tp.partition: Position(tp.offset, tp.metadata or "") if tp.offset >= 0 else None
            for tp in positions
            if tp.error is None
        }

    def settle(self) -> None:
        """After a rebalance, in the poll loop: the gauges, and the assignment the QPS share may follow."""
        self.changed = False
        assigned = self._ledger.numbers()
        self._health.assigned = assigned
        self._stats.assigned(assigned)
        self._metrics.assigned_partitions.set(len(assigned))
        self._share.assigned(len(assigned), self._partition_count())

    def fraction(self) -> float:
        """This replica's fraction of the input topic's partitions (1 until the count is known)."""
        if not self._topic_partitions:
            return 1.0
        return min(1.0, len(self._ledger.numbers()) / self._topic_partitions)

    def _partition_count(self) -> int | None:
        try:
            metadata = self._consumer.list_topics(self._ledger.topic, timeout=5)
        except Exception as error:  # noqa: BLE001 - keep the previous share until metadata is back
            log.warning("could not read the input topic's partition count: %s", error)
            return self._topic_partitions
        topic = metadata.topics.get(self._ledger.topic)
        if topic is not None and topic.partitions:
            self._topic_partitions = len(topic.partitions)
        return self._topic_partitions
