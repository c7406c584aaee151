"""Intake: records from the consumer into the decode step, and consumption paused when the pipeline says so.

Backpressure by rejection (arroyo's): a step that cannot take a record raises ``MessageRejected``; the record
and those fetched after it are carried, in order, and offered again each turn, while every partition is paused
(``decisions.should_pause``). Behind the router (decision 0022) each account has its own partitions of the
collections topic (its share, ``Ledger.share_of``): a refusal, a full backlog or a wait for the quota then pauses
only that account's partitions, and the other accounts' records go on. The consumer is still polled every turn,
so ``max.poll.interval.ms`` never expires during a long wait.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

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
        self._ends: dict[int, int] = {}
        """Where each partition's end was reported (``enable.partition.eof``, behind the router): a transactional
        topic's last offsets are markers, never consumed, which its high watermark counts."""
        self._paused: set[int] = set()
        """The shares (``Ledger.share_of``; 0 without shares) whose partitions are paused."""

    def fetch(self, batch: int, timeout: float) -> int:
        """Up to ``batch`` records, waiting at most ``timeout`` for the first; returns how many came."""
        records = self._consumer.consume(batch, timeout=timeout)
        for record in records:
            error = record.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                self._ends[record.partition() or 0] = record.offset() or 0
            else:
                self._carried.append(record)
        return len(records)

    def offer(self, step: Step[Message]) -> set[int]:
        """Offers the records to ``step`` in order; returns the shares (``Ledger.share_of``) of which it refused one.
        A refused record and the rest of its share wait, in order; other shares' records go on (one share, all
        partitions, without the collections topic: then a refusal stops everything, as before)."""
        refused: set[int] = set()
        kept: deque[Message] = deque()
        while self._carried:
            message = self._carried.popleft()
            share = self._share(message.partition())
            if share in refused:
                kept.append(message)
                continue
            try:
                step.submit(message)
            except MessageRejected:
                refused.add(share)
                kept.append(message)
                if self._ledger.share_of is None:
                    break
        kept.extend(self._carried)
        self._carried = kept
        return refused

    def _shares(self) -> dict[int, list[int]]:
        """The partitions held, by share."""
        shares: dict[int, list[int]] = {}
        for number in self._ledger.numbers():
            shares.setdefault(self._share(number), []).append(number)
        return shares

    def _share(self, partition: int | None) -> int:
        share_of = self._ledger.share_of
        return 0 if share_of is None or partition is None else share_of(partition)

    @property
    def carrying(self) -> bool:
        return bool(self._carried)

    def control(
        self, *, rejected: set[int], stopping: bool, fatal: bool, waiting: Callable[[int | None], bool]
    ) -> None:
        """Pauses or resumes each share's held partitions, as ``should_pause`` decides for it: its own backlog, its
        own refusal, its account waiting (``waiting(share)``; ``waiting(None)``: without shares, every account)."""
        split = self._ledger.share_of is not None
        for share, numbers in self._shares().items():
            paused = should_pause(
                paused=share in self._paused,
                pending=self._ledger.pending_beside(numbers[0]),
                limit=self._max_pending,
                rejected=share in rejected,
                stopping=stopping,
                fatal=fatal,
                quota_exhausted=waiting(share if split else None),
            )
            if paused != (share in self._paused):
                self._set(numbers, paused=paused)
                (self._paused.add if paused else self._paused.discard)(share)

    @property
    def paused(self) -> bool:
        """Whether any partition held is paused."""
        return bool(self._paused)

    def paused_partitions(self) -> int:
        return sum(1 for number in self._ledger.numbers() if self._share(number) in self._paused)

    def pause(self, paused: bool) -> None:
        """Pauses (or resumes) every partition held now (a drain)."""
        self._set(list(self._ledger.numbers()), paused=paused)
        self._paused = {self._share(number) for number in self._ledger.numbers()} if paused else set()

    def repause(self) -> None:
        """After a rebalance: the newly assigned partitions of a paused share are paused as the rest of it."""
        self._set([number for number in self._ledger.numbers() if self._share(number) in self._paused], paused=True)

    def _set(self, numbers: list[int], *, paused: bool) -> None:
        held = [TopicPartition(self._topic, number) for number in numbers]
        if held:
            (self._consumer.pause if paused else self._consumer.resume)(held)

    def drop(self, partitions: frozenset[int]) -> None:
        """Records of partitions no longer held are not offered again: their next owner reads them."""
        for number in partitions:
            self._ends.pop(number, None)  # a partition assigned again says where its end is again
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
        """Whether the partition has nothing more to read now: its cached high watermark is reached, or its share's
        backlog is full (``MAX_PENDING_EVENTS``: paused until events finish). The relist grace then runs on the wall
        clock (``EventClock``): a backlog produced within one grace (a bulk delist, a replay) would otherwise hold
        every delist for ever, since no later record of the partition could be read to move its event time."""
        if state.next_offset is None or self._ends.get(state.number, -1) >= state.next_offset:
            return True
        if self._ledger.pending_beside(state.number) >= self._max_pending:
            return True
        try:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, state.number), cached=True)
        except Exception:  # noqa: BLE001 - not known: judge by the records' own timestamps
            return False
        return high >= 0 and state.next_offset >= high
