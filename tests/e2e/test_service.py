"""The whole service as its own process: real broker, the sandbox over loopback, outcomes read back."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import (
    SECRET_KEY,
    Consumed,
    Record,
    SandboxProcess,
    ServiceProcess,
    Topics,
    consume_all,
    event,
    produce,
)

pytestmark = pytest.mark.e2e


def by_event(outcomes: list[Consumed]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for record in outcomes:
        document = record.json()
        result[document["event_id"]] = document
    return result


def test_happy_path_deletes_images_and_publishes_one_outcome_per_event(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics()
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p1", "b.jpg"), ("p2", "c.jpg")]})
    service: ServiceProcess = service_process(names, sandbox)
    produce(
        kafka_bootstrap,
        names.input,
        [
            event("e1", "shoes", "p1", ["a.jpg", "b.jpg", "a.jpg"]),  # a duplicate inside the event is merged
            event("e2", "shoes", "p2", ["c.jpg", "gone.jpg"]),  # gone.jpg was never there: absent
        ],
    )
    outcomes = by_event(consume_all(kafka_bootstrap, names.outcome, expect=2, settle=1))
    assert set(outcomes) == {"e1", "e2"}
    e1, e2 = outcomes["e1"], outcomes["e2"]
    assert e1["status"] == "deleted"
    assert e1["images"] == [
        {"image_id": "a.jpg", "status": "deleted", "reason": None},
        {"image_id": "b.jpg", "status": "deleted", "reason": None},
    ]
    assert e2["status"] == "deleted"
    assert e2["images"] == [
        {"image_id": "c.jpg", "status": "deleted", "reason": None},
        {"image_id": "gone.jpg", "status": "absent", "reason": "NO_AVAILABLE_FEATURE"},
    ]
    assert e1["dry_run"] is False
    assert e1["api_calls"] == 1
    assert sandbox.stats()["items_deleted"] == 3
    # The outcome record is keyed by product and carries CloudEvents binary-mode headers.
    raw = consume_all(kafka_bootstrap, names.outcome, expect=2)
    first = next(r for r in raw if r.json()["event_id"] == "e1")
    assert first.key == b"p1"
    assert first.headers["ce_specversion"] == b"1.0"
    assert first.headers["ce_id"].decode() == e1["outcome_id"]
    assert {"ce_type", "ce_source", "ce_time"} <= set(first.headers)
    assert service.metric("imgsweep_outcomes_total", 'status="deleted"') == 2


def test_interleaved_collections_and_a_3000_image_backlog_make_exactly_15_calls_for_it(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=3)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    backlog = [event(f"big-{n}", "big", f"bp{n}", [f"bp{n}-{i}.jpg" for i in range(30)]) for n in range(100)]
    small = [event(f"small-{c}-{n}", f"c{c}", f"sp{c}-{n}", [f"s{n}.jpg"]) for c in range(3) for n in range(4)]
    sandbox.seed({"big": [(f"bp{n}", f"bp{n}-{i}.jpg") for n in range(100) for i in range(30)]})
    for c in range(3):
        sandbox.seed({f"c{c}": [(f"sp{c}-{n}", f"s{n}.jpg") for n in range(4)]})
    interleaved = list(backlog)
    for n, record in enumerate(small):
        interleaved.insert(n * 8, record)
    produce(kafka_bootstrap, names.input, interleaved)  # a backlog: produced before the service starts
    service: ServiceProcess = service_process(names, sandbox, BATCH__LINGER_SECONDS="1", API__QPS="50")
    outcomes = by_event(consume_all(kafka_bootstrap, names.outcome, expect=112, timeout=90, settle=1))
    assert len(outcomes) == 112
    assert {o["status"] for o in outcomes.values()} == {"deleted"}
    stats = sandbox.stats()
    calls_by_collection = stats["calls_by_collection"]
    assert calls_by_collection["big"] == 15
    assert stats["items_deleted"] == 3000 + 12
    assert stats["items_deleted_more_than_once"] == 0
    assert service.metric("imgsweep_batch_items_count") >= 15


def test_invalid_events_go_to_the_dead_letter_topic_and_valid_neighbours_complete(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    sandbox.seed({"shop": [("p1", "1.jpg"), ("p2", "2.jpg")]})
    bad: list[Record] = [
        (b"k-not-json", b"{not json", [("trace", b"t-1")]),
        (b"k-utf8", b"\xff\xfe\xfd", []),
        (
            b"k-types",
            json.dumps({"event_id": 1, "collection_name": "shop", "product_id": "p", "image_ids": "x"}).encode(),
            [],
        ),
        (
            b"k-empty",
            json.dumps({"event_id": "x", "collection_name": "shop", "product_id": "p", "image_ids": []}).encode(),
            [],
        ),
        (b"k-null", None, []),
    ]
    produce(
        kafka_bootstrap,
        names.input,
        [event("ok-1", "shop", "p1", ["1.jpg"]), *bad, event("ok-2", "shop", "p2", ["2.jpg"])],
    )
    service: ServiceProcess = service_process(names, sandbox)
    outcomes = by_event(consume_all(kafka_bootstrap, names.outcome, expect=2, settle=1))
    assert set(outcomes) == {"ok-1", "ok-2"}
    dead = consume_all(kafka_bootstrap, names.dlq, expect=len(bad), settle=1)
    assert len(dead) == len(bad)
    by_key = {record.key: record for record in dead}
    for key, value, headers in bad:
        record = by_key[key]
        assert record.value == value
        for name, header_value in headers:
            assert record.headers[name] == header_value
        assert record.headers["imgsweep_source_topic"] == names.input.encode()
        assert record.headers["imgsweep_source_partition"] == b"0"
        assert int(record.headers["imgsweep_source_offset"]) >= 0
        assert record.headers["imgsweep_error_class"]
        assert record.headers["imgsweep_error_reason"]
    assert by_key[b"k-not-json"].headers["imgsweep_error_class"] == b"invalid_json"
    assert by_key[b"k-utf8"].headers["imgsweep_error_class"] == b"invalid_utf8"
    assert by_key[b"k-empty"].headers["imgsweep_error_class"] == b"invalid_schema"
    errors = Counter(record.headers["imgsweep_error_class"] for record in dead)
    assert service.metric("imgsweep_invalid_events_total") == sum(errors.values())
    assert service.process.poll() is None
    assert SECRET_KEY not in service.logs()
