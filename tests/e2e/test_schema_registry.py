"""Schema Registry input end to end: Avro and Protobuf delists (confluent-kafka's serializers, a real registry)
next to plain JSON ones are deleted by the service process against the sandbox, with one outcome each; records
the registry cannot serve or their schema cannot read are dead-lettered with their own error class."""

from __future__ import annotations

import struct
from collections import Counter
from datetime import UTC, datetime

import pytest

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import Record, consume_all, event, produce
from devkit.registry import RegistryRecords

pytestmark = pytest.mark.e2e

SR_PASSWORD = "sr-SECRET-password-never-logged"  # made up: Apicurio without auth ignores it


def test_avro_and_protobuf_delists_are_deleted_end_to_end_and_bad_ones_dead_lettered(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    names = topics(partitions=2)
    records = RegistryRecords(schema_registry_url, names.input)
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p-avro", "a1.jpg"), ("p-avro", "a2.jpg"), ("p-pb", "b1.jpg"), ("p-json", "c1.jpg")]})
    occurred = datetime(2025, 11, 23, 8, 15, tzinfo=UTC)
    avro_event = "00000000-0000-0000-0000-00000000a001"
    avro = records.avro(
        {
            "event_id": avro_event,
            "type": "catalog.product.delisted",
            "collection_name": "shoes",
            "product_id": "p-avro",
            "image_ids": ["a1.jpg", "a2.jpg", "a1.jpg"],
            "occurred_at": occurred,
        }
    )
    protobuf = records.protobuf(
        event_id="pb-1", collection_name="shoes", product_id="p-pb", image_ids=["b1.jpg", "gone.jpg"]
    )
    unknown_id = b"\x00" + struct.pack(">I", 2_000_000_000) + protobuf[5:]
    cut_short = avro[:12]
    not_a_delist = records.protobuf(event_id="pb-2", collection_name="shoes", image_ids=["x.jpg"])  # no product
    batch: list[Record] = [
        (b"p-avro", avro, [("content-type", b"application/vnd.apache.avro+binary")]),
        (b"p-pb", protobuf, []),
        event("json-1", "shoes", "p-json", ["c1.jpg"]),
        (b"k-unknown", unknown_id, []),
        (b"k-cut", cut_short, []),
        (b"k-nodelist", not_a_delist, []),
    ]
    produce(kafka_bootstrap, names.input, batch)
    service = service_process(
        names,
        sandbox,
        SCHEMA_REGISTRY__URL=schema_registry_url,
        SCHEMA_REGISTRY__USERNAME="catalog-reader",
        SCHEMA_REGISTRY__PASSWORD=SR_PASSWORD,
        SCHEMA_REGISTRY__MAX_ATTEMPTS="2",
        SCHEMA_REGISTRY__BACKOFF_INITIAL_SECONDS="0.1",
    )
    outcomes = {record.json()["event_id"]: record.json() for record in consume_all(
        kafka_bootstrap, names.outcome, expect=3, settle=1
    )}  # fmt: skip
    assert set(outcomes) == {avro_event, "pb-1", "json-1"}
    assert {outcome["status"] for outcome in outcomes.values()} == {"deleted"}
    assert [image["image_id"] for image in outcomes[avro_event]["images"]] == ["a1.jpg", "a2.jpg"]
    assert [image["status"] for image in outcomes["pb-1"]["images"]] == ["deleted", "absent"]
    assert sandbox.stats()["items_deleted"] == 4

    dead = {record.key: record for record in consume_all(kafka_bootstrap, names.dlq, expect=3, settle=1)}
    assert set(dead) == {b"k-unknown", b"k-cut", b"k-nodelist"}
    assert dead[b"k-unknown"].value == unknown_id  # byte for byte, replayable once the schema is there
    classes = {key: record.headers["imgsweep_error_class"] for key, record in dead.items()}
    assert classes == {
        b"k-unknown": b"schema_unavailable",
        b"k-cut": b"invalid_registry_record",
        b"k-nodelist": b"invalid_schema",
    }
    assert b"schema id 2000000000" in dead[b"k-unknown"].headers["imgsweep_error_reason"]
    assert dead[b"k-nodelist"].headers["imgsweep_error_reason"] == b"product_id: missing"
    assert service.metric("imgsweep_invalid_events_total", 'error_class="schema_unavailable"') == 1
    assert service.metric("imgsweep_invalid_events_total", 'error_class="invalid_registry_record"') == 1
    assert Counter(classes.values())[b"invalid_schema"] == 1
    assert service.process.poll() is None
    logs = service.logs()
    assert SR_PASSWORD not in logs
    assert "schema id 2000000000 could not be fetched (attempt 2 of 2)" in logs
