"""Intake: records from the consumer into the decode step, and consumption paused when the pipeline says so.

Backpressure by rejection (arroyo's): a step that cannot take a record raises ``MessageRejected``; the record
and those fetched after it are carried, in order, and offered again each turn, while every partition is paused
(``decisions.should_pause``). The consumer is still polled every turn, so ``max.poll.interval.ms`` never
expires during a long wait.
"""

from __future__ import annotations

import time
from collections import deque

from confluent_kafka import Consumer, Message, TopicPartition

from service.pipeline.decisions import should_pause
from service.pipeline.ledger import Ledger
from service.pipeline.partitions import PartitionState
from service.pipeline.steps.abstract import MessageRejected, Step

__all__ = ["Intake"]


class Intake:
    def __init__(self, *, consumer: Consumer, ledger: Ledger, max_pending: int) -> None:
        self._consumer = consumer
        self._topic = ledger.topic
        self._ledger = ledger
        self._max_pending = max_pending
        self._carried: deque[Message] = deque()
        """Consumed records a step refused: offered again, in order, before anything new."""
        self.paused = False

    def fetch(self, batch: int, timeout: float) -> int:
        """Up to ``batch`` records, waiting at most ``timeout`` for the first; returns how many came."""
        records = self._consumer.consume(batch, timeout=timeout)
        self._carried.extend(records)
        return len(records)

    def offer(self, step: Step[Message]) -> bool:
        """Offers the records to ``step`` in order; True if it refused one (it and the rest wait)."""
        while self._carried:
            try:
                step.submit(self._carried[0])
            except MessageRejected:
                return True
            self._carried.popleft()
        return False

    @property
    def carrying(self) -> bool:
        return bool(self._carried)

    def control(self, *, rejected: bool, stopping: bool, fatal: bool, quota_exhausted: bool) -> None:
        """Pauses or resumes every held partition, as ``should_pause`` decides."""
        paused = should_pause(
            paused=self.paused,
            pending=self._ledger.pending_events(),
            limit=self._max_pending,
            rejected=rejected,
            stopping=stopping,
            fatal=fatal,
            quota_exhausted=quota_exhausted,
        )
        if paused != self.paused:
            self.pause(paused)

    def pause(self, paused: bool) -> None:
        """Pauses (or resumes) every partition held now; after a rebalance, the new ones as the rest."""
        held = [TopicPartition(self._topic, number) for number in self._ledger.numbers()]
        if held:
            (self._consumer.pause if paused else self._consumer.resume)(held)
        self.paused = paused

    def drop(self, partitions: frozenset[int]) -> None:
        """Records of partitions no longer held are not offered again: their next owner reads them."""
        self._carried = deque(message for message in self._carried if message.partition() not in partitions)

    def leave_group(self, seconds: float) -> None:
        """Leaves the group before closing: a static member (``group.instance.id``) does not on ``close()``, and
        its partitions would wait out the session timeout for a replacement pod of another name."""
        self._consumer.unsubscribe()
        deadline = time.monotonic() + seconds
        while self._consumer.assignment() and time.monotonic() < deadline:
            self._consumer.consume(500, timeout=0.1)  # serves the revoke; records are not taken

    def clear(self) -> None:
        """Shutdown: nothing carried is started."""
        self._carried.clear()

    def caught_up(self, state: PartitionState) -> bool:
        """Whether the partition has nothing more to read now (its cached high watermark is reached)."""
        if state.next_offset is None:
            return True
        try:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, state.number), cached=True)
        except Exception:  # noqa: BLE001 - not known: judge by the records' own timestamps
            return False
        return high >= 0 and state.next_offset >= high
