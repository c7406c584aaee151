"""Each step of the chain built directly, with in-memory stand-ins: no processor, no broker, no worker threads.

What each step owes the chain: it hands its work to the step it was built with (or decides it in the ledger),
its ``poll`` polls that step, and ``close``/``join``/``terminate`` pass on down the chain.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from datetime import time as clock_time
from typing import Any

import pytest

from service.api.models import BatchResult, DeleteItem, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.batcher import Batcher, ReadyBatch
from service.pipeline.events import EventKind, EventTypes, InvalidEvent, decode_event
from service.pipeline.halt import Halt
from service.pipeline.ledger import Finished, Ledger, Rejected
from service.pipeline.outlet import Acknowledged, Delivered
from service.pipeline.partitions import PartitionState
from service.pipeline.pending import PendingEvent, SourceRecord
from service.pipeline.steps.abstract import MessageRejected
from service.pipeline.steps.batch import BatchStep
from service.pipeline.steps.call import AccountCalls, CallStep, Workers
from service.pipeline.steps.commit import CommitStep
from service.pipeline.steps.decode import DecodeStep, EventFormat
from service.pipeline.steps.hold import EventClock, HoldStep, HoldTimes
from service.pipeline.steps.publish import PublishStep, Topics
from service.pipeline.steps.route import RouteStep
from service.settings import Settings
from service.vocabulary import CancelReason
from tests.support.calls import HeldExecutor
from tests.support.kafka import FakeConsumer, FakeMessage, FakeProducer

TOPIC = "in"
TYPES = EventTypes()


class Recorder:
    """The next step: keeps what it was handed and which of the contract's calls reached it."""

    def __init__(self, *, accepting: bool = True) -> None:
        self.items: list[Any] = []
        self.calls: list[str] = []
        self.accept = accepting
        self.pending: list[PendingEvent] = []

    def submit(self, item: Any) -> None:
        if not self.accept:
            raise MessageRejected
        self.items.append(item)

    def accepting(self) -> bool:
        return self.accept

    def holds(self, collection: str) -> bool:
        return False

    def press(self) -> None:
        self.calls.append("press")

    def poll(self) -> None:
        self.calls.append("poll")

    def close(self) -> None:
        self.calls.append("close")

    def join(self, deadline: float) -> None:
        self.calls.append("join")

    def terminate(self) -> None:
        self.calls.append("terminate")

    def pending_of(self, collection: str, product_id: str) -> list[PendingEvent]:
        return [p for p in self.pending if (p.event.collection_name, p.event.product_id) == (collection, product_id)]

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        self.pending.remove(pending)
        return [item for item in pending.items() if item.image_id not in pending.results]


def record(offset: int, value: dict[str, Any] | bytes, *, partition: int = 0) -> SourceRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return SourceRecord(TOPIC, partition, offset, b"k", raw, [], 1_700_000_000_000)


def delist(offset: int, collection: str = "c", product: str = "p", images: int = 2, **more: Any) -> PendingEvent:
    value = {"event_id": f"e{offset}", "collection_name": collection, "product_id": product, **more}
    value["image_ids"] = [f"{product}-{offset}-{i}" for i in range(images)]
    source = record(offset, value)
    event = decode_event(source.value, [], TYPES)
    return PendingEvent(event=event, source=source, first_seen_at=datetime(2026, 12, 7, tzinfo=UTC))


def ledger_with(*pending: PendingEvent, partitions: tuple[int, ...] = (0,)) -> Ledger:
    ledger = Ledger(TOPIC)
    ledger.assign(PartitionState.resumed_from(number, None) for number in partitions)
    for event in pending:
        assert ledger.admit(event.source)
        ledger.open(event)
    return ledger


def finished_ids(ledger: Ledger) -> list[str]:
    return [item.pending.event.event_id for item in ledger.outbox() if isinstance(item, Finished)]


def metrics() -> Metrics:
    return Metrics(accounts=["default"])


# ---- the ledger -----------------------------------------------------------------------------------------------


def test_the_ledger_hands_an_event_to_publishing_once_every_image_is_decided() -> None:
    event = delist(0)
    ledger = ledger_with(event)
    first, second = event.items()
    ledger.decide(event, [ItemResult(first, ItemStatus.DELETED)])
    assert ledger.outbox() == []
    assert ledger.pending_events() == 1
    ledger.decide(event, [ItemResult(second, ItemStatus.FAILED, "retries_exhausted")])
    assert finished_ids(ledger) == ["e0"]
    assert ledger.pending_events() == 0
    assert event.dead_letter_reason == "retries_exhausted"
    assert ledger.outbox() == [], "taken once"


def test_the_ledger_ignores_decisions_for_abandoned_events_and_forgets_what_a_dropped_partition_finished() -> None:
    kept, dropped = delist(0, images=1), delist(1, images=1)
    dropped = PendingEvent(dropped.event, record(1, b"{}", partition=1), dropped.first_seen_at)
    ledger = ledger_with(kept, dropped, partitions=(0, 1))
    ledger.decide(kept, [ItemResult(kept.items()[0], ItemStatus.DELETED)])
    ledger.drop([1])
    assert dropped.abandoned
    ledger.decide(dropped, [ItemResult(dropped.items()[0], ItemStatus.DELETED)])
    assert finished_ids(ledger) == ["e0"]


def test_a_relist_with_nothing_to_re_add_is_done_without_an_outcome_and_redone_by_a_new_owner() -> None:
    relist = delist(4, images=1, type="product.relisted")
    assert relist.event.kind is EventKind.RELIST
    ledger = ledger_with(relist)
    ledger.settle_relist(relist, [])
    assert ledger.outbox() == []
    state = ledger.get(0)
    assert state is not None
    assert state.offsets.low_watermark() == 5, "offset 4 is finished"
    assert 4 in state.redo_on_restart


def test_a_relist_naming_images_deleted_before_it_is_finished_with_an_outcome() -> None:
    relist = delist(4, images=3, type="product.relisted")
    ledger = ledger_with(relist)
    ledger.settle_relist(relist, [ItemResult(DeleteItem("p", "gone-1"), ItemStatus.DELETED, "deleted_before_relist")])
    assert finished_ids(ledger) == ["e4"], "one image re-added of three named: the outcome is due all the same"
    assert list(relist.results) == ["gone-1"]


def test_a_rejected_record_goes_out_as_a_dead_letter() -> None:
    ledger = ledger_with()
    source = record(0, b"{broken")
    assert ledger.admit(source)
    ledger.reject(source, InvalidEvent("invalid_json", "not JSON"))
    (item,) = ledger.outbox()
    assert isinstance(item, Rejected)
    assert item.record is source


# ---- decode ---------------------------------------------------------------------------------------------------


def test_decode_hands_events_on_and_rejects_invalid_records_into_the_ledger() -> None:
    ledger, hold = ledger_with(), Recorder()
    step = DecodeStep(
        next_step=hold, ledger=ledger, events=EventFormat(TYPES), max_pending=1, halt=Halt(HealthState(), metrics()),
        metrics=metrics(),
    )  # fmt: skip
    step.submit(FakeMessage(TOPIC, 0, 0, b"{broken"))  # type: ignore[arg-type]
    valid = {"event_id": "a", "collection_name": "c", "product_id": "p", "image_ids": ["i"]}
    step.submit(FakeMessage(TOPIC, 0, 1, json.dumps(valid).encode()))  # type: ignore[arg-type]
    assert [pending.event.event_id for pending in hold.items] == ["a"]
    assert [type(item) for item in ledger.outbox()] == [Rejected]
    with pytest.raises(MessageRejected):  # one event in the pipeline: full
        step.submit(FakeMessage(TOPIC, 0, 2, json.dumps({**valid, "event_id": "b"}).encode()))  # type: ignore[arg-type]
    assert hold.calls == ["press"], "the hold step is told the input waits"
    step.submit(FakeMessage(TOPIC, 1, 0, b"{}"))  # type: ignore[arg-type]  # a partition not held: dropped
    step.poll()
    step.close()
    step.join(0.0)
    step.terminate()
    assert hold.calls == ["press", "poll", "close", "join", "terminate"]


# ---- hold -----------------------------------------------------------------------------------------------------


def test_hold_keeps_a_delist_for_the_grace_and_a_relist_cancels_it_and_what_waits_in_a_batch() -> None:
    held, batched = delist(0, images=1), delist(1, images=2)
    relist = delist(2, images=1, type="product.relisted")
    ledger, route = ledger_with(held, batched, relist), Recorder()
    route.pending = [batched]
    wall = [1_700_000_000_000]
    step = HoldStep(
        next_step=route, ledger=ledger, times=HoldTimes(10.0, None),
        clock=EventClock(lambda _state: True, lambda: wall[0]), metrics=metrics(),
    )  # fmt: skip
    step.submit(held)
    step.poll()
    assert route.items == [], "within the grace"
    assert step.held() == 1
    step.submit(relist)
    assert step.held() == 0
    assert sorted(finished_ids(ledger)) == ["e0", "e1"]
    assert [result.status for result in held.results.values()] == [ItemStatus.CANCELLED]
    assert {result.reason for result in batched.results.values()} == {CancelReason.RELISTED}
    assert held.relisted
    assert batched.relisted
    late = delist(3, images=1)
    ledger.open(late)
    step.submit(late)
    wall[0] += 10_001
    step.poll()
    assert route.items == [late], "the grace passed"
    step.close()
    assert route.calls[-1] == "close"


# ---- route ----------------------------------------------------------------------------------------------------


def test_route_fails_an_event_of_no_account_into_the_ledger_and_polls_publishing() -> None:
    event = delist(0, collection="hats")
    ledger, publish = ledger_with(event), Recorder()
    step = RouteStep(lanes=[], next_step=publish, ledger=ledger, wake=threading.Event(), metrics=metrics())
    step.submit(event)
    assert finished_ids(ledger) == ["e0"]
    assert {result.reason for result in event.results.values()} == {"no_account"}
    step.poll()
    step.close()
    step.join(0.0)
    assert publish.calls == ["poll", "close", "join"]


# ---- batch ----------------------------------------------------------------------------------------------------


def test_batch_hands_a_full_batch_to_the_call_step_and_the_rest_on_close() -> None:
    calls = Recorder()
    account = metrics().account("default")
    now = [0.0]
    step = BatchStep(
        calls=calls, batcher=Batcher(max_items=2, max_bytes=100_000, linger_seconds=60), planner=None,
        quota=lambda: pytest.fail("no budget: never asked"), metrics=account, clock=lambda: now[0],
    )  # fmt: skip
    step.submit(delist(0, collection="a", images=2))
    step.submit(delist(1, collection="b", images=1))
    step.poll()
    assert [ready.batch.collection for ready in calls.items] == ["a"], "b waits out its linger"
    assert calls.calls == ["poll"]
    step.close()
    step.poll()
    assert [ready.batch.collection for ready in calls.items] == ["a", "b"]
    step.join(0.0)
    assert calls.calls == ["poll", "close", "poll", "join"]


# ---- call -----------------------------------------------------------------------------------------------------


def test_call_decides_each_image_in_the_ledger_and_remembers_deletions() -> None:
    event = delist(0, images=2)
    ledger, executor, wake = ledger_with(event), HeldExecutor(), threading.Event()
    tick = [0.0]

    def limiter_clock() -> float:
        tick[0] += 1.0
        return tick[0]

    limiter = RateLimiter(2, clock=limiter_clock)
    quota = QuotaGate(UTC, clock_time(0, 0), clock=lambda: datetime(2026, 12, 7, 12, tzinfo=UTC))
    api: dict[str, Any] = {"workers": 1}
    (account,) = Settings(api=api).api_accounts()  # type: ignore[arg-type]
    step = CallStep(
        calls=AccountCalls(account, lambda batch: BatchResult(items=()), quota, limiter),
        workers=Workers(executor, wake, threading.Event(), Halt(HealthState(), metrics())),
        ledger=ledger, metrics=metrics(),
    )  # fmt: skip
    batcher: Batcher[PendingEvent] = Batcher(max_items=10, max_bytes=100_000, linger_seconds=0)
    for item in event.items():
        batcher.add("c", item, event, 0.0)
    ready = batcher.take(1.0)
    assert isinstance(ready, ReadyBatch)
    step.submit(ready)
    assert not step.accepting(), "one worker, busy"
    (batch, future), = executor.calls  # fmt: skip
    future.set_result(BatchResult(items=tuple(ItemResult(item, ItemStatus.DELETED) for item in batch.items)))
    assert wake.is_set()
    step.poll()
    assert finished_ids(ledger) == ["e0"]
    assert event.api_calls == 1
    assert sorted(ledger.take_deleted(0, ("c", "p"))) == [item.image_id for item in event.items()]


# ---- publish and commit ---------------------------------------------------------------------------------------


def test_publish_produces_what_the_ledger_finished_and_commit_moves_past_it_once_acknowledged() -> None:
    event = delist(0, images=1)
    ledger, producer, consumer = ledger_with(event), FakeProducer(), FakeConsumer(TOPIC)
    commit = CommitStep(
        consumer=consumer,  # type: ignore[arg-type]
        ledger=ledger, health=HealthState(), metrics=metrics(), interval=0.0,
    )  # fmt: skip
    outlet = Acknowledged(
        producer,  # type: ignore[arg-type]
        held=ledger.holds, acked=Delivered(ledger, metrics()), halt=Halt(HealthState(), metrics()),
    )  # fmt: skip
    publish = PublishStep(
        outlet=outlet,
        topics=Topics("out", "dlq", source="imgsweep/test"),
        ledger=ledger,
        next_step=commit,
        metrics=metrics(),
    )
    ledger.decide(event, [ItemResult(event.items()[0], ItemStatus.DELETED)])
    producer.hold = True
    publish.poll()
    assert [topic for topic, _value, _headers in producer.produced] == ["out"]
    assert consumer.committed_offset(0) is None, "not acknowledged yet"
    producer.hold = False
    publish.poll()
    assert consumer.committed_offset(0) == 1
    publish.join(0.0)
    assert consumer.committed_offset(0) == 1
