"""Consumer lag from librdkafka's statistics (service.pipeline.consumer_stats), whoever commits the offsets."""

from __future__ import annotations

import json
from typing import Any

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.consumer_stats import ConsumerStats

TOPIC = "in"


def stats(**partitions: dict[str, Any]) -> str:
    return json.dumps({"brokers": {}, "topics": {TOPIC: {"partitions": partitions}}})


def lag(metrics: Metrics, partition: str) -> float | None:
    return metrics.registry.get_sample_value("imgsweep_consumer_lag_messages", {"partition": partition})


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
