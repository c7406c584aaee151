"""The collections topic purged below what the pipeline has committed, as Kafka Streams purges its repartition topics.

The collections topic holds a copy of every input record until its retention (7 days, decision 0022): a second
copy of the input on the brokers' disks, though a record is of no more use once the pipeline's group
(``<group id>.collections``) has committed past it (exactly-once: its outcome is committed with that offset).
Kafka Streams deletes a repartition topic's records below each commit (``repartition.purge.interval.ms``, 30 s by
default, through the admin client's DeleteRecords); this does the same: every ``PURGE_INTERVAL_SECONDS`` it reads
the group's committed offsets of the collections topic and deletes the records below them. Every replica does it
for every partition: DeleteRecords below a committed offset is safe whoever sends it, and idempotent; two small
admin requests per replica per interval. A failure is logged (once until it works again) and counted; the next
interval tries again, and retention still bounds the topic meanwhile.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import Counter

__all__ = ["PURGE_INTERVAL_SECONDS", "Purge", "purgeable"]

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS: Final = 30.0
"""Kafka Streams' ``repartition.purge.interval.ms`` default."""
REQUEST_TIMEOUT_SECONDS: Final = 15.0


def purgeable(topic: str, committed: list[TopicPartition]) -> list[TopicPartition]:
    """The DeleteRecords request for the group's committed offsets: below each committed offset of ``topic``
    (a partition the group never committed has a negative offset and is left alone)."""
    return [
        TopicPartition(topic, partition.partition, partition.offset)
        for partition in committed
        if partition.topic == topic and partition.offset > 0 and partition.error is None
    ]


class Purge:
    """The purge on a thread of its own: ``start``, then ``stop`` (it ends within a request's timeout)."""

    def __init__(
        self, admin: AdminClient, *, topic: str, group: str, purged: Counter, failures: Counter,
        interval: float = PURGE_INTERVAL_SECONDS, timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:  # fmt: skip
        self._admin = admin
        self._topic = topic
        self._group = group
        self._purged = purged
        self._failures = failures
        self._interval = interval
        self._timeout = timeout
        self._stopped = threading.Event()
        self._failing = False
        self._low: dict[int, int] = {}
        """Per partition, its low watermark after the last purge: the records below are gone."""
        self._thread = threading.Thread(target=self._run, name="collections-purge", daemon=True)

    def start(self) -> None:
        """Purges every ``interval`` seconds from now on; an interval of 0 never purges."""
        if self._interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def join(self, seconds: float) -> None:
        if self._thread.is_alive():
            self._thread.join(seconds)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self.purge_once()

    def purge_once(self) -> None:
        """One round: the group's committed offsets, then the records below them deleted."""
        try:
            request = [ConsumerGroupTopicPartitions(self._group)]
            listed = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout)
            committed = listed[self._group].result(self._timeout).topic_partitions or []
            wanted = [tp for tp in purgeable(self._topic, committed) if tp.offset > self._low.get(tp.partition, 0)]
            if wanted:
                results = self._admin.delete_records(wanted, request_timeout=self._timeout)
                for partition, future in results.items():
                    low = future.result(self._timeout).low_watermark
                    before = self._low.get(partition.partition)
                    self._low[partition.partition] = low
                    if before is not None:  # the first round of a process does not know what was there before
                        self._purged.inc(max(0, low - before))
        except (KafkaException, TimeoutError, RuntimeError) as exc:
            self._failures.inc()
            if not self._failing:
                log.warning("purging the collections topic %s failed, trying again later: %s", self._topic, exc)
            self._failing = True
            return
        if self._failing:
            log.info("purging the collections topic %s works again", self._topic)
        self._failing = False
