"""Exactly-once delivery, wired, with a transactional stand-in of the producer: no broker, no worker threads.

What a read_committed reader of the outcome topic sees (``producer.committed``) and what the group's committed
offsets are (``consumer.commits``) move together, in one transaction; an aborted transaction's records are
produced again without asking the API again; a fenced producer ends the process; a producer librdkafka made
fatal otherwise is replaced in the process; records for a topic that is gone wait for it.
"""

from __future__ import annotations

import json
import threading
import time as clock
from datetime import UTC, datetime, time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from service.api.models import BatchResult
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.processor import AccountCalls, Pipeline
from service.settings import Settings
from tests.support.calls import HeldExecutor
from tests.support.kafka import FakeConsumer, FakeMessage, FakeTransactionalProducer

TOPIC = "catalog.product-delisted"


def delisted(event_id: str, collection: str) -> bytes:
    document = {"event_id": event_id, "collection_name": collection, "product_id": "p", "image_ids": [event_id]}
    return json.dumps(document).encode()


class Tick:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class SlowCommitProducer(FakeTransactionalProducer):
    """``commit_transaction`` waits until ``answer`` is set: the broker is slow to answer."""

    def __init__(self, consumer: FakeConsumer) -> None:
        super().__init__(consumer)
        self.answer = threading.Event()
        self.answer.set()

    def commit_transaction(self, timeout: float = -1) -> None:
        assert self.answer.wait(10), "the test never answered"
        super().commit_transaction(timeout)


class Rig:
    def __init__(self, consumer: FakeConsumer | None = None, *, renew: bool = False, **kafka: Any) -> None:
        self.consumer = consumer or FakeConsumer(TOPIC)
        self.producer = SlowCommitProducer(self.consumer)
        self.producers = [self.producer]
        """Every producer made, the first one first (a new one takes over when librdkafka makes one fatal)."""
        self.executor = HeldExecutor()
        settings: dict[str, Any] = {
            "batch": {"linger_seconds": 0, "relist_grace_seconds": 0},
            "api": {"daily_calls": -1, "workers": 8},
            "kafka": kafka,
        }
        self.settings = Settings(**settings)
        assert self.settings.kafka.delivery == "exactly_once", "the default"
        (account,) = self.settings.api_accounts()
        quota = QuotaGate(UTC, time(0, 0), clock=lambda: datetime(2026, 12, 7, 12, tzinfo=UTC))
        self.metrics = Metrics()
        self.health = HealthState()
        self.pipeline = Pipeline(
            settings=self.settings,
            consumer=self.consumer,  # type: ignore[arg-type]
            producer=self.producer,  # type: ignore[arg-type]
            accounts=[AccountCalls(account, lambda batch: BatchResult(items=()), quota, RateLimiter(8, clock=Tick()))],
            executor=self.executor,
            metrics=self.metrics,
            health=self.health,
            stop_calls=threading.Event(),
            source="imgsweep/test",
            clock=Tick(),
            renew_producer=self._another if renew else None,  # type: ignore[arg-type]
        )
        assert self.pipeline._transaction is not None
        self.pipeline._transaction.start()
        rebalance = self.pipeline._rebalance
        self.consumer.subscribe(
            [TOPIC], on_assign=rebalance.on_assign, on_revoke=rebalance.on_revoke, on_lost=rebalance.on_lost
        )
        self.consumer.assign(0, 1)

    def _another(self) -> SlowCommitProducer:
        producer = SlowCommitProducer(self.consumer)
        producer.committed = self.producer.committed  # one broker: what a read_committed reader sees
        self.producers.append(producer)
        return producer

    def step_until(self, done: Any, timeout: float = 5.0) -> None:
        """Turns the loop (and commits) until ``done()``: a new producer is made on a thread of its own."""
        deadline = clock.monotonic() + timeout
        while not done():
            assert clock.monotonic() < deadline, "never done"
            self.step()
            clock.sleep(0.01)

    def feed(self, *values: tuple[int, int, bytes]) -> None:
        self.consumer.queue.extend(FakeMessage(TOPIC, partition, offset, value) for partition, offset, value in values)
        self.step()

    def step(self) -> None:
        self.pipeline._turn()
        self.pipeline._commit.commit()

    def committed_outcomes(self) -> list[str]:
        outcomes = self.settings.kafka.outcome_topic
        return [
            json.loads(value or b"")["event_id"] for topic, value, _ in self.producer.committed if topic == outcomes
        ]


def test_outcomes_and_their_offsets_commit_in_one_transaction() -> None:
    rig = Rig()
    rig.feed((0, 10, delisted("a", "slow")), (0, 11, delisted("b", "fast")))
    assert rig.consumer.commits == []
    rig.executor.resolve("fast")
    rig.pipeline._turn()  # b's outcome is produced into the open transaction: nobody sees it yet
    assert rig.committed_outcomes() == []
    rig.pipeline._commit.commit()
    assert rig.committed_outcomes() == ["b"]
    assert rig.consumer.position(0) == (10, rig.consumer.position(0)[1]), "a holds the watermark"  # type: ignore[index]
    rig.executor.resolve("slow")
    rig.step()
    assert rig.committed_outcomes() == ["b", "a"]
    assert rig.consumer.position(0) == (12, "")
    assert rig.metrics.transaction_commits._value.get() == 2


def test_the_loop_goes_on_while_a_transaction_commits_and_what_it_publishes_meanwhile_goes_in_the_next() -> None:
    rig = Rig()
    rig.feed((0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    rig.executor.resolve("c1")
    rig.pipeline._turn()  # a's outcome in the open transaction
    rig.producer.answer.clear()  # the broker takes its time over the next commit
    checkpoint, transaction = rig.pipeline._commit, rig.pipeline._transaction
    assert transaction is not None
    checkpoint._last = -1.0  # type: ignore[attr-defined]  # the interval is over
    rig.pipeline._turn()  # the transaction closes and its commit starts on its own thread
    assert transaction.committing
    rig.executor.resolve("c2")
    rig.pipeline._turn()  # returns: the loop does not wait for the broker; b's outcome waits for the next one
    assert transaction.committing
    outcomes = rig.settings.kafka.outcome_topic
    produced = [json.loads(value or b"")["event_id"] for topic, value, _ in rig.producer.produced if topic == outcomes]
    assert produced == ["a"]
    assert rig.committed_outcomes() == []
    rig.producer.answer.set()
    assert transaction._committing is not None
    assert transaction._committing.wait(5)
    rig.pipeline._turn()  # the outcome read: a committed with its offset, b produced into the next transaction
    assert rig.committed_outcomes() == ["a"]
    assert rig.consumer.commits == [{0: (1, "")}]
    assert not transaction.committing
    rig.pipeline._commit.commit()
    assert rig.committed_outcomes() == ["a", "b"]
    assert rig.consumer.position(1) == (1, "")
    assert rig.metrics.transaction_commits._value.get() == 2
    assert rig.metrics.transaction_loop_seconds._sum.get() > 0


def test_a_failed_delivery_aborts_and_the_same_records_go_again_without_another_call() -> None:
    rig = Rig()
    rig.feed((0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    calls = len(rig.executor.calls)
    rig.producer.fail_delivery = True
    rig.executor.resolve("c1")
    rig.executor.resolve("c2")
    rig.step()  # a's delivery fails: the transaction is aborted and both outcomes are produced again
    assert rig.producer.aborted == 1
    assert rig.committed_outcomes() == []
    rig.step()
    assert sorted(rig.committed_outcomes()) == ["a", "b"], "each once"
    assert calls == 2, "no call was made again"
    assert rig.executor.calls == []
    assert rig.consumer.position(0) == (1, "")
    assert rig.consumer.position(1) == (1, "")
    assert rig.metrics.transaction_aborts.labels("delivery_failed")._value.get() == 1
    assert rig.metrics.outcomes.labels("deleted", "default")._value.get() == 2, "each outcome counted once"


def test_a_refused_commit_aborts_and_commits_the_same_outcomes_next_time() -> None:
    rig = Rig()
    rig.feed((0, 0, delisted("a", "c1")))
    rig.executor.resolve("c1")
    rig.pipeline._turn()
    rig.producer.fail_commit = KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "busy", retriable=True)
    rig.pipeline._commit.commit()
    assert rig.producer.aborted == 1
    assert rig.consumer.commits == []
    rig.step()
    assert rig.committed_outcomes() == ["a"]
    assert rig.consumer.position(0) == (1, "")


REFUSED_ABORT = KafkaError(KafkaError.INVALID_TXN_STATE, "Failed to end transaction", fatal=True)


@pytest.mark.parametrize(
    ("error", "abort_error"),
    [
        (KafkaError(KafkaError._FENCED, "fenced by a newer producer", fatal=True), None),
        # Not fenced, but the commit may have reached the broker: its records produced again could be read twice
        (KafkaError(KafkaError.INVALID_TXN_STATE, "commit failed", fatal=True), None),
        # A commit that failed, then an abort refused: the coordinator may hold it committed (CompleteCommit)
        (KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "busy", retriable=True), REFUSED_ABORT),
    ],
)
def test_a_fenced_producer_or_a_fatal_commit_ends_the_process_and_commits_nothing_more(
    error: KafkaError, abort_error: KafkaError | None
) -> None:
    rig = Rig(renew=True)
    rig.feed((0, 0, delisted("a", "c1")))
    rig.executor.resolve("c1")
    rig.pipeline._turn()
    rig.producer.fail_commit = error
    rig.producer.fail_abort = abort_error
    rig.pipeline._commit.commit()
    assert rig.pipeline._halt.exit
    assert rig.pipeline.exit_code == 1
    assert len(rig.producers) == 1, "no new producer"
    rig.pipeline.request_shutdown()
    rig.pipeline.run()  # returns: drains with nothing committed
    assert rig.committed_outcomes() == []
    assert rig.consumer.commits == []


def test_records_of_lost_partitions_never_commit() -> None:
    rig = Rig()
    rig.feed((0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    rig.executor.resolve("c1")
    rig.executor.resolve("c2")
    rig.pipeline._turn()  # both outcomes in the open transaction
    rig.consumer.lose(1)
    rig.pipeline._commit.commit()
    assert rig.committed_outcomes() == ["a"]
    assert rig.consumer.position(1) is None
    assert rig.metrics.transaction_aborts.labels("partitions_lost")._value.get() == 1


def test_the_open_transactions_undelivered_records_count_against_the_bound_and_calls_resume_once_delivered() -> None:
    rig = Rig(max_unacknowledged=2)
    rig.producer.hold = True  # the outcome topic takes nothing: the open transaction's records wait
    rig.feed((0, 0, delisted("a", "c1")), (0, 1, delisted("b", "c2")))
    rig.executor.resolve("c1")
    rig.executor.resolve("c2")
    rig.step()
    assert rig.pipeline._ledger.unacknowledged() == 2
    assert rig.health.outputs_blocked is not None
    rig.feed((1, 0, delisted("c", "c3")))
    assert rig.executor.calls == [], "the bound: no call starts"
    assert rig.committed_outcomes() == []
    rig.producer.hold = False
    rig.step()
    rig.step()
    assert rig.health.outputs_blocked is None
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c3"]
    rig.executor.resolve("c3")
    rig.step()
    assert sorted(rig.committed_outcomes()) == ["a", "b", "c"], "each once, no call redone"


@pytest.mark.parametrize("where", ["abort", "poll"])
def test_a_producer_librdkafka_made_fatal_without_a_fence_is_replaced_and_the_records_commit_once(where: str) -> None:
    rig = Rig(renew=True)
    rig.feed((0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    if where == "abort":
        rig.producer.fail_delivery = True
        # librdkafka #4849: EndTxn(abort) for a transaction the coordinator never saw begin is refused, and fatal
        rig.producer.fail_abort = REFUSED_ABORT
    else:  # an abort that timed out was refused later: librdkafka raises it from the next call
        rig.producer.fail_poll = REFUSED_ABORT
    rig.executor.resolve("c1")
    rig.executor.resolve("c2")
    rig.step()  # a's delivery fails and the abort is refused, or a poll raises: a new producer is being made
    assert not rig.pipeline._halt.exit, "no exit: the process keeps the answers"
    rig.step_until(lambda: sorted(rig.committed_outcomes()) == ["a", "b"])
    assert len(rig.producers) == 2
    assert rig.producer.purged, "the old producer's queue is let go"
    assert rig.executor.calls == [], "no call made again"
    assert rig.consumer.position(0) == (1, "")
    assert rig.consumer.position(1) == (1, "")
    assert rig.metrics.transaction_aborts.labels("producer_failed")._value.get() == 1
    assert rig.metrics.outcomes.labels("deleted", "default")._value.get() == 2, "each outcome counted once"
    rig.step()
    assert sorted(rig.committed_outcomes()) == ["a", "b"], "each once"


def test_records_for_a_topic_that_is_gone_wait_for_it_and_are_never_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("service.pipeline.topic_wait.LOOK_SECONDS", 0.0)
    rig = Rig(max_unacknowledged=2)
    outcomes, dead_letters = rig.settings.kafka.outcome_topic, rig.settings.kafka.dlq_topic
    rig.producer.gone.add(outcomes)  # librdkafka knows the topic is gone: produce refuses at once
    rig.feed((0, 0, delisted("a", "c1")), (0, 1, delisted("b", "c2")))
    rig.executor.resolve("c1")
    rig.executor.resolve("c2")
    for _ in range(3):
        rig.step()
    transaction = rig.pipeline._transaction
    assert transaction is not None
    assert transaction.missing_topics == {outcomes}
    assert rig.committed_outcomes() == []
    assert [topic for topic, _, _ in rig.producer.produced if topic == dead_letters] == [], "not dead-lettered"
    assert rig.pipeline._ledger.unacknowledged() == 2
    assert rig.health.outputs_blocked is not None, "the bound: calls stop, readiness off"
    assert f"topics gone: {outcomes}" in rig.health.outputs_blocked
    assert rig.consumer.position(0) is None, "nothing committed past them"
    rig.producer.gone.clear()  # the topic is back
    rig.step_until(lambda: rig.committed_outcomes() == ["a", "b"])  # in their order
    assert rig.consumer.position(0) == (2, "")
    assert transaction.missing_topics == frozenset()
    rig.step()
    assert rig.health.outputs_blocked is None


def test_a_record_the_producer_refuses_for_its_own_state_goes_again_and_is_never_dead_lettered() -> None:
    rig = Rig()
    rig.feed((0, 0, delisted("a", "c1")))
    # librdkafka refuses every record while an abort is under way (no coordinator answered): not the record's fault
    rig.producer.refuse = KafkaError(KafkaError._STATE, "Unable to produce message: Local: Erroneous state")
    rig.executor.resolve("c1")
    rig.step()
    rig.step()
    assert rig.consumer.position(0) is None, "no offset committed without its outcome"
    assert rig.pipeline._ledger.unacknowledged() == 1
    dead_letters = rig.settings.kafka.dlq_topic
    assert [topic for topic, _, _ in rig.producer.produced if topic == dead_letters] == [], "not dead-lettered"
    rig.producer.refuse = None  # the abort is over
    rig.step()
    rig.step()
    assert rig.committed_outcomes() == ["a"]
    assert rig.consumer.position(0) == (1, "")
    assert rig.executor.calls == [], "no call made again"


def test_an_abort_unfinished_after_the_offsets_failed_gives_the_records_to_a_new_producer() -> None:
    rig = Rig(renew=True)
    rig.feed((0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    rig.executor.resolve("c1")
    rig.executor.resolve("c2")
    rig.pipeline._turn()  # both outcomes in the open transaction

    def timed_out(*_args: Any, **_kwargs: Any) -> None:  # the coordinator's requests wait in librdkafka's out-queue
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Local: Timed out", retriable=True))

    stuck = rig.producer
    stuck.send_offsets_to_transaction = timed_out  # type: ignore[method-assign]
    stuck.abort_transaction = timed_out  # type: ignore[method-assign]
    transaction = rig.pipeline._transaction
    assert transaction is not None
    transaction._stuck = 0.0  # the abort is overdue at once
    rig.step_until(lambda: sorted(rig.committed_outcomes()) == ["a", "b"])
    assert not rig.pipeline._halt.exit
    assert len(rig.producers) == 2
    assert stuck.purged
    assert rig.executor.calls == [], "no call made again"
    assert rig.consumer.position(0) == (1, "")
    assert rig.consumer.position(1) == (1, "")
    assert rig.metrics.outcomes.labels("deleted", "default")._value.get() == 2, "each outcome counted once"


def test_an_unfinished_abort_after_a_failed_commit_never_gives_the_records_to_a_new_producer() -> None:
    rig = Rig(renew=True)
    rig.feed((0, 0, delisted("a", "c1")))
    rig.executor.resolve("c1")
    rig.pipeline._turn()

    def timed_out(*_args: Any, **_kwargs: Any) -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Local: Timed out", retriable=True))

    rig.producer.commit_transaction = timed_out  # type: ignore[method-assign]  # it may have reached the broker
    rig.producer.abort_transaction = timed_out  # type: ignore[method-assign]
    transaction = rig.pipeline._transaction
    assert transaction is not None
    transaction._stuck = 0.0
    for _ in range(5):
        rig.step()
        transaction.settle(5)
    assert len(rig.producers) == 1, "its records could be read twice"
    assert rig.committed_outcomes() == []
