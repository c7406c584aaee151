"""How old the oldest unread event of each assigned partition is (``imgsweep_consumer_lag_seconds``).

Lag in messages says how much is left, not how close the oldest of it is to leaving the topic: at the input
topic's retention it is deleted unread. "Unread" is what the group has not committed: the record at the
committed offset. librdkafka's statistics give that offset but no timestamps, so the records' timestamps are
noted as they are consumed (``AgeNotingConsumer``; imgsweep reads each partition in order, so the record at the
committed offset has been consumed whenever there is lag, but for a moment after an assignment) and the
statistics (``on_stats``, every ``statistics.interval.ms``) say which of them are still uncommitted.
This sits at the edge, beside the consumer: nothing in the pipeline knows about it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Message

from service.metrics import Metrics

__all__ = ["AgeNotingConsumer", "UnreadAge"]


class UnreadAge:
    """Per assigned partition: the age of the record at the committed offset, 0 when there is no lag."""

    def __init__(
        self,
        *,
        topic: str,
        metrics: Metrics,
        committed: Callable[[], Mapping[int, int]] = dict,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``committed``: the offsets the pipeline committed last, by partition (with exactly-once delivery the
        producer's transaction commits them, and librdkafka's statistics do not know them)."""
        self._topic = topic
        self._committed = committed
        self._gauge = metrics.consumer_lag_seconds
        self._clock = clock
        self._lock = threading.Lock()  # consume() on the poll loop; stats_cb may be served by another poll
        self._consumed: dict[int, deque[tuple[int, float]]] = {}
        """(offset, record time in seconds) of each partition's consumed records not yet known committed."""
        self._labels: set[int] = set()

    def consumed(self, records: list[Message]) -> None:
        with self._lock:
            for record in records:
                if record.error() is not None or record.topic() != self._topic:
                    continue
                kind, millis = record.timestamp()
                partition, offset = record.partition(), record.offset()
                if kind == TIMESTAMP_NOT_AVAILABLE or partition is None or offset is None:
                    continue
                noted = self._consumed.setdefault(partition, deque())
                if not noted or offset > noted[-1][0]:
                    noted.append((offset, millis / 1000))

    def on_stats(self, stats_json: str) -> None:
        try:
            stats: dict[str, Any] = json.loads(stats_json)
        except ValueError:
            return
        partitions = stats.get("topics", {}).get(self._topic, {}).get("partitions", {})
        now = self._clock()
        with self._lock:
            held: set[int] = set()
            for name, partition in partitions.items():
                if name == "-1" or not partition.get("desired"):
                    continue
                number = int(name)
                held.add(number)
                age = self._age(number, partition, now)
                if age is not None:
                    self._gauge.labels(name).set(age)
                    self._labels.add(number)
            for number in [number for number in self._consumed if number not in held]:
                del self._consumed[number]
            for number in self._labels - held:
                self._gauge.remove(str(number))
            self._labels &= held

    def _age(self, number: int, partition: dict[str, Any], now: float) -> float | None:
        """None while unknown: lag, but the record at the committed offset not consumed yet."""
        committed, lag = partition.get("committed_offset", -1), partition.get("consumer_lag", -1)
        if not isinstance(committed, int) or committed < 0:
            committed = self._committed().get(number, -1)
            end = partition.get("ls_offset", -1)
            lag = end - committed if isinstance(end, int) and end >= 0 and committed >= 0 else lag
        noted = self._consumed.get(number, deque())
        if isinstance(committed, int) and committed >= 0:
            while noted and noted[0][0] < committed:
                noted.popleft()
            if lag == 0:
                return 0.0
        if noted:
            return max(0.0, now - noted[0][1])
        return 0.0 if lag == 0 else None


class AgeNotingConsumer(Consumer):
    """The service's consumer: every record ``consume`` returns is noted by ``UnreadAge``."""

    def __init__(self, config: dict[str, Any], unread: UnreadAge) -> None:
        super().__init__(config)
        self._unread = unread

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        records: list[Message] = super().consume(num_messages, timeout)
        self._unread.consumed(records)
        return records
