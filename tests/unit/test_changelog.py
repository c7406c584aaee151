"""Reading the memory of deletions back (service.pipeline.changelog.restore): streamed, counted, and let go."""

from __future__ import annotations

import logging
from collections.abc import Generator

import pytest
from confluent_kafka import TopicPartition

from service.metrics import Metrics
from service.pipeline.changelog import ChangelogReader, restore
from service.pipeline.deletions import DeletionMemory
from service.pipeline.ledger import Ledger

Record = tuple[bytes | None, bytes | None]


class Reader:
    """A changelog's partitions as a reader streams them: ``fail_after`` records of a partition, then an error."""

    def __init__(self, partitions: dict[int, list[Record]], fail_after: dict[int, int] | None = None) -> None:
        self.partitions = partitions
        self.fail_after = fail_after or {}
        self.let_go: list[int] = []
        """Partitions whose stream ended (read to its end, failed or closed): the real reader unassigns them."""

    def read(self, partition: int) -> Generator[Record, None, None]:
        try:
            for n, record in enumerate(self.partitions.get(partition, [])):
                if n == self.fail_after.get(partition):
                    raise RuntimeError("broker gone")
                yield record
        finally:
            self.let_go.append(partition)


def written(partition: int, products: int) -> list[Record]:
    source = DeletionMemory(window_seconds=86_400, max_products=1_000)
    records = [source.deleted(partition, "shoes", f"p{n}", [f"{n}.jpg"]) for n in range(products)]
    return [(record.key, record.value) for record in records]


def test_each_partition_is_read_into_the_ledger_counted_and_let_go() -> None:
    ledger, metrics = Ledger("input"), Metrics()
    reader = Reader({0: written(0, 3), 2: written(2, 5)})
    restore(reader, ledger, [2, 0], metrics)  # type: ignore[arg-type]
    assert ledger.remembered() == 8
    assert reader.let_go == [0, 2]
    assert metrics.registry.get_sample_value("imgsweep_state_restored_records_total") == 8
    assert metrics.registry.get_sample_value("imgsweep_state_remembered_products") == 8
    assert ledger.take_deleted(2, ("shoes", "p4")) == ["4.jpg"]


def test_a_reader_failing_midway_keeps_what_was_read_and_the_next_partition_is_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger, metrics = Ledger("input"), Metrics()
    reader = Reader({0: written(0, 4), 1: written(1, 2)}, fail_after={0: 3})
    with caplog.at_level(logging.WARNING, "service.pipeline.changelog"):
        restore(reader, ledger, [0, 1], metrics)  # type: ignore[arg-type]
    assert ledger.remembered() == 5, "an older memory is better than none"
    assert ledger.take_deleted(0, ("shoes", "p2")) == ["2.jpg"]
    assert ledger.take_deleted(0, ("shoes", "p3")) == []
    assert reader.let_go == [0, 1]
    assert "could not restore the memory of deletions: broker gone" in caplog.text
    assert metrics.registry.get_sample_value("imgsweep_state_restored_records_total") == 5


class Message:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return b"k%d" % self.offset

    def value(self) -> str:
        return f"v{self.offset}"


class Consumer:
    """librdkafka's side of one changelog partition of ``end`` records, two a batch."""

    def __init__(self, end: int) -> None:
        self.end, self.next = end, 0
        self.calls: list[str] = []

    def get_watermark_offsets(self, _where: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, self.end

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(f"assign {partitions[0].partition}")

    def unassign(self) -> None:
        self.calls.append("unassign")

    def consume(self, _count: int, timeout: float) -> list[Message]:
        batch = [Message(offset) for offset in range(self.next, min(self.next + 2, self.end))]
        self.next += len(batch)
        self.calls.append(f"consume {len(batch)}")
        return batch

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(partitions[0].topic, partitions[0].partition, self.next)]


def test_the_reader_hands_each_batch_over_before_it_fetches_the_next_and_lets_the_partition_go() -> None:
    consumer = Consumer(end=5)
    stream = ChangelogReader(consumer, "changelog").read(3)  # type: ignore[arg-type]
    assert consumer.calls == [], "nothing read before the first record is asked for"
    assert next(stream) == (b"k0", b"v0")
    assert consumer.calls == ["assign 3", "consume 2"]
    assert list(stream) == [(b"k1", b"v1"), (b"k2", b"v2"), (b"k3", b"v3"), (b"k4", b"v4")]
    assert consumer.calls == ["assign 3", "consume 2", "consume 2", "consume 1", "unassign"]
    halfway = Consumer(end=5)
    closed = ChangelogReader(halfway, "changelog").read(0)  # type: ignore[arg-type]
    next(closed)
    closed.close()
    assert halfway.calls == ["assign 0", "consume 2", "unassign"], "closed halfway: the partition let go"
