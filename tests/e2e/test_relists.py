"""Delete only what should go, end to end: event types, relists within the grace, a backlog, a late relist.

The service runs as its own process against the real broker and the sandbox; records carry CloudEvents types
as a catalog topic would, keyed by product (the README says why producers must do that).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from confluent_kafka import Producer

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import Record, consume_all, produce, wait_for

pytestmark = pytest.mark.e2e

DELISTED = "com.example.catalog.product-delisted"
RELISTED = "com.example.catalog.product-relisted"


def cloudevent(event_id: str, event_type: str, product: str, images: list[str] | None = None) -> Record:
    data: dict[str, Any] = {"collection_name": "shoes", "product_id": product}
    if images is not None:
        data["image_ids"] = images
    document = {"specversion": "1.0", "id": event_id, "source": "/catalog", "type": event_type, "data": data}
    return product.encode(), json.dumps(document).encode(), [("content-type", b"application/cloudevents+json")]


def produce_at(bootstrap: str, topic: str, records: list[tuple[Record, int]]) -> None:
    """Produces each record with the given timestamp (ms), in order, on one partition by key."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for (key, value, headers), timestamp in records:
        producer.produce(topic, key=key, value=value, headers=headers, timestamp=timestamp)
    assert producer.flush(30) == 0


def outcomes_by_event(bootstrap: str, topic: str, expect: int, settle: float = 1.0) -> dict[str, dict[str, Any]]:
    return {r.json()["event_id"]: r.json() for r in consume_all(bootstrap, topic, expect=expect, settle=settle)}


def test_a_relist_event_and_other_types_delete_nothing(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics()
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p2", "b.jpg"), ("p3", "c.jpg")]})
    service = service_process(names, sandbox)
    produce(
        kafka_bootstrap,
        names.input,
        [
            cloudevent("r1", RELISTED, "p1", ["a.jpg"]),  # the usual fields, but a relist
            cloudevent("x1", "com.example.catalog.product-price-changed", "p2", ["b.jpg"]),
            cloudevent("d3", DELISTED, "p3", ["c.jpg"]),  # a delist after them, to know they were read
        ],
    )
    outcomes = outcomes_by_event(kafka_bootstrap, names.outcome, expect=1)
    assert set(outcomes) == {"d3"}
    assert sandbox.stats()["items_deleted"] == 1
    assert service.metric("imgsweep_events_skipped_total", 'reason="other_type"') == 1
    assert service.metric("imgsweep_events_skipped_total", 'reason="relist"') == 1
    wait_for(lambda: service.metric("imgsweep_pending_events") == 0, 10, "events left pending")


def test_a_delist_relisted_a_second_later_keeps_its_images_under_the_default_grace(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics()
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p1", "b.jpg")]})
    service = service_process(names, sandbox, BATCH__RELIST_GRACE_SECONDS="10")  # the default, as shipped
    produce(kafka_bootstrap, names.input, [cloudevent("d1", DELISTED, "p1", ["a.jpg", "b.jpg"])])
    time.sleep(1)
    produce(kafka_bootstrap, names.input, [cloudevent("r1", RELISTED, "p1")])  # a relist names only the product
    (outcome,) = outcomes_by_event(kafka_bootstrap, names.outcome, expect=1, settle=2).values()
    assert (outcome["event_id"], outcome["status"]) == ("d1", "cancelled")
    assert outcome["images"] == [
        {"image_id": "a.jpg", "status": "cancelled", "reason": "relisted"},
        {"image_id": "b.jpg", "status": "cancelled", "reason": "relisted"},
    ]
    assert sandbox.stats()["calls_total"] == 0
    assert sandbox.admin("/admin/images?collection_name=shoes")["count"] == 2
    wait_for(lambda: service.metric("imgsweep_pending_events") == 0, 10, "events left pending")


def test_the_same_pair_in_a_backlog_read_at_full_speed_deletes_nothing_of_it(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics()
    sandbox = sandbox_process("--qps", "0")
    others = [(f"q{n}", f"q{n}.jpg") for n in range(200)]
    sandbox.seed({"shoes": [("p1", "a.jpg"), *others]})
    start = int(time.time() * 1000) - 3_600_000  # an hour ago: the wall clock alone would release everything
    backlog = [(cloudevent("d1", DELISTED, "p1", ["a.jpg"]), start)]
    backlog += [
        (cloudevent(f"o{n}", DELISTED, product, [image]), start + 500) for n, (product, image) in enumerate(others)
    ]
    backlog += [(cloudevent("r1", RELISTED, "p1"), start + 1_000)]
    backlog += [(cloudevent("late", DELISTED, "q0", ["q0.jpg"]), start + 60_000)]
    produce_at(kafka_bootstrap, names.input, backlog)
    service_process(names, sandbox, BATCH__RELIST_GRACE_SECONDS="10")
    outcomes = outcomes_by_event(kafka_bootstrap, names.outcome, expect=len(others) + 2, settle=1)
    assert outcomes["d1"]["status"] == "cancelled"
    assert all(outcomes[f"o{n}"]["status"] == "deleted" for n in range(len(others)))
    assert sandbox.admin("/admin/images?collection_name=shoes")["count"] == 1  # p1's image stays


def test_a_backlog_produced_within_one_grace_and_over_the_pending_bound_is_all_deleted(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    """A bulk delist (1,500 products within 0.3 s of event time) beyond ``MAX_PENDING_EVENTS`` (400) and a fetch (500):
    its partition is paused, not caught up, with every held delist still in its grace; they go, since no relist can
    be read before them (the pipeline waited for ever before: found draining 12,000 events with the router)."""
    names = topics()
    sandbox = sandbox_process("--qps", "0")
    products = [(f"b{n}", f"b{n}.jpg") for n in range(1500)]
    sandbox.seed({"shoes": products})
    start = int(time.time() * 1000) - 3_600_000  # an hour ago: not caught up, event time is the records' own
    produce_at(kafka_bootstrap, names.input, [
        (cloudevent(f"b{n}", DELISTED, product, [image]), start + n // 5) for n, (product, image) in enumerate(products)
    ])  # fmt: skip
    service_process(names, sandbox, BATCH__RELIST_GRACE_SECONDS="10", KAFKA__MAX_PENDING_EVENTS="400")
    outcomes = outcomes_by_event(kafka_bootstrap, names.outcome, expect=len(products), settle=1)
    assert len(outcomes) == len(products)
    assert {outcome["status"] for outcome in outcomes.values()} == {"deleted"}
    assert sandbox.admin("/admin/images?collection_name=shoes")["count"] == 0


def test_a_relist_after_the_delete_gets_an_outcome_naming_the_images_to_add_again(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics()
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p1", "b.jpg")]})
    service_process(names, sandbox, BATCH__RELIST_GRACE_SECONDS="0.5")
    produce(kafka_bootstrap, names.input, [cloudevent("d1", DELISTED, "p1", ["a.jpg", "b.jpg"])])
    consume_all(kafka_bootstrap, names.outcome, expect=1)
    produce(kafka_bootstrap, names.input, [cloudevent("r1", RELISTED, "p1")])
    outcomes = outcomes_by_event(kafka_bootstrap, names.outcome, expect=2)
    assert outcomes["d1"]["status"] == "deleted"
    relist = outcomes["r1"]
    assert (relist["kind"], relist["status"]) == ("relist", "re_add_required")
    assert sorted(image["image_id"] for image in relist["images"]) == ["a.jpg", "b.jpg"]
    assert {image["status"] for image in relist["images"]} == {"deleted"}
