"""The poll loop's bookkeeping with in-memory Kafka stand-ins and hand-resolved calls: no broker, no threads.

What only this level can show precisely: offsets never run ahead of outcomes when calls finish out of
order, lost partitions are never committed, revoked ones commit their finished prefix, late results of
abandoned events are ignored, and the fatal and quota states stop dispatching and pause consumption.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, time
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from service.api.errors import FatalApiError
from service.api.models import BatchResult, DeleteBatch, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.processor import Pipeline
from service.settings import ApiSettings, BatchSettings, Settings

TOPIC = "catalog.product-delisted"


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class FakeTopicMetadata:
    def __init__(self) -> None:
        self.partitions = {0: None, 1: None}
        self.error = None


class FakeConsumer:
    def __init__(self) -> None:
        self.queue: list[FakeMessage] = []
        self.commits: list[dict[int, int]] = []
        self.paused: set[int] = set()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        taken, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return taken

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append({tp.partition: tp.offset for tp in offsets})

    def pause(self, partitions: list[Any]) -> None:
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[Any]) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def list_topics(self, topic: str, timeout: float) -> Any:
        return type("Metadata", (), {"topics": {TOPIC: FakeTopicMetadata()}})()

    def close(self) -> None:
        pass

    def committed_offset(self, partition: int) -> int | None:
        values = [commit[partition] for commit in self.commits if partition in commit]
        return max(values) if values else None


class FakeProducer:
    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None]] = []
        self._callbacks: list[Callable[[None, None], None]] = []

    def produce(self, topic: str, *, value: bytes | None, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        self.produced.append((topic, value))
        self._callbacks.append(on_delivery)

    def poll(self, timeout: float) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(None, None)
        return len(callbacks)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


class HeldExecutor(Executor):
    """Holds every submitted call until the test resolves it."""

    def __init__(self) -> None:
        self.calls: list[tuple[DeleteBatch, Future[BatchResult]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[BatchResult] = Future()
        self.calls.append((args[0], future))
        return future

    def resolve(self, collection: str, status: ItemStatus = ItemStatus.DELETED) -> None:
        for batch, future in list(self.calls):
            if batch.collection == collection:
                self.calls.remove((batch, future))
                future.set_result(BatchResult(items=tuple(ItemResult(i, status) for i in batch.items)))
                return
        raise AssertionError(f"no call for {collection}")

    def fail(self, error: Exception) -> None:
        _batch, future = self.calls.pop(0)
        future.set_exception(error)


def delisted(event_id: str, collection: str, images: int = 1) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "collection_name": collection,
            "product_id": "p",
            "image_ids": [f"{event_id}-{i}" for i in range(images)],
        }
    ).encode()


class Rig:
    def __init__(self, **settings: Any) -> None:
        self.consumer = FakeConsumer()
        self.producer = FakeProducer()
        self.executor = HeldExecutor()
        self.clock = datetime(2026, 11, 23, 12, tzinfo=UTC)
        self.quota = QuotaGate(UTC, time(0, 0), clock=lambda: self.clock)
        self.settings = Settings(**{"batch": {"linger_seconds": 0}, **settings})
        self.pipeline = Pipeline(
            settings=self.settings,
            consumer=self.consumer,  # type: ignore[arg-type]
            producer=self.producer,  # type: ignore[arg-type]
            delete=lambda batch: BatchResult(items=()),
            executor=self.executor,
            quota=self.quota,
            limiter=RateLimiter(2),
            metrics=Metrics(),
            health=HealthState(),
            stop_calls=threading.Event(),
            source="imgsweep/test",
        )
        self.pipeline._consumer.subscribe([TOPIC])
        self.assign(0, 1)

    def assign(self, *partitions: int) -> None:
        self.pipeline._on_assign(self.consumer, [TopicPartition(TOPIC, p) for p in partitions])  # type: ignore[arg-type]

    def feed(self, *messages: FakeMessage) -> None:
        self.consumer.queue.extend(messages)
        self.step()

    def step(self) -> None:
        self.pipeline._step()
        self.pipeline._commit(force=True)

    def outcomes(self) -> list[dict[str, Any]]:
        return [json.loads(v or b"") for t, v in self.producer.produced if t == self.settings.kafka.outcome_topic]


def test_offsets_wait_for_the_slowest_event_of_the_partition() -> None:
    rig = Rig()
    rig.feed(FakeMessage(0, 10, delisted("a", "slow")), FakeMessage(0, 11, delisted("b", "fast")))
    rig.executor.resolve("fast")
    rig.step()
    assert [o["event_id"] for o in rig.outcomes()] == ["b"]
    assert rig.consumer.committed_offset(0) is None  # b is done, but a (offset 10) is not
    rig.executor.resolve("slow")
    rig.step()
    assert rig.consumer.committed_offset(0) == 12


def test_invalid_events_are_committed_only_after_their_dead_letter_is_acknowledged() -> None:
    rig = Rig()
    rig.consumer.queue.append(FakeMessage(1, 0, b"{broken"))
    rig.pipeline._step()  # produced, not yet acknowledged (the fake acknowledges on the next poll)
    assert rig.producer.produced[-1][0] == rig.settings.kafka.dlq_topic
    rig.step()
    assert rig.consumer.committed_offset(1) == 1


def test_lost_partitions_are_never_committed_and_late_results_are_ignored() -> None:
    rig = Rig()
    rig.feed(FakeMessage(0, 5, delisted("a", "x")))
    rig.pipeline._on_lost(rig.consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    rig.executor.resolve("x")
    rig.step()
    assert rig.outcomes() == []
    assert rig.consumer.committed_offset(0) is None


def test_revoke_commits_the_finished_prefix_and_abandons_the_rest() -> None:
    rig = Rig()
    rig.feed(
        FakeMessage(0, 0, delisted("done", "c1")),
        FakeMessage(0, 1, delisted("stuck", "c2")),
        FakeMessage(1, 0, delisted("other", "c3")),
    )
    rig.executor.resolve("c1")
    rig.pipeline._step()
    rig.pipeline._settings = Settings(shutdown_grace_seconds=0.2, batch=BatchSettings(linger_seconds=0))
    rig.pipeline._on_revoke(rig.consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assert rig.consumer.committed_offset(0) == 1  # "done" committed, "stuck" left for the next owner
    rig.executor.resolve("c2")
    rig.executor.resolve("c3")
    rig.step()
    assert sorted(o["event_id"] for o in rig.outcomes()) == ["done", "other"]
    assert rig.consumer.committed_offset(1) == 1


def test_a_fatal_error_pauses_everything_and_stops_dispatching() -> None:
    rig = Rig()
    rig.feed(FakeMessage(0, 0, delisted("a", "c1")), FakeMessage(1, 0, delisted("b", "c2")))
    rig.executor.fail(FatalApiError("10047", "signature invalid"))
    rig.step()
    assert rig.consumer.paused == {0, 1}
    assert rig.pipeline._health.ready is False
    rig.feed(FakeMessage(0, 1, delisted("c", "c3")))
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c2"]  # nothing new was sent
    assert rig.consumer.commits == []


def test_quota_exhaustion_pauses_and_holds_batches_until_the_reset() -> None:
    rig = Rig()
    rig.quota.exhausted()
    rig.feed(FakeMessage(0, 0, delisted("a", "c1")))
    assert rig.consumer.paused == {0, 1}
    assert rig.executor.calls == []
    rig.clock = datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC)  # past midnight: the quota is back
    rig.step()
    assert rig.consumer.paused == set()
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c1"]


def test_retryable_items_go_into_a_later_call_then_fail_as_exhausted() -> None:
    rig = Rig(api={"max_attempts": 2})
    rig.feed(FakeMessage(0, 0, delisted("a", "c1")))
    batch, future = rig.executor.calls.pop()
    future.set_result(
        BatchResult(items=(ItemResult(batch.items[0], ItemStatus.FAILED, "DELETE_IMAGE_ERROR", retryable=True),))
    )
    rig.step()
    assert len(rig.executor.calls) == 1  # retried in a new call
    batch, future = rig.executor.calls.pop()
    future.set_result(
        BatchResult(items=(ItemResult(batch.items[0], ItemStatus.FAILED, "DELETE_IMAGE_ERROR", retryable=True),))
    )
    rig.step()
    (outcome,) = rig.outcomes()
    assert outcome["images"][0]["reason"] == "retries_exhausted"
    assert [t for t, _ in rig.producer.produced] == [rig.settings.kafka.outcome_topic, rig.settings.kafka.dlq_topic]
    assert rig.consumer.committed_offset(0) == 1


@pytest.mark.parametrize("partitions", [(0,), (0, 1)])
def test_the_qps_share_follows_the_assignment(partitions: tuple[int, ...]) -> None:
    rig = Rig()
    rig.pipeline._on_revoke(rig.consumer, [TopicPartition(TOPIC, p) for p in (0, 1)])  # type: ignore[arg-type]
    rig.assign(*partitions)
    rig.step()
    assert rig.pipeline._limiter.ceiling == pytest.approx(2 * len(partitions) / 2)


def test_sigterm_drain_fills_gaps_publishes_in_order_and_leaves_the_rest_unstarted() -> None:
    rig = Rig(batch=BatchSettings(linger_seconds=0, max_items=1), api={"workers": 2})
    rig.feed(FakeMessage(0, 0, delisted("gap", "slow")), FakeMessage(0, 1, delisted("published", "fast")))
    rig.executor.resolve("fast")
    rig.step()
    assert [o["event_id"] for o in rig.outcomes()] == ["published"]
    rig.pipeline._settings = Settings(
        shutdown_grace_seconds=5, batch=BatchSettings(linger_seconds=0), api=ApiSettings(workers=1)
    )
    rig.consumer.queue.append(FakeMessage(0, 2, delisted("later", "other")))
    rig.pipeline._step()  # "later" is consumed but its call has not started (one worker, busy with "slow")
    threading.Timer(0.3, rig.executor.resolve, args=("slow",)).start()
    rig.pipeline.request_shutdown()
    rig.pipeline._drain()
    assert [o["event_id"] for o in rig.outcomes()] == ["published", "gap"]
    assert rig.consumer.committed_offset(0) == 2  # "later" stays uncommitted: redelivered, never duplicated
    assert [batch.collection for batch, _ in rig.executor.calls] == []  # "later" was never called
