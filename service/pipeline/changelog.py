"""Reading a changelog topic back: the state a partition's previous owner left (restore on assignment)."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
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

    def read(self, partition: int) -> list[tuple[bytes | None, bytes | None]]:
        """Every committed record of ``partition``, oldest first (key, value). Blocks until its end is reached or
        the timeout (what was read is kept: an older memory is better than none)."""
        where = TopicPartition(self._topic, partition)
        low, high = self._consumer.get_watermark_offsets(where, timeout=10)
        if high <= low:
            return []
        self._consumer.assign([TopicPartition(self._topic, partition, low)])
        records: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + self._timeout
        try:
            while time.monotonic() < deadline:
                for message in self._consumer.consume(1000, timeout=0.2):
                    if message.error() is None:
                        records.append((_raw(message.key()), _raw(message.value())))
                (position,) = self._consumer.position([where])
                if position.offset >= high:  # the last offsets may be transaction markers, never read
                    break
        finally:
            self._consumer.unassign()
        return records

    def close(self) -> None:
        self._consumer.close()


def _raw(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def restore(reader: ChangelogReader, ledger: Ledger, partitions: Collection[int], metrics: Metrics) -> None:
    """The memory of deletions of partitions just assigned, read back from the changelog into the ledger."""
    started = time.monotonic()
    restored = 0
    for number in sorted(partitions):
        try:
            records = reader.read(number)
        except Exception as error:  # noqa: BLE001 - without it a relist may miss its outcome, nothing else
            log.warning("could not restore the memory of deletions: %s", error, extra={"partition": number})
            continue
        restored += len(records)
        ledger.restore(number, records)
    seconds = time.monotonic() - started
    metrics.state_restore_seconds.observe(seconds)
    metrics.state_restored_records.inc(restored)
    metrics.state_remembered_products.set(ledger.remembered())
    log.info(
        "memory of deletions restored",
        extra={"count": restored, "state": f"{ledger.remembered()} products", "wait_seconds": seconds},
    )
