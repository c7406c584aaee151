"""Commit: the last step. Per partition, the watermark of finished events and the done offsets above it.

The checkpoint order is spelled out in one function, ``commit`` (quix-streams' ``Checkpoint.commit`` is the
model). Commits go out at most once per interval while running, and synchronously, after the producer has
delivered what it can, on a revoke and at shutdown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Final

from confluent_kafka import Consumer, TopicPartition

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.partitions import Partitions
from service.pipeline.steps.publish import PublishStep

__all__ = ["COMMIT_INTERVAL_SECONDS", "CommitStep"]

log = logging.getLogger(__name__)

COMMIT_INTERVAL_SECONDS: Final = 1.0


class CommitStep:
    def __init__(
        self,
        *,
        consumer: Consumer,
        topic: str,
        partitions: Partitions,
        publish: PublishStep,
        health: HealthState,
        metrics: Metrics,
        interval: float = COMMIT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._partitions = partitions
        self._publish = publish
        self._health = health
        self._metrics = metrics
        self._interval = interval
        self._clock = clock
        self._last = 0.0

    def poll(self) -> None:
        """Commits what moved, at most once an interval. Never blocks (the commit is asynchronous)."""
        if self._clock() - self._last >= self._interval:
            self.commit()

    def join(self, deadline: float) -> None:
        """Delivers what the producer holds (until ``deadline``), then commits and waits for the broker."""
        self.commit(deadline=deadline)

    def commit(self, *, deadline: float | None = None, only: Collection[int] | None = None) -> None:
        """One checkpoint, asynchronous unless a ``deadline`` is given; ``only`` limits it to some partitions."""
        self._last = self._clock()
        # 1. Acknowledgements first: each one may move a watermark. With a deadline, wait for all of them.
        if deadline is None:
            self._publish.poll()
        else:
            self._publish.join(deadline)
        # 2. Each partition's position: the first unfinished offset and, in its metadata, the finished ones
        #    above it. Only positions that changed since the last commit.
        states = [state for state in self._partitions if only is None or state.number in only]
        moved = [(state, position) for state in states if (position := state.position()) is not None]
        self._metrics.offset_metadata_truncated.set(sum(state.truncated for state in self._partitions))
        if not moved:
            return
        offsets = [
            TopicPartition(self._topic, state.number, position.offset, metadata=position.metadata)
            for state, position in moved
        ]
        # 3. Send them: asynchronously while running; synchronously on a revoke or at shutdown.
        try:
            if deadline is None:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as error:  # noqa: BLE001 - a failed commit is retried with the next position
            log.warning("offset commit failed: %s", error)
            return
        # 4. Remember what was committed, for the next comparison and for /readyz.
        for state, position in moved:
            state.committed = position
        self._health.committed = {state.number: state.committed.offset for state in self._partitions if state.committed}
        self._metrics.commits.inc()
