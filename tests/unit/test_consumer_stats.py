"""Consumer lag from librdkafka's statistics (service.pipeline.consumer_stats), whoever commits the offsets."""

from __future__ import annotations

import json
from typing import Any

from service.health import HealthState
from service.metrics import SHARED, Metrics
from service.pipeline.consumer_stats import ConsumerStats
from service.pipeline.partitions import PartitionState

TOPIC = "in"


def stats(**partitions: dict[str, Any]) -> str:
    return json.dumps({"brokers": {}, "topics": {TOPIC: {"partitions": partitions}}})


def lag(metrics: Metrics, partition: str, account: str = "default") -> float | None:
    return metrics.registry.get_sample_value(
        "imgsweep_consumer_lag_messages", {"partition": partition, "account": account}
    )


def committed(metrics: Metrics, account: str) -> float | None:
    return metrics.registry.get_sample_value("imgsweep_committed_records_total", {"account": account})


def test_lag_counts_from_the_consumers_commit_when_librdkafka_knows_it() -> None:
    health, metrics = HealthState(), Metrics()
    reader = ConsumerStats(topic=TOPIC, health=health, metrics=metrics)
    reader.assigned(frozenset({0}))
    reader.on_stats(stats(**{"0": {"consumer_lag": 7, "ls_offset": 500}}))
    assert lag(metrics, "0") == 7


def test_with_transactions_lag_counts_from_the_pipelines_last_commit_to_the_last_stable_offset() -> None:
    health, metrics = HealthState(), Metrics()
    reader = ConsumerStats(topic=TOPIC, health=health, metrics=metrics)
    reader.assigned(frozenset({0, 1}))
    health.committed = {0: 100}
    reader.on_stats(stats(**{"0": {"consumer_lag": -1, "ls_offset": 120, "hi_offset": 125}, "1": {"consumer_lag": -1}}))
    assert lag(metrics, "0") == 20, "the last stable offset, not the high watermark: read_committed"
    assert lag(metrics, "1") is None, "nothing committed, nothing known: no series rather than a wrong one"


def test_a_partition_never_committed_counts_from_its_first_event_not_finished() -> None:
    """Two accounts behind the router, one out of quota from the start: its partitions are never committed, and
    their lag must still show (measured: the waiting account's lag read 0 with 300 events waiting)."""
    waiting = PartitionState(1, next_offset=40)
    for offset in range(10, 40):
        waiting.offsets.track(offset)
    health, metrics = HealthState(), Metrics()
    reader = ConsumerStats(topic=TOPIC, health=health, metrics=metrics, states={1: waiting}.get)
    reader.assigned(frozenset({1}))
    reader.on_stats(stats(**{"1": {"consumer_lag": -1, "committed_offset": -1001, "ls_offset": 300, "app_offset": 40}}))
    assert lag(metrics, "1") == 290


def test_behind_the_router_lag_and_commits_carry_the_account_whose_partition_it_is() -> None:
    health, metrics = HealthState(), Metrics(accounts=["shoes", "bags"], by_partition=True)
    reader = ConsumerStats(topic=TOPIC, health=health, metrics=metrics)
    reader.assigned(frozenset({0, 1, 2, 3}))
    health.committed = {0: 10, 1: 10, 2: 10, 3: 10}
    reader.on_stats(stats(**{str(p): {"consumer_lag": p + 1} for p in range(4)}))
    assert [lag(metrics, "0", "shoes"), lag(metrics, "1", "bags"), lag(metrics, "2", "shoes")] == [1, 2, 3]
    assert lag(metrics, "1", "shoes") is None, "partition p is account p % 2's only"
    assert committed(metrics, "shoes") == committed(metrics, "bags") == 0, "the first commit seen is the start"

    health.committed = {0: 15, 1: 10, 2: 12, 3: 10}  # shoes moves on, bags waits (its quota, say)
    reader.on_stats(stats())
    assert committed(metrics, "shoes") == 7
    assert committed(metrics, "bags") == 0

    reader.assigned(frozenset({1, 3}))  # 0 and 2 go to another replica
    health.committed = {0: 99, 1: 11, 2: 99, 3: 10}
    reader.on_stats(stats())
    assert committed(metrics, "shoes") == 7, "partitions no longer held count nothing"
    assert committed(metrics, "bags") == 1
    assert lag(metrics, "0", "shoes") is None, "their lag series go"


def test_without_the_router_several_accounts_share_every_partition_under_one_label() -> None:
    health, metrics = HealthState(), Metrics(accounts=["shoes", "bags"])
    reader = ConsumerStats(topic=TOPIC, health=health, metrics=metrics)
    reader.assigned(frozenset({0, 1}))
    reader.on_stats(stats(**{"0": {"consumer_lag": 4}, "1": {"consumer_lag": 5}}))
    assert [lag(metrics, "0", SHARED), lag(metrics, "1", SHARED)] == [4, 5]
    assert metrics.partition_account(1) == SHARED
    assert Metrics(accounts=["shoes"]).partition_account(7) == "shoes", "one account: every partition is its"


def test_a_transaction_s_commit_marker_past_the_last_record_is_no_lag_once_everything_read_is_committed() -> None:
    """Measured on the real broker (librdkafka 2.16): after a transaction of offsets 0-2 the last stable offset is
    4 (the marker is 3), the consumer's position 4, and a commit of 3 (after the last record) left a lag of 1 for
    ever: an idle account behind the router looked stalled."""
    states = {0: PartitionState(0, next_offset=3), 1: PartitionState(1, next_offset=3), 2: PartitionState(2)}
    health, metrics = HealthState(), Metrics()
    reader = ConsumerStats(topic=TOPIC, health=health, metrics=metrics, states=states.get)
    reader.assigned(frozenset({0, 1, 2}))
    health.committed = {0: 3, 1: 2}
    end = {"consumer_lag": 1, "ls_offset": 4, "hi_offset": 4, "app_offset": 4}
    reader.on_stats(stats(**{"0": end, "1": end, "2": {**end, "committed_offset": 3}}))
    assert lag(metrics, "0") == 0, "read to the end, all of it committed: only the marker is left"
    assert lag(metrics, "1") == 2, "record 2 is not committed yet: it and the marker"
    assert lag(metrics, "2") == 0, "nothing read since assigned, the group's commit is past the last record"
    reader.on_stats(stats(**{"0": {**end, "app_offset": 3}}))
    assert lag(metrics, "0") == 1, "the consumer has not read past offset 3 yet: it may be a record"
