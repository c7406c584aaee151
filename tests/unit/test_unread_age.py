"""imgsweep_consumer_lag_seconds: the age of the record at the committed offset, from consumed records' timestamps
and librdkafka's statistics (committed offset, lag, which partitions are assigned)."""

from __future__ import annotations

import json
from typing import Any, cast

from confluent_kafka import Message

from service.metrics import Metrics
from service.pipeline.unread_age import UnreadAge
from tests.support.clock import FakeClock
from tests.support.kafka import FakeMessage

TOPIC = "catalog.product-delisted"
T0 = 1_700_000_000.0


def records(partition: int, *offsets_and_seconds: tuple[int, float]) -> list[Message]:
    made = [
        FakeMessage(TOPIC, partition, offset, b"{}", timestamp_ms=int((T0 + seconds) * 1000))
        for offset, seconds in offsets_and_seconds
    ]
    return cast("list[Message]", made)


def stats(**partitions: tuple[int, int]) -> str:
    """Partition name -> (committed offset, lag); every partition named is assigned, "9" never is."""
    entries: dict[str, Any] = {
        name.removeprefix("p"): {"desired": True, "committed_offset": committed, "consumer_lag": lag}
        for name, (committed, lag) in partitions.items()
    }
    entries["9"] = {"desired": False, "committed_offset": -1001, "consumer_lag": -1}
    entries["-1"] = {"desired": False}
    return json.dumps({"topics": {TOPIC: {"partitions": entries}}})


def ages(metrics: Metrics) -> dict[str, float]:
    return {
        sample.labels["partition"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "imgsweep_consumer_lag_seconds"
        for sample in family.samples
    }


def test_the_age_is_that_of_the_record_at_the_committed_offset() -> None:
    metrics, clock = Metrics(), FakeClock(T0 + 100)
    unread = UnreadAge(topic=TOPIC, metrics=metrics, clock=clock)
    unread.consumed(records(0, (10, 0), (11, 30), (12, 60)))
    unread.consumed(records(1, (5, 90)))
    unread.on_stats(stats(p0=(10, 3), p1=(5, 1)))
    assert ages(metrics) == {"0": 100.0, "1": 10.0}
    clock.advance(20)
    unread.on_stats(stats(p0=(12, 1), p1=(6, 0)))  # 10 and 11 committed; partition 1 caught up
    assert ages(metrics) == {"0": 60.0, "1": 0.0}


def test_a_partition_waiting_for_the_quota_grows_older_every_tick() -> None:
    metrics, clock = Metrics(), FakeClock(T0)
    unread = UnreadAge(topic=TOPIC, metrics=metrics, clock=clock)
    unread.consumed(records(0, (0, 0), (1, 0)))
    for _ in range(3):
        clock.advance(3600)
        unread.on_stats(stats(p0=(-1001, -1)))  # nothing committed yet, lag unknown to librdkafka
    assert ages(metrics) == {"0": 3 * 3600.0}


def test_unknown_until_the_record_at_the_committed_offset_is_consumed() -> None:
    """Just after an assignment there is lag but no record yet: no figure rather than a wrong one."""
    metrics = Metrics()
    unread = UnreadAge(topic=TOPIC, metrics=metrics, clock=FakeClock(T0))
    unread.on_stats(stats(p0=(40, 100)))
    assert ages(metrics) == {}


def test_partitions_no_longer_assigned_lose_their_series_and_notes() -> None:
    metrics, clock = Metrics(), FakeClock(T0 + 10)
    unread = UnreadAge(topic=TOPIC, metrics=metrics, clock=clock)
    unread.consumed(records(0, (1, 0)) + records(3, (7, 5)))
    unread.on_stats(stats(p0=(1, 1), p3=(7, 1)))
    assert ages(metrics) == {"0": 10.0, "3": 5.0}
    unread.on_stats(stats(p0=(1, 1)))
    assert ages(metrics) == {"0": 10.0}
    unread.on_stats(stats(p0=(1, 1), p3=(9, 4)))  # back, past what was noted before: unknown again
    assert ages(metrics) == {"0": 10.0}


def test_other_topics_and_records_consumed_twice_are_ignored() -> None:
    metrics = Metrics()
    unread = UnreadAge(topic=TOPIC, metrics=metrics, clock=FakeClock(T0 + 50))
    other = cast("list[Message]", [FakeMessage("other", 0, 1, b"{}", timestamp_ms=int(T0 * 1000))])
    unread.consumed(other + records(0, (4, 20)) + records(0, (4, 0)))
    unread.on_stats(stats(p0=(4, 1)))
    assert ages(metrics) == {"0": 30.0}
    unread.on_stats("not json")
    assert ages(metrics) == {"0": 30.0}


def test_with_transactions_the_pipelines_commits_free_what_was_noted() -> None:
    """The producer's transaction commits the offsets: librdkafka's statistics say committed_offset -1, so the
    pipeline's own last commit tells what is read, and the notes behind it go (else they pile up for ever)."""
    metrics, clock = Metrics(), FakeClock(T0)
    committed: dict[int, int] = {}
    unread = UnreadAge(topic=TOPIC, metrics=metrics, committed=lambda: committed, clock=clock)
    unread.consumed(records(0, *((offset, -10.0 + offset) for offset in range(5))))
    committed[0] = 3
    clock.advance(1)
    unread.on_stats(json.dumps({"topics": {TOPIC: {"partitions": {"0": {
        "desired": True, "committed_offset": -1, "consumer_lag": -1, "ls_offset": 5,
    }}}}}))  # fmt: skip
    assert list(unread._consumed[0]) == [(3, T0 - 7), (4, T0 - 6)]
    assert metrics.registry.get_sample_value("imgsweep_consumer_lag_seconds", {"partition": "0"}) == 8
