"""librdkafka's statistics (``stats_cb``): consumer lag per partition, how far the commits moved, and whether a
broker is reachable. Lag and commits carry the account whose partition it is (``Metrics.partition_account``), so
that a stall alert fires per account (issue 21)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.partitions import PartitionState

__all__ = ["ConsumerStats"]


class ConsumerStats:
    def __init__(
        self, *, topic: str, health: HealthState, metrics: Metrics,
        states: Callable[[int], PartitionState | None] = lambda _: None,
    ) -> None:  # fmt: skip
        """``states``: the ledger's state of a partition held, whose ``next_offset`` (after the last record the
        pipeline consumed from it) the commits must reach before the lag left can be commit markers."""
        self._topic = topic
        self._states = states
        self._health = health
        self._metrics = metrics
        self._assigned: frozenset[int] = frozenset()
        self._lag_labels: set[str] = set()
        self._committed: dict[int, int] = {}
        """Each held partition's committed offset at the last report: what the next one's progress counts from."""

    def assigned(self, partitions: frozenset[int]) -> None:
        """After a rebalance: lag series of partitions no longer held are removed."""
        self._assigned = partitions
        for label in [label for label in self._lag_labels if int(label) not in partitions]:
            self._metrics.consumer_lag.remove(label, self._metrics.partition_account(int(label)))
            self._lag_labels.discard(label)
        for number in [number for number in self._committed if number not in partitions]:
            del self._committed[number]

    def forget(self, partitions: Collection[int]) -> None:
        self.assigned(self._assigned - frozenset(partitions))

    def on_stats(self, stats_json: str) -> None:
        try:
            stats: dict[str, Any] = json.loads(stats_json)
        except ValueError:
            return
        brokers = stats.get("brokers", {})
        if brokers:
            self._health.brokers_up = any(
                broker.get("state") == "UP" for broker in brokers.values() if broker.get("nodeid", -1) >= 0
            )
        self._count_commits()
        partitions = stats.get("topics", {}).get(self._topic, {}).get("partitions", {})
        for name, partition in partitions.items():
            if name == "-1" or int(name) not in self._assigned:
                continue
            lag = self._lag(int(name), partition)
            if lag is not None:
                self._metrics.consumer_lag.labels(name, self._metrics.partition_account(int(name))).set(lag)
                self._lag_labels.add(name)

    def _count_commits(self) -> None:
        """Adds how far each held partition's committed offset moved since the last report to its account's
        ``imgsweep_committed_records_total``. A partition's first commit seen on this replica is where it counts
        from (what a previous owner committed is not this replica's progress)."""
        for number, offset in self._health.committed.items():
            if number not in self._assigned:
                continue
            before = self._committed.get(number)
            if before is not None and offset > before:
                self._metrics.committed_records.labels(self._metrics.partition_account(number)).inc(offset - before)
            self._committed[number] = offset

    def _lag(self, number: int, partition: dict[str, Any]) -> int | None:
        """Records from the committed offset to the end a read_committed consumer can read (the last stable offset).
        The pipeline's own last commit counts (``HealthState.committed``): librdkafka's ``consumer_lag`` counts from
        the offset the consumer itself committed or read when assigned, which exactly-once delivery's transactions
        leave behind. A partition nothing was ever committed on counts from its first event not finished (an account
        that waits from the start has lag, so its stall can be seen). A transactional topic (the collections topic
        behind the router, or an input written in transactions) ends with a commit marker that is no record: once
        the consumer has read past the end (librdkafka's position skips markers) and every record it read is
        committed, what is left is markers, and the lag is 0 rather than 1 for ever (which would read as a stall)."""
        end = partition.get("ls_offset", -1)
        if not isinstance(end, int) or end < 0:
            end = partition.get("hi_offset", -1)
        state = self._states(number)
        committed = self._health.committed.get(number)
        if committed is None and isinstance(stored := partition.get("committed_offset", -1), int) and stored >= 0:
            committed = stored
        if committed is None and state is not None:
            committed = state.offsets.low_watermark()  # never committed: from the first event not finished
        if not isinstance(end, int) or end < 0 or committed is None:
            lag = partition.get("consumer_lag", -1)
            return lag if isinstance(lag, int) and lag >= 0 else None
        position, consumed_to = partition.get("app_offset", -1), state.next_offset if state is not None else None
        if isinstance(position, int) and position >= end and committed >= (consumed_to or 0):
            return 0
        return max(0, end - committed)
