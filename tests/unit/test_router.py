"""The router stage with in-memory Kafka stand-ins (decision 0022): where each record goes, what it carries, and
the input offsets committed once the forwarded records are acknowledged."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry

from service.health import HealthState
from service.metrics.router import RouterMetrics, router_lag
from service.pipeline.collections_topic import CollectionPartitions, RecordOrigin, split_origin
from service.pipeline.outcomes import TRUNCATION_HEADERS
from service.pipeline.steps.decode import EventFormat
from service.router.forward import Destination, Router
from tests.support.kafka import FakeConsumer, FakeMessage

TOPIC = "catalog.product-delisted"
ACCOUNTS = [("rest", ["*"]), ("shoes", ["shoes", "boots"])]


class Forwarded:
    """The router's producer: records kept as produced, each acknowledged at once."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def produce(self, topic: str, **record: Any) -> None:
        self.records.append({"topic": topic, **record})

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def delist(event_id: str, collection: str) -> bytes:
    document = {"event_id": event_id, "collection_name": collection, "product_id": "p", "image_ids": ["i"]}
    return json.dumps(document).encode()


def routed(*messages: FakeMessage, max_record_bytes: int = 10_000) -> tuple[Forwarded, FakeConsumer, RouterMetrics]:
    consumer, producer = FakeConsumer(TOPIC, partitions=3), Forwarded()
    metrics = RouterMetrics(CollectorRegistry())
    router = Router(
        consumer=consumer,  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
        destination=Destination("collections", CollectionPartitions(4, 2), ACCOUNTS, max_record_bytes),
        events=EventFormat(),
        health=HealthState(),
        metrics=metrics,
    )
    consumer.queue.extend(messages)
    router._turn()
    return producer, consumer, metrics


def test_each_accounts_collections_go_to_its_own_partitions_with_the_record_unchanged() -> None:
    messages = [
        FakeMessage(TOPIC, n % 3, 10 + n, delist(f"e{n}", collection), headers=[("traceparent", b"00-x")])
        for n, collection in enumerate(["shoes", "bags", "boots", "hats", "shoes"])
    ]
    producer, consumer, metrics = routed(*messages)
    partitions = [record["partition"] for record in producer.records]
    assert [p % 2 for p in partitions] == [1, 0, 1, 0, 1], "shoes is account 1 of 2: odd partitions"
    assert partitions[0] == partitions[4], "a collection always lands on the same partition"
    first = producer.records[0]
    assert (first["value"], first["key"], first["timestamp"]) == (messages[0].value(), b"k", 1_700_000_000_000)
    origin, headers = split_origin(first["headers"])
    assert origin == RecordOrigin(TOPIC, 0, 10, 1_700_000_000_000)
    assert headers == [("traceparent", b"00-x")]
    assert consumer.commits == [{0: (14, ""), 1: (15, ""), 2: (13, "")}], "after each partition's last record"
    assert metrics.forwarded.labels("event")._value.get() == 5


def test_records_with_no_collection_are_forwarded_for_the_pipeline_to_dead_letter() -> None:
    producer, _, metrics = routed(
        FakeMessage(TOPIC, 2, 5, b"{not json"), FakeMessage(TOPIC, 1, 6, None), FakeMessage(TOPIC, 0, 7, b'{"a": 1}')
    )
    assert [record["partition"] for record in producer.records] == [2, 1, 0], "the input partition, folded"
    assert [record["value"] for record in producer.records] == [b"{not json", None, b'{"a": 1}']
    assert metrics.forwarded.labels("unroutable")._value.get() == 3


def test_a_record_too_large_to_forward_whole_goes_truncated_with_its_size_and_digest() -> None:
    huge = delist("e", "shoes")[:-1] + b', "pad": "' + b"x" * 5_000 + b'"}'
    producer, consumer, metrics = routed(FakeMessage(TOPIC, 0, 3, huge), max_record_bytes=1_000)
    (record,) = producer.records
    assert len(record["value"]) < 1_000
    names = {name for name, _ in record["headers"]}
    assert set(TRUNCATION_HEADERS) <= names
    assert split_origin(record["headers"])[0] == RecordOrigin(TOPIC, 0, 3, 1_700_000_000_000)
    assert dict(record["headers"])[TRUNCATION_HEADERS[1]] == str(len(huge)).encode()
    assert consumer.commits == [{0: (4, "")}], "the router goes on"
    assert metrics.forwarded.labels("truncated")._value.get() == 1


def test_the_routers_lag_is_what_it_has_not_read_of_the_partitions_it_reads() -> None:
    stats = {
        "topics": {
            TOPIC: {
                "partitions": {
                    "0": {"ls_offset": 120, "app_offset": 100},
                    "1": {"ls_offset": 50, "app_offset": 50},
                    "2": {"ls_offset": 30, "app_offset": -1001},  # not read yet: unknown, left out
                    "-1": {"ls_offset": 999, "app_offset": 0},
                }
            }
        }
    }
    assert router_lag(json.dumps(stats), TOPIC) == 20
    assert router_lag(json.dumps({"topics": {}}), TOPIC) is None
    assert router_lag("not json", TOPIC) is None
