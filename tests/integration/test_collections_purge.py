"""The collections topic's purge on a real broker: records below the pipeline group's committed offsets are deleted,
nothing at or above them, nothing of a partition the group never committed; a broker that does not answer is a
counted failure, logged once, and the next round works."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client import CollectorRegistry

from service.metrics.router import RouterMetrics
from service.router.purge import Purge, purgeable

pytestmark = pytest.mark.integration

TIMEOUT = 30.0


@pytest.fixture
def topic(kafka_bootstrap: str, kafka_admin: AdminClient) -> Iterator[str]:
    """A 2-partition topic of 100 records a partition; deleted after the test."""
    name = f"it-purge-{uuid.uuid4().hex[:12]}"
    for future in kafka_admin.create_topics([NewTopic(name, 2, 1)]).values():
        future.result(TIMEOUT)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(200):
        producer.produce(name, b"r%d" % n, partition=n % 2)
    assert producer.flush(TIMEOUT) == 0
    yield name
    for future in kafka_admin.delete_topics([name], operation_timeout=TIMEOUT).values():
        future.result(TIMEOUT)


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def _low(bootstrap: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-low-{uuid.uuid4().hex}"})
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT, cached=False)
        return int(low)
    finally:
        consumer.close()


def _purge(bootstrap: str, topic: str, group: str, series: RouterMetrics, timeout: float = TIMEOUT) -> Purge:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return Purge(admin, topic=topic, group=group, purged=series.purged, failures=series.purge_failures, timeout=timeout)


def test_records_below_the_groups_commits_are_deleted_and_no_more(kafka_bootstrap: str, topic: str) -> None:
    group = f"it-purge-group-{uuid.uuid4().hex[:8]}"
    series = RouterMetrics(CollectorRegistry())
    purge = _purge(kafka_bootstrap, topic, group, series)

    purge.purge_once()  # the group has committed nothing yet
    assert (_low(kafka_bootstrap, topic, 0), _low(kafka_bootstrap, topic, 1)) == (0, 0)

    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 60)])
    purge.purge_once()
    assert (_low(kafka_bootstrap, topic, 0), _low(kafka_bootstrap, topic, 1)) == (60, 0)  # partition 1: no commit

    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 85), TopicPartition(topic, 1, 40)])
    purge.purge_once()
    assert (_low(kafka_bootstrap, topic, 0), _low(kafka_bootstrap, topic, 1)) == (85, 40)
    assert series.purged._value.get() == 25  # partition 0's second purge; partition 1's first is not counted
    assert series.purge_failures._value.get() == 0


def test_an_unreachable_broker_is_a_counted_failure_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    series = RouterMetrics(CollectorRegistry())
    purge = _purge("127.0.0.1:1", "it-purge-nowhere", "it-purge-group", series, timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="service.router.purge"):
        purge.purge_once()
        purge.purge_once()
    assert series.purge_failures._value.get() == 2
    assert len([record for record in caplog.records if "purging the collections topic" in record.message]) == 1


def test_only_committed_offsets_of_the_topic_are_purgeable() -> None:
    committed = [
        TopicPartition("collections", 0, 12),
        TopicPartition("collections", 1, -1001),  # never committed: OFFSET_INVALID
        TopicPartition("collections", 2, 0),
        TopicPartition("elsewhere", 0, 50),
    ]
    assert [(tp.topic, tp.partition, tp.offset) for tp in purgeable("collections", committed)] == [
        ("collections", 0, 12)
    ]
