"""The wired pipeline with in-memory Kafka stand-ins and hand-resolved calls: no broker, no worker threads.

What only this level can show precisely: offsets never run ahead of outcomes when calls finish out of
order, finished offsets above the watermark travel in the commit's metadata and a new owner skips them, lost
partitions are never committed, revoked ones commit their finished prefix, late results of abandoned events
are ignored, a batch stays in the batcher until a call can start, backpressure refuses records without losing
them, and the fatal and quota states stop calling and pause consumption.
"""

from __future__ import annotations

import json
import threading
import time as clock
from datetime import UTC, datetime, time
from typing import Any, Final

import pytest
from confluent_kafka import KafkaError

from service.api.errors import FatalApiError
from service.api.fatal_gate import FatalGate
from service.api.models import BatchResult, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.offset_metadata import decode_done
from service.pipeline.processor import AccountCalls, Pipeline
from service.settings import Settings
from tests.support.calls import HeldExecutor
from tests.support.kafka import FakeConsumer, FakeMessage, FakeProducer

TOPIC = "catalog.product-delisted"
TWO_ACCOUNTS: Final[dict[str, Any]] = {
    "shoes": {"collections": ["shoes", "boots"], "access_key": "ak1", "secret_key": "sk1"},
    "rest": {"collections": ["*"], "access_key": "ak2", "secret_key": "sk2"},
}


class LimiterClock:
    """The rate limiter's clock: it moves a second on every read unless frozen, so a slot is free each turn."""

    def __init__(self) -> None:
        self.now = 0.0
        self.frozen = False

    def __call__(self) -> float:
        if not self.frozen:
            self.now += 1.0
        return self.now


def delisted(event_id: str, collection: str, images: int = 1) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "collection_name": collection,
            "product_id": "p",
            "image_ids": [f"{event_id}-{i}" for i in range(images)],
        }
    ).encode()


def message(partition: int, offset: int, value: bytes | None) -> FakeMessage:
    return FakeMessage(TOPIC, partition, offset, value)


class Rig:
    def __init__(self, consumer: FakeConsumer | None = None, **settings: Any) -> None:
        self.consumer = consumer or FakeConsumer(TOPIC)
        self.producer = FakeProducer()
        self.executor = HeldExecutor()
        self.clock = datetime(2026, 11, 23, 12, tzinfo=UTC)
        self.limiter_clock = LimiterClock()
        self.loop_clock = LimiterClock()  # batches and the budget: a second passes between any two reads
        defaults: dict[str, Any] = {
            "batch": {"linger_seconds": 0, "relist_grace_seconds": 0},
            "api": {"daily_calls": -1},
            # offsets by the consumer (exactly-once: test_transaction.py); the pipeline on the input itself, as with
            # the router off, so any account's records come on any partition (behind it: test_collections_topic.py)
            "kafka": {"delivery": "at_least_once", "repartition": False},
        }
        merged = {
            key: {**defaults.get(key, {}), **value} if isinstance(value, dict) else value
            for key, value in settings.items()
        }
        self.settings = Settings(**{**defaults, **merged})
        accounts = self.settings.api_accounts()
        self.quotas = {account.name: QuotaGate(UTC, time(0, 0), clock=lambda: self.clock) for account in accounts}
        self.limiters = {account.name: RateLimiter(2, clock=self.limiter_clock) for account in accounts}
        self.quota, self.limiter = self.quotas[accounts[0].name], self.limiters[accounts[0].name]
        self.fatal_now = 0.0
        self.fatals = {account.name: FatalGate(clock=lambda: self.fatal_now) for account in accounts}
        self.health = HealthState()
        self.metrics = Metrics(accounts=[account.name for account in accounts])
        self.pipeline = Pipeline(
            settings=self.settings,
            consumer=self.consumer,  # type: ignore[arg-type]
            producer=self.producer,  # type: ignore[arg-type]
            accounts=[
                AccountCalls(
                    account,
                    lambda batch: BatchResult(items=()),
                    self.quotas[account.name],
                    self.limiters[account.name],
                    self.fatals[account.name],
                )
                for account in accounts
            ],
            executor=self.executor,
            metrics=self.metrics,
            health=self.health,
            stop_calls=threading.Event(),
            source="imgsweep/test",
            clock=self.loop_clock,
        )
        self.consumer.subscribe(
            [TOPIC],
            on_assign=self.pipeline._rebalance.on_assign,
            on_revoke=self.pipeline._rebalance.on_revoke,
            on_lost=self.pipeline._rebalance.on_lost,
        )
        self.consumer.assign(0, 1)

    def feed(self, *messages: FakeMessage) -> None:
        self.consumer.queue.extend(messages)
        self.step()

    def step(self) -> None:
        """A turn of the loop, then a commit (the loop commits once a second)."""
        self.pipeline._turn()
        self.pipeline._commit.commit()

    def outcomes(self) -> list[dict[str, Any]]:
        return [json.loads(v or b"") for t, v, _ in self.producer.produced if t == self.settings.kafka.outcome_topic]

    def dead_letters(self) -> list[dict[str, bytes | None]]:
        return [dict(h) for t, _, h in self.producer.produced if t == self.settings.kafka.dlq_topic]

    def done_above(self, partition: int) -> frozenset[int]:
        position = self.consumer.position(partition)
        assert position is not None
        return decode_done(*position)


def test_offsets_wait_for_the_slowest_event_and_the_metadata_names_what_is_done_above_it() -> None:
    rig = Rig()
    rig.feed(message(0, 10, delisted("a", "slow")), message(0, 11, delisted("b", "fast")))
    rig.executor.resolve("fast")
    rig.step()
    assert [o["event_id"] for o in rig.outcomes()] == ["b"]
    assert rig.consumer.committed_offset(0) == 10  # b is done, but a (offset 10) is not
    assert rig.done_above(0) == {11}  # and b is remembered as done
    rig.executor.resolve("slow")
    rig.step()
    assert rig.consumer.position(0) == (12, "")


def test_a_new_owner_skips_what_the_metadata_names_and_redoes_the_rest() -> None:
    first = Rig(api={"workers": 8})
    first.feed(*(message(0, offset, delisted(f"e{offset}", f"c{offset}")) for offset in range(5)))
    for collection in ("c1", "c3", "c4"):
        first.executor.resolve(collection)
    first.step()
    first.consumer.lose(0, 1)  # a crash: the partition goes to another replica
    assert first.consumer.position(0) is not None
    second = Rig(consumer=FakeConsumer(TOPIC), api={"workers": 8})
    second.consumer.commits = list(first.consumer.commits)  # the broker's committed offsets
    second.consumer.assign(0)
    second.feed(*(message(0, offset, delisted(f"e{offset}", f"c{offset}")) for offset in range(5)))
    assert sorted(batch.collection for batch, _ in second.executor.calls) == ["c0", "c2"]
    second.executor.resolve("c0")
    second.executor.resolve("c2")
    second.step()
    assert sorted(o["event_id"] for o in second.outcomes()) == ["e0", "e2"]
    assert second.consumer.position(0) == (5, "")
    assert second.metrics.events_skipped.labels("already_done")._value.get() == 3


def test_invalid_events_are_committed_only_after_their_dead_letter_is_acknowledged() -> None:
    rig = Rig()
    rig.producer.hold = True
    rig.feed(message(1, 0, b"{broken"))
    assert rig.dead_letters()[0]["imgsweep_error_class"] == b"invalid_json"
    assert rig.consumer.committed_offset(1) is None
    rig.producer.hold = False
    rig.step()
    assert rig.consumer.committed_offset(1) == 1


def test_lost_partitions_are_never_committed_and_late_results_are_ignored() -> None:
    rig = Rig()
    rig.feed(message(0, 5, delisted("a", "x")))
    rig.consumer.lose(0)
    rig.executor.resolve("x")
    rig.step()
    assert rig.outcomes() == []
    assert rig.consumer.committed_offset(0) is None


def test_revoke_commits_the_finished_prefix_and_abandons_the_rest() -> None:
    rig = Rig(shutdown_grace_seconds=0.2)
    rig.feed(
        message(0, 0, delisted("done", "c1")),
        message(0, 1, delisted("stuck", "c2")),
        message(1, 0, delisted("other", "c3")),
    )
    rig.executor.resolve("c1")
    rig.pipeline._turn()
    rig.consumer.revoke(0)
    assert rig.consumer.committed_offset(0) == 1  # "done" committed, "stuck" left for the next owner
    rig.executor.resolve("c2")
    rig.executor.resolve("c3")
    rig.step()
    assert sorted(o["event_id"] for o in rig.outcomes()) == ["done", "other"]
    assert rig.consumer.committed_offset(1) == 1


def test_records_refused_before_a_revoke_are_not_offered_again() -> None:
    rig = Rig(kafka={"max_pending_events": 1}, shutdown_grace_seconds=0.1)
    rig.feed(message(0, 0, delisted("a", "c1")), message(0, 1, delisted("b", "c2")))
    assert len(rig.pipeline._intake._carried) == 1  # "b" was refused: the pipeline is full
    rig.consumer.revoke(0)
    assert len(rig.pipeline._intake._carried) == 0


def test_a_fatal_answer_holds_the_account_until_a_probe_is_answered_and_then_it_resumes_by_itself() -> None:
    rig = Rig()
    rig.health.subscribed = rig.health.brokers_up = True  # as run() and the first statistics set them
    assert rig.health.ready is True
    rig.feed(message(0, 0, delisted("a", "c1")), message(1, 0, delisted("b", "c2")))
    rig.executor.fail(FatalApiError("10047", "signature invalid"))  # c1's call
    rig.step()
    assert rig.consumer.paused == {0, 1}  # the only account can call nothing: the input waits
    assert rig.health.ready is False
    assert rig.health.halted_accounts == {"default": "API error 10047: signature invalid"}
    assert rig.metrics.account_halted.labels("default")._value.get() == 1
    rig.executor.resolve("c2")  # a call started before the halt: its answer resumes nothing
    rig.step()
    assert rig.health.halted_accounts
    rig.fatal_now = 59.0
    rig.step()
    assert rig.executor.calls == []  # c1 waits in its batch, uncommitted, for the probe
    assert rig.consumer.committed_offset(0) is None
    rig.fatal_now = 60.0
    rig.step()
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c1"]  # the probe: one call, no more
    rig.executor.fail(FatalApiError("10047", "signature invalid"))  # still broken: next probe in 120 s
    rig.step()
    rig.fatal_now = 179.0
    rig.step()
    assert rig.executor.calls == []
    rig.fatal_now = 180.0
    rig.step()
    rig.executor.resolve("c1")  # fixed: the probe goes through
    rig.step()
    assert rig.health.halted_accounts == {}
    assert rig.health.ready is True
    assert rig.metrics.account_halted.labels("default")._value.get() == 0
    assert rig.consumer.paused == set()
    assert sorted(o["event_id"] for o in rig.outcomes()) == ["a", "b"]  # once each, nothing failed
    assert rig.consumer.committed_offset(0) == 1


def test_a_fatal_answer_holds_only_its_account() -> None:
    rig = Rig(accounts=TWO_ACCOUNTS)
    rig.health.subscribed = rig.health.brokers_up = True
    rig.feed(message(0, 0, delisted("a", "shoes")), message(1, 0, delisted("b", "hats")))
    rig.executor.fail(FatalApiError("http_401", "unauthorized"), "shoes")
    rig.step()
    assert set(rig.health.halted_accounts) == {"shoes"}
    assert rig.health.ready is False
    assert rig.pipeline._halt.reason is None  # not the replica's halt
    assert rig.consumer.paused == set()  # the other account still calls
    rig.executor.resolve("hats")
    rig.feed(message(1, 1, delisted("c", "caps")), message(0, 1, delisted("d", "boots")))
    assert [batch.collection for batch, _ in rig.executor.calls] == ["caps"]  # boots is the halted account's
    rig.executor.resolve("caps")
    rig.step()
    assert sorted(o["event_id"] for o in rig.outcomes()) == ["b", "c"]
    assert rig.consumer.committed_offset(1) == 2
    assert rig.consumer.committed_offset(0) is None


def test_quota_exhaustion_pauses_and_holds_batches_until_the_reset() -> None:
    rig = Rig()
    rig.quota.exhausted()
    rig.feed(message(0, 0, delisted("a", "c1")))
    assert rig.consumer.paused == {0, 1}
    assert rig.executor.calls == []
    rig.clock = datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC)  # past midnight: the quota is back
    rig.step()
    assert rig.consumer.paused == set()
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c1"]


def test_a_batch_stays_in_the_batcher_and_grows_until_a_call_can_start() -> None:
    rig = Rig()
    rig.limiter_clock.frozen = True
    rig.feed(message(0, 0, delisted("a", "first")))
    assert [len(batch.items) for batch, _ in rig.executor.calls] == [1]  # the slot was free
    rig.feed(message(0, 1, delisted("b", "next", images=2)), message(1, 0, delisted("c", "next", images=3)))
    assert len(rig.executor.calls) == 1  # no slot: the batch waits in the batcher, not in a worker
    rig.limiter_clock.frozen = False
    rig.step()
    assert [len(batch.items) for batch, _ in rig.executor.calls] == [1, 5]  # one call, grown meanwhile


def test_backpressure_refuses_records_and_loses_none() -> None:
    rig = Rig(kafka={"max_pending_events": 2})
    rig.feed(*(message(0, offset, delisted(f"e{offset}", f"c{offset}")) for offset in range(4)))
    assert rig.consumer.paused == {0, 1}
    assert len(rig.pipeline._intake._carried) == 2
    for collection in ("c0", "c1"):
        rig.executor.resolve(collection)
    rig.step()
    rig.step()
    assert sorted(batch.collection for batch, _ in rig.executor.calls) == ["c2", "c3"]
    for collection in ("c2", "c3"):
        rig.executor.resolve(collection)
    rig.step()
    assert [o["event_id"] for o in rig.outcomes()] == ["e0", "e1", "e2", "e3"]
    assert rig.consumer.committed_offset(0) == 4
    assert rig.consumer.paused == set()


def test_retryable_items_go_into_a_later_call_then_fail_as_exhausted() -> None:
    rig = Rig(api={"max_attempts": 2})
    rig.feed(message(0, 0, delisted("a", "c1")))
    for _ in range(2):
        batch, future = rig.executor.calls.pop()
        future.set_result(
            BatchResult(items=(ItemResult(batch.items[0], ItemStatus.FAILED, "DELETE_IMAGE_ERROR", retryable=True),))
        )
        rig.step()
        rig.step()
    assert rig.executor.calls == []
    (outcome,) = rig.outcomes()
    assert outcome["images"][0]["reason"] == "retries_exhausted"
    assert [t for t, _, _ in rig.producer.produced] == [rig.settings.kafka.outcome_topic, rig.settings.kafka.dlq_topic]
    assert rig.consumer.committed_offset(0) == 1


def test_an_unexpected_error_in_a_call_fails_the_event_and_dead_letters_it() -> None:
    rig = Rig()
    rig.feed(message(0, 0, delisted("a", "c1")))
    rig.executor.fail(RuntimeError("a bug"))
    rig.step()
    (outcome,) = rig.outcomes()
    assert (outcome["status"], outcome["images"][0]["reason"]) == ("failed", "internal_error")
    assert [h["imgsweep_error_class"] for h in rig.dead_letters()] == [b"internal_error"]
    assert rig.metrics.dead_letters.labels("internal_error")._value.get() == 1
    assert rig.consumer.committed_offset(0) == 1


def test_an_image_failed_for_good_dead_letters_the_event_with_the_failing_images_and_reasons() -> None:
    rig = Rig()
    rig.feed(message(0, 0, delisted("a", "c1")))
    batch, future = rig.executor.calls.pop()
    future.set_result(BatchResult(items=(ItemResult(batch.items[0], ItemStatus.FAILED, "NO_RELATIVE_COLLECTION"),)))
    rig.step()
    (outcome,) = rig.outcomes()
    assert (outcome["status"], outcome["images"][0]["reason"]) == ("failed", "NO_RELATIVE_COLLECTION")
    (headers,) = rig.dead_letters()
    assert headers["imgsweep_error_class"] == b"item_failed"
    assert headers["imgsweep_error_reason"] == b"1 of 1 images failed for good: 'a-0': NO_RELATIVE_COLLECTION"
    assert rig.metrics.dead_letters.labels("item_failed")._value.get() == 1
    assert rig.consumer.committed_offset(0) == 1


@pytest.mark.parametrize("partitions", [(0,), (0, 1)])
def test_the_qps_share_follows_the_assignment(partitions: tuple[int, ...]) -> None:
    rig = Rig()
    rig.consumer.revoke(0, 1)
    rig.consumer.assign(*partitions)
    rig.step()
    assert rig.limiter.ceiling == pytest.approx(2 * len(partitions) / 2)


def test_sigterm_drain_finishes_started_events_and_leaves_the_rest_unstarted() -> None:
    rig = Rig(shutdown_grace_seconds=5)
    rig.feed(message(0, 0, delisted("gap", "slow")), message(0, 1, delisted("published", "fast")))
    rig.executor.resolve("fast")
    rig.step()
    assert [o["event_id"] for o in rig.outcomes()] == ["published"]
    assert rig.limiter.try_acquire() is not None  # another call is sending: "later" cannot start
    rig.feed(message(0, 2, delisted("later", "other")))
    assert [batch.collection for batch, _ in rig.executor.calls] == ["slow"]
    threading.Timer(0.3, rig.executor.resolve, args=("slow",)).start()
    rig.pipeline.request_shutdown()
    rig.pipeline._drain()
    assert [o["event_id"] for o in rig.outcomes()] == ["published", "gap"]
    assert rig.consumer.position(0) == (2, "")  # "later" stays uncommitted: redelivered, never duplicated
    assert [batch.collection for batch, _ in rig.executor.calls] == []  # "later" was never called
    assert rig.consumer.assigned == set()  # left the group before closing: a static member would not on close
    assert rig.consumer.closed


def test_a_drain_cut_short_commits_what_is_done_above_the_unfinished_event() -> None:
    rig = Rig(shutdown_grace_seconds=0.2)
    rig.feed(message(0, 0, delisted("stuck", "slow")), message(0, 1, delisted("done", "fast")))
    rig.executor.resolve("fast")
    rig.pipeline.request_shutdown()
    rig.pipeline._drain()
    assert rig.consumer.committed_offset(0) == 0
    assert rig.done_above(0) == {1}  # the next owner redoes "stuck" only


# --- event types, relists and the grace hold ----------------------------------------------------------------

T0 = 1_800_000_000_000
"""A record timestamp (ms) far from the machine's clock: only the partition's event time moves the hold."""


def typed(event_id: str, event_type: str, collection: str = "c", product: str = "p", images: int = 2) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/catalog",
            "type": event_type,
            "data": {
                "collection_name": collection,
                "product_id": product,
                "image_ids": [f"{product}-{i}.jpg" for i in range(images)],
            },
        }
    ).encode()


def at(partition: int, offset: int, value: bytes, seconds: float) -> FakeMessage:
    return FakeMessage(TOPIC, partition, offset, value, timestamp_ms=T0 + int(seconds * 1000))


def held_rig(**settings: Any) -> Rig:
    rig = Rig(batch={"linger_seconds": 0, "relist_grace_seconds": 10}, **settings)
    rig.pipeline._hold._clock.wall_ms = lambda: T0  # the wall clock stands still unless a test moves it
    return rig


def test_an_event_of_another_type_is_skipped_counted_and_committed() -> None:
    rig = Rig()
    rig.feed(message(0, 0, typed("x", "com.example.product.price-changed")))
    assert rig.executor.calls == []
    assert rig.producer.produced == []
    assert rig.consumer.committed_offset(0) == 1
    assert rig.metrics.events_skipped.labels("other_type")._value.get() == 1


def test_a_relist_deletes_nothing() -> None:
    rig = Rig()
    rig.feed(message(0, 0, typed("r", "com.example.product.relisted")))
    assert rig.executor.calls == []
    assert rig.outcomes() == []
    assert rig.consumer.committed_offset(0) == 1
    assert rig.metrics.events_skipped.labels("relist")._value.get() == 1


def test_a_relist_within_the_grace_cancels_the_delist() -> None:
    rig = held_rig()
    rig.feed(at(0, 0, typed("d", "com.example.product.delisted"), 0))
    assert rig.executor.calls == []  # held: the grace has not passed in the partition's event time
    rig.feed(at(0, 1, typed("r", "com.example.product.relisted"), 1))
    rig.step()
    (outcome,) = rig.outcomes()
    assert (outcome["event_id"], outcome["status"], outcome["kind"]) == ("d", "cancelled", "delist")
    assert {(i["status"], i["reason"]) for i in outcome["images"]} == {("cancelled", "relisted")}
    assert rig.executor.calls == []
    assert rig.consumer.committed_offset(0) == 2
    assert rig.metrics.images.labels("cancelled", "relisted")._value.get() == 2


def test_a_backlog_read_at_full_speed_still_sees_the_relist_first() -> None:
    rig = held_rig()
    backlog = [at(0, 0, typed("d", "com.example.product.delisted"), 0)]
    backlog += [at(0, n, typed(f"o{n}", "com.example.product.delisted", product=f"q{n}"), 0.5) for n in range(1, 4)]
    backlog += [at(0, 4, typed("r", "com.example.product.relisted"), 1)]
    backlog += [at(0, 5, typed("later", "com.example.product.delisted", product="z"), 30)]
    rig.consumer.queue.extend(backlog)
    for _ in range(3):
        rig.step()
    sent = {item.product_id for batch, _ in rig.executor.calls for item in batch.items}
    assert "p" not in sent  # relisted before its grace passed
    assert {"q1", "q2", "q3"} <= sent  # the grace passed in event time (30 s later): no wall-clock wait
    assert [o["event_id"] for o in rig.outcomes()] == ["d"]


def test_the_grace_passes_in_event_time_not_wall_time() -> None:
    rig = held_rig()
    rig.feed(at(0, 0, typed("d", "com.example.product.delisted"), 0))
    rig.consumer.queue.append(at(0, 2, typed("x", "com.example.product.delisted", product="x"), 5))
    rig.pipeline._turn()  # not caught up: offset 1 is still to come
    rig.consumer.queue.clear()
    rig.consumer.consumed.append(at(0, 9, b"", 0))  # the broker has more than was read
    rig.step()
    assert rig.executor.calls == []  # 5 s of event time passed, the wall clock did not matter
    rig.feed(at(0, 3, typed("y", "com.example.product.delisted", product="y"), 10.5))
    assert "p" in {item.product_id for batch, _ in rig.executor.calls for item in batch.items}


def test_a_partition_whose_backlog_is_full_lets_its_event_time_follow_the_wall_clock() -> None:
    """Two delists fill ``MAX_PENDING_EVENTS`` (2) within one grace, the broker holding more: the partition is
    paused, nothing newer can be read, so the grace runs on the wall clock (else they waited for ever)."""
    rig = held_rig(kafka={"max_pending_events": 2})
    rig.consumer.queue.extend([at(0, 0, typed("d", "com.example.product.delisted"), 0),
                               at(0, 1, typed("x", "com.example.product.delisted", product="x"), 0.1)])  # fmt: skip
    rig.pipeline._turn()
    rig.consumer.consumed.append(at(0, 9, b"", 0))  # the broker has more than was read
    rig.step()
    assert rig.executor.calls == []  # within the grace
    rig.pipeline._hold._clock.wall_ms = lambda: T0 + 10_101
    rig.step()
    assert {item.product_id for batch, _ in rig.executor.calls for item in batch.items} == {"p", "x"}


def test_a_caught_up_partition_lets_its_event_time_follow_the_wall_clock() -> None:
    rig = held_rig()
    rig.feed(at(0, 0, typed("d", "com.example.product.delisted"), 0))
    rig.step()
    assert rig.executor.calls == []
    rig.pipeline._hold._clock.wall_ms = lambda: T0 + 10_001  # nothing more arrives; the wall clock moves on
    rig.step()
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c"]


def test_a_relist_after_the_delete_gets_an_outcome_naming_the_deleted_images() -> None:
    rig = Rig()
    rig.feed(message(0, 0, typed("d", "com.example.product.delisted")))
    rig.executor.resolve("c")
    rig.step()
    rig.feed(message(0, 1, typed("r", "com.example.product.relisted")))
    rig.step()
    delist, relist = rig.outcomes()
    assert delist["status"] == "deleted"
    assert (relist["event_id"], relist["kind"], relist["status"]) == ("r", "relist", "re_add_required")
    assert [(i["image_id"], i["status"]) for i in relist["images"]] == [("p-0.jpg", "deleted"), ("p-1.jpg", "deleted")]
    assert rig.consumer.committed_offset(0) == 2


@pytest.mark.parametrize("accounts", [{}, "two"], ids=["one account", "two accounts"])
def test_a_relist_cancels_images_still_in_an_open_batch(accounts: Any) -> None:
    rig = Rig(accounts=TWO_ACCOUNTS if accounts == "two" else {})
    rig.limiter_clock.frozen = True
    rig.feed(message(0, 0, typed("first", "com.example.product.delisted", product="a", images=1)))
    rig.feed(message(0, 1, typed("d", "com.example.product.delisted", images=2)))  # no slot: in an open batch
    rig.feed(message(0, 2, typed("r", "com.example.product.relisted")))
    (outcome,) = rig.outcomes()
    assert (outcome["event_id"], outcome["status"]) == ("d", "cancelled")
    rig.executor.resolve("c")
    rig.limiter_clock.frozen = False
    rig.step()
    assert rig.executor.calls == []  # nothing of "d" was ever sent
    assert rig.consumer.committed_offset(0) == 3


def test_a_relist_stops_the_retries_of_images_already_in_a_call() -> None:
    rig = Rig(api={"max_attempts": 3})
    rig.feed(message(0, 0, typed("d", "com.example.product.delisted", images=2)))
    rig.feed(message(0, 1, typed("r", "com.example.product.relisted")))
    assert rig.outcomes() == []  # its images are in a call: nothing to cancel yet
    batch, future = rig.executor.calls.pop()
    future.set_result(
        BatchResult(
            items=(
                ItemResult(batch.items[0], ItemStatus.DELETED),
                ItemResult(batch.items[1], ItemStatus.FAILED, "DELETE_IMAGE_ERROR", retryable=True),
            )
        )
    )
    rig.step()
    rig.step()
    (outcome,) = rig.outcomes()
    assert outcome["status"] == "partially_deleted"
    assert [(i["status"], i["reason"]) for i in outcome["images"]] == [("deleted", None), ("cancelled", "relisted")]
    assert rig.executor.calls == []  # no second try for a relisted product
    assert rig.consumer.committed_offset(0) == 2


def test_a_relist_is_never_named_done_in_the_metadata() -> None:
    rig = held_rig()
    rig.feed(at(0, 0, typed("x", "com.example.product.delisted", product="x"), 0))
    rig.feed(at(0, 1, typed("r", "com.example.product.relisted"), 1))
    rig.step()
    assert rig.consumer.position(0) is None or 1 not in rig.done_above(0)


def test_a_delist_older_than_the_maximum_age_is_skipped_with_an_outcome() -> None:
    rig = Rig(max_event_age_seconds=60)
    rig.pipeline._hold._clock.wall_ms = lambda: T0 + 61_000
    rig.feed(at(0, 0, typed("old", "com.example.product.delisted"), 0))
    rig.feed(at(0, 1, typed("new", "com.example.product.delisted", product="n"), 30))
    (outcome,) = rig.outcomes()
    assert (outcome["event_id"], outcome["status"]) == ("old", "cancelled")
    assert {i["reason"] for i in outcome["images"]} == {"too_old"}
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c"]  # only "new"


class FatalConsumerEvent(FakeMessage):
    """What librdkafka hands the consumer when the group refused it for good (e.g. a fenced static member)."""

    def error(self) -> Any:
        return KafkaError(KafkaError._FATAL, "Fatal error: a member with this instance id is already in the group")


def test_a_fatal_consumer_event_halts_the_service() -> None:
    rig = Rig()
    rig.feed(FatalConsumerEvent(TOPIC, 0, 0, None))
    assert rig.health.fatal_reason is not None
    assert rig.health.ready is False
    assert rig.consumer.paused == {0, 1}


def test_the_budget_gauges_follow_an_emptied_batcher() -> None:
    rig = Rig(api={"daily_calls": 100}, shutdown_grace_seconds=0.1)  # a small day: a one-image batch is held
    rig.feed(message(0, 0, delisted("a", "c1")))
    assert rig.executor.calls == []
    assert rig.metrics.account("default").budget_projected_wait._value.get() > 0
    rig.consumer.revoke(0)  # its images leave the batcher
    rig.step()
    assert rig.metrics.account("default").budget_projected_wait._value.get() == 0


def test_a_collection_of_no_account_fails_with_a_dead_letter_and_no_call() -> None:
    rig = Rig(accounts={"shoes": TWO_ACCOUNTS["shoes"]})
    rig.feed(message(0, 0, delisted("a", "hats", images=2)), message(0, 1, delisted("b", "boots")))
    rig.step()
    assert [batch.collection for batch, _ in rig.executor.calls] == ["boots"]
    (outcome,) = rig.outcomes()
    assert (outcome["event_id"], outcome["status"]) == ("a", "failed")
    assert {image["reason"] for image in outcome["images"]} == {"no_account"}
    (dead_letter,) = rig.dead_letters()
    assert dead_letter["imgsweep_error_class"] == b"no_account"
    assert rig.consumer.committed_offset(0) == 1, (
        "the failed event is committed after its outcome; the other is in a call"
    )
    assert rig.metrics.dead_letters.labels("no_account")._value.get() == 1
    assert rig.metrics.images.labels("failed", "no_account")._value.get() == 2


def test_each_account_waits_for_its_own_quota() -> None:
    rig = Rig(accounts=TWO_ACCOUNTS)
    rig.quotas["shoes"].exhausted()
    rig.feed(message(0, 0, delisted("a", "shoes")), message(1, 0, delisted("b", "hats")))
    rig.step()
    assert [batch.collection for batch, _ in rig.executor.calls] == ["hats"], "the rest account still calls"
    assert rig.consumer.paused == set(), "one account waiting does not stop the input"
    assert rig.metrics.account("shoes").quota_exhausted._value.get() == 1
    assert rig.metrics.account("rest").quota_exhausted._value.get() == 0
    rig.quotas["rest"].exhausted()
    rig.step()
    assert rig.consumer.paused == {0, 1}, "no account can call: the input waits"
    rig.clock = datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC)  # past midnight: both quotas are back
    rig.step()
    assert rig.consumer.paused == set()
    assert sorted(batch.collection for batch, _ in rig.executor.calls) == ["hats", "shoes"]


def test_each_account_asks_for_the_qps_its_own_work_needs() -> None:
    rig = held_rig(accounts=TWO_ACCOUNTS)
    assert rig.pipeline._demand() == {"shoes": 0, "rest": 0}
    rig.feed(at(0, 0, typed("d", "shop.product.delisted", collection="boots"), 0))
    assert rig.pipeline._demand() == {"shoes": 1, "rest": 0}, "a held delist of boots asks for a shoes call"
    rig.feed(at(0, 1, typed("x", "shop.product.other", collection="bags"), 20_000))  # the grace passes
    rig.step()
    assert [batch.collection for batch, _ in rig.executor.calls] == ["boots"]
    assert rig.pipeline._demand() == {"shoes": 1, "rest": 0}, "a call under way is the shoes account's alone"
    rig.executor.resolve("boots")
    rig.step()
    assert rig.pipeline._demand() == {"shoes": 0, "rest": 0}


def test_a_call_held_for_its_quota_does_not_keep_the_loop_turning_fast() -> None:
    """A call that met 10040 waits in its worker until the reset, hours maybe: neither it nor its account's
    waiting batch makes the loop turn faster than its idle pace while the other account has nothing to do."""
    rig = Rig(accounts=TWO_ACCOUNTS)
    rig.health.subscribed = rig.health.brokers_up = True
    rig.feed(message(0, 0, delisted("a", "shoes")))
    assert [batch.collection for batch, _ in rig.executor.calls] == ["shoes"]
    assert rig.pipeline._poll_timeout() < 0.2, "a call under way: its answer is awaited closely"
    rig.quotas["shoes"].exhausted()
    assert rig.pipeline._poll_timeout() == 0.2
    rig.feed(message(1, 0, delisted("b", "boots")))
    assert rig.pipeline._route.pending_items() == 1, "the account's next batch waits for the reset"
    assert rig.pipeline._poll_timeout() == 0.2


def test_a_drain_stops_waiting_once_every_busy_account_waits_for_its_quota() -> None:
    rig = Rig(accounts=TWO_ACCOUNTS, shutdown_grace_seconds=30)
    rig.feed(message(0, 0, delisted("a", "shoes")), message(1, 0, delisted("b", "hats")))
    rig.executor.resolve("hats")
    rig.quotas["shoes"].exhausted()  # the shoes call waits in its worker for the reset
    rig.pipeline.request_shutdown()
    started = clock.monotonic()
    rig.pipeline._drain()
    assert clock.monotonic() - started < 10, "nothing more could finish: the drain does not wait out its grace"
    assert [outcome["event_id"] for outcome in rig.outcomes()] == ["b"]
    assert rig.consumer.committed_offset(1) == 1
    assert rig.consumer.committed_offset(0) is None, "the held call's event stays uncommitted"


def test_the_budget_sees_this_replicas_share_of_the_partitions() -> None:
    rig = Rig(FakeConsumer(TOPIC, partitions=4))
    rig.step()
    (lane,) = rig.pipeline._route.lanes
    assert lane.batch._quota().share == 0.5
    rig.consumer.assign(2)
    rig.step()
    assert lane.batch._quota().share == 0.75


def test_no_call_starts_while_the_bound_of_unacknowledged_records_waits_and_calls_resume_once_acknowledged() -> None:
    rig = Rig(kafka={"max_unacknowledged": 2})
    rig.health.subscribed = rig.health.brokers_up = True
    rig.producer.hold = True  # the outcome topic is gone: nothing is acknowledged
    rig.feed(message(0, 0, delisted("a", "c1")), message(0, 1, delisted("b", "c2")))
    rig.executor.resolve("c1")
    rig.step()
    assert rig.health.ready is True  # one record waits: under the bound
    rig.executor.resolve("c2")
    rig.step()
    assert rig.pipeline._ledger.unacknowledged() == 2
    assert rig.health.ready is False
    assert rig.health.outputs_blocked is not None
    assert "IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED=2" in rig.health.outputs_blocked
    assert rig.metrics.outputs_blocked._value.get() == 1
    rig.feed(message(1, 0, delisted("c", "c3")))
    rig.step()
    assert rig.executor.calls == []  # the bound: no call starts
    assert rig.consumer.committed_offset(0) is None
    rig.producer.hold = False  # the topic is back
    rig.step()
    rig.step()
    assert rig.health.outputs_blocked is None
    assert rig.health.ready is True
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c3"]  # calls start again, none redone
    rig.executor.resolve("c3")
    rig.step()
    assert sorted(o["event_id"] for o in rig.outcomes()) == ["a", "b", "c"]
    assert rig.consumer.committed_offset(0) == 2
    assert rig.consumer.committed_offset(1) == 1


def test_readiness_waits_for_a_broker_to_answer() -> None:
    health = HealthState(subscribed=True)
    assert health.ready is False
    health.brokers_up = True
    assert health.ready is True
