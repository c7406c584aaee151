"""In-memory stand-ins for confluent-kafka's Consumer and Producer, for tests of the poll loop: no broker.

They keep what the real clients do that the pipeline relies on: callbacks from ``subscribe``, commits with
metadata and ``committed()`` reading them back, pause and resume, and delivery reports served by ``poll``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

__all__ = ["FakeConsumer", "FakeMessage", "FakeProducer", "FakeTransactionalProducer"]


class FakeMessage:
    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        *,
        timestamp_ms: int = 1_700_000_000_000,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value
        self._timestamp_ms, self._headers = timestamp_ms, headers or []

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)


class _TopicMetadata:
    def __init__(self, partitions: int) -> None:
        self.partitions = dict.fromkeys(range(partitions))
        self.error = None


class FakeConsumer:
    def __init__(self, topic: str, *, partitions: int = 2) -> None:
        self.topic = topic
        self.partitions = partitions
        self.queue: list[FakeMessage] = []
        self.consumed: list[FakeMessage] = []
        self.commits: list[dict[int, tuple[int, str]]] = []
        self.paused: set[int] = set()
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.assigned: set[int] = set()
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.callbacks = callbacks

    def assign(self, *partitions: int) -> None:
        self.assigned |= set(partitions)
        self.callbacks["on_assign"](self, [TopicPartition(self.topic, p) for p in partitions])

    def revoke(self, *partitions: int) -> None:
        self.assigned -= set(partitions)
        self.callbacks["on_revoke"](self, [TopicPartition(self.topic, p) for p in partitions])

    def lose(self, *partitions: int) -> None:
        self.assigned -= set(partitions)
        self.callbacks["on_lost"](self, [TopicPartition(self.topic, p) for p in partitions])

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        fetchable = [m for m in self.queue if m.partition() not in self.paused][:num_messages]
        self.queue = [m for m in self.queue if m not in fetchable]
        self.consumed.extend(fetchable)
        return fetchable

    def get_watermark_offsets(self, partition: TopicPartition, cached: bool = False) -> tuple[int, int]:
        """The high watermark: one past the last offset ever queued for the partition (0 if none)."""
        offsets = [m.offset() for m in [*self.queue, *self.consumed] if m.partition() == partition.partition]
        return (0, max(offsets) + 1 if offsets else 0)

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append({tp.partition: (tp.offset, tp.metadata or "") for tp in offsets})

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        result = []
        for tp in partitions:
            position = self.position(tp.partition)
            offset, metadata = position if position is not None else (-1001, "")
            result.append(TopicPartition(self.topic, tp.partition, offset, metadata=metadata))
        return result

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def list_topics(self, topic: str, timeout: float) -> Any:
        return type("Metadata", (), {"topics": {self.topic: _TopicMetadata(self.partitions)}})()

    def unsubscribe(self) -> None:
        self.revoke(*sorted(self.assigned))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in self.assigned]

    def close(self) -> None:
        self.closed = True

    def consumer_group_metadata(self) -> object:
        return ("group-metadata", self.topic, frozenset(self.assigned))

    def position(self, partition: int) -> tuple[int, str] | None:
        """The last commit of the partition (offset, metadata), as the broker would keep it."""
        positions = [commit[partition] for commit in self.commits if partition in commit]
        return positions[-1] if positions else None

    def committed_offset(self, partition: int) -> int | None:
        position = self.position(partition)
        return None if position is None else position[0]


class FakeProducer:
    """Acknowledges every record at the next ``poll`` (or ``flush``), unless ``hold`` is set."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, list[tuple[str, bytes | None]]]] = []
        self.partitions: list[int | None] = []
        """The partition each record was produced to, when one was named (a changelog's); else None."""
        self._callbacks: list[Callable[[Any, Any], None]] = []
        self.hold = False

    def produce(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        on_delivery: Any,
        headers: Any = (),
        partition: int | None = None,
    ) -> None:
        self.produced.append((topic, value, list(headers)))
        self.partitions.append(partition)
        self._callbacks.append(on_delivery)

    def poll(self, timeout: float) -> int:
        if self.hold:
            return 0
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(None, None)
        return len(callbacks)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return len(self._callbacks)


class FakeTransactionalProducer(FakeProducer):
    """A transactional producer as the broker sees it: records count once their transaction commits, and the
    offsets sent into a transaction become the group's committed offsets (``consumer.commits``) only then.

    ``fail_delivery`` fails the next delivery (an abortable transaction); ``fail_commit`` makes the next
    ``commit_transaction`` raise ``fail_commit`` (a ``KafkaError``), ``fail_abort`` the next
    ``abort_transaction``, ``fail_poll`` the next ``poll`` (librdkafka raises its fatal error from any call);
    ``produce`` refuses a record for a topic in ``gone`` (``_UNKNOWN_TOPIC``), and ``list_topics`` leaves those
    out; every record while ``refuse`` is set (a ``KafkaError``: the producer's state, e.g. ``_STATE``).
    ``committed`` may be shared by several producers (one broker)."""

    def __init__(self, consumer: FakeConsumer) -> None:
        super().__init__()
        self.consumer = consumer
        self.committed: list[tuple[str, bytes | None, list[tuple[str, bytes | None]]]] = []
        """What a read_committed reader sees."""
        self.aborted = 0
        self.initialised = False
        self.fail_delivery = False
        self.fail_commit: Any = None
        self.fail_abort: Any = None
        self.fail_poll: Any = None
        self.gone: set[str] = set()
        self.refuse: Any = None
        self.known: set[str] = set()
        self.purged = False
        self._open: list[tuple[str, bytes | None, list[tuple[str, bytes | None]]]] | None = None
        self._offsets: dict[int, tuple[int, str]] = {}

    def init_transactions(self, timeout: float = -1) -> None:
        self.initialised = True

    def begin_transaction(self) -> None:
        assert self.initialised, "init_transactions first"
        assert self._open is None, "a transaction is open already"
        self._open, self._offsets = [], {}

    def produce(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        on_delivery: Any,
        headers: Any = (),
        partition: int | None = None,
    ) -> None:
        assert self._open is not None, "produce outside a transaction"
        self.known.add(topic)
        if topic in self.gone:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC, f"{topic}: unknown topic"))
        if self.refuse is not None:
            raise KafkaException(self.refuse)
        super().produce(topic, value=value, key=key, headers=headers, partition=partition, on_delivery=on_delivery)
        self._open.append(self.produced[-1])

    def poll(self, timeout: float) -> int:
        if self.fail_poll is not None:
            error, self.fail_poll = self.fail_poll, None
            raise KafkaException(error)
        if self.hold:
            return 0
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            if self.fail_delivery:
                self.fail_delivery = False
                callback(KafkaError(KafkaError._MSG_TIMED_OUT, "delivery timed out"), None)
            else:
                callback(None, None)
        return len(callbacks)

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float = -1) -> None:
        assert self._open is not None, "send_offsets_to_transaction outside a transaction"
        assert metadata == self.consumer.consumer_group_metadata()
        self._offsets.update({tp.partition: (tp.offset, tp.metadata or "") for tp in offsets})

    def commit_transaction(self, timeout: float = -1) -> None:
        assert self._open is not None, "commit_transaction outside a transaction"
        if self.fail_commit is not None:
            error, self.fail_commit = self.fail_commit, None
            raise KafkaException(error)
        self.flush(0)
        self.committed.extend(self._open)
        if self._offsets:
            self.consumer.commits.append(dict(self._offsets))
        self._open = None

    def abort_transaction(self, timeout: float = -1) -> None:
        assert self._open is not None, "abort_transaction outside a transaction"
        if self.fail_abort is not None:
            error, self.fail_abort = self.fail_abort, None
            raise KafkaException(error)
        self._callbacks.clear()
        self._open = None
        self.aborted += 1

    def purge(self) -> None:
        self._callbacks.clear()
        self.purged = True

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        led = type("Partition", (), {"leader": 1, "error": None})()
        topics = {name: _TopicMetadata(1) for name in self.known - self.gone}
        for metadata in topics.values():
            metadata.partitions = {0: led}
        return type("Metadata", (), {"topics": topics})()
