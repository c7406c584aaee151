"""Reading a changelog topic back: the state a partition's previous owner left (restore on assignment).

Streamed: each batch the consumer returns is applied before the next is asked for, so a restore holds one batch
(and librdkafka's prefetch, 16 MB at most) beside the memory it fills, never the partition's records as a list
(500,000 products of four images each read into a list first peaked at 693 MB of RSS: ``bench.deletions_memory``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Generator, Iterator
from contextlib import closing
from typing import Final

from confluent_kafka import Consumer, TopicPartition

from service.metrics import Metrics
from service.pipeline.ledger import Ledger

__all__ = ["ChangelogReader", "restore"]

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_SECONDS: Final = 60.0


class ChangelogReader:
    """Reads one partition of a changelog from its start to its end now, by assignment (never in a group)."""

    def __init__(self, consumer: Consumer, topic: str, *, timeout: float = RESTORE_TIMEOUT_SECONDS) -> None:
        self._consumer = consumer
        self._topic = topic
        self._timeout = timeout

    def read(self, partition: int) -> Generator[tuple[bytes | None, bytes | None], None, None]:
        """Every committed record of ``partition``, oldest first (key, value), as they are fetched (a generator:
        close it to let the partition go). Blocks for each batch; ends at the partition's end or the timeout,
        which counts the caller's time between batches too (what was read is kept: an older memory is better
        than none)."""
        where = TopicPartition(self._topic, partition)
        low, high = self._consumer.get_watermark_offsets(where, timeout=10)
        if high <= low:
            return
        self._consumer.assign([TopicPartition(self._topic, partition, low)])
        deadline = time.monotonic() + self._timeout
        try:
            while time.monotonic() < deadline:
                for message in self._consumer.consume(1000, timeout=0.2):
                    if message.error() is None:
                        yield _raw(message.key()), _raw(message.value())
                (position,) = self._consumer.position([where])
                if position.offset >= high:  # the last offsets may be transaction markers, never read
                    break
        finally:
            self._consumer.unassign()

    def close(self) -> None:
        self._consumer.close()


def _raw(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def restore(reader: ChangelogReader, ledger: Ledger, partitions: Collection[int], metrics: Metrics) -> None:
    """The memory of deletions of partitions just assigned, read back from the changelog into the ledger."""
    started = time.monotonic()
    restored = 0
    for number in sorted(partitions):
        records = _Counted(reader.read(number))
        try:
            with closing(records):
                ledger.restore(number, records)
        except Exception as error:  # noqa: BLE001 - without it a relist may miss its outcome, nothing else
            log.warning("could not restore the memory of deletions: %s", error, extra={"partition": number})
        restored += records.count
    seconds = time.monotonic() - started
    metrics.state_restore_seconds.observe(seconds)
    metrics.state_restored_records.inc(restored)
    metrics.state_remembered_products.set(ledger.remembered())
    log.info(
        "memory of deletions restored",
        extra={"count": restored, "state": f"{ledger.remembered()} products", "wait_seconds": seconds},
    )


class _Counted:
    """A reader's stream of records, counted as they pass (the restore's metric and log)."""

    def __init__(self, records: Generator[tuple[bytes | None, bytes | None], None, None]) -> None:
        self._records = records
        self.count = 0

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        for record in self._records:
            self.count += 1
            yield record

    def close(self) -> None:
        """Ends the reader's stream now (its partition is unassigned), read to its end or not."""
        self._records.close()
