"""Schema Registry input against a real registry (Apicurio's Confluent API): records made by confluent-kafka's
Avro, Protobuf and JSON Schema serializers decode to the events the same plain JSON gives; a schema that cannot be
fetched is retried, bounded, then ``schema_unavailable``; nothing else changes for JSON and CloudEvents."""

from __future__ import annotations

import json
import struct
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from pydantic import SecretStr

from devkit.fixtures import FIGURES
from devkit.processes import free_port
from devkit.registry import STARTED_IN, RegistryRecords
from service.pipeline.events import EventKind, InvalidEvent, OtherEventType, decode_event
from service.registry.decoder import RegistryDecoder, event_decoder
from service.settings import SchemaRegistrySettings

pytestmark = pytest.mark.integration

EVENT_ID = str(uuid.UUID(int=0x1234))
FIELDS: dict[str, Any] = {
    "event_id": EVENT_ID,
    "collection_name": "shoes",
    "product_id": "0042",
    "image_ids": ["a.jpg", "b.jpg", "a.jpg"],
}
OCCURRED = datetime(2025, 11, 23, 8, 15, 1, 250000, tzinfo=UTC)


class Sleeps:
    """Records the backoff instead of sleeping it; a clock the test moves."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def clock(self) -> float:
        return self.now


def decoder_for(url: str, sleeps: Sleeps | None = None, **settings: Any) -> RegistryDecoder:
    sleeps = sleeps or Sleeps()
    configured = SchemaRegistrySettings(url=url, **settings)
    assert isinstance(event_decoder(configured), RegistryDecoder)
    return RegistryDecoder(configured, sleep=sleeps.sleep, clock=sleeps.clock)


def json_twin(**changes: Any) -> bytes:
    return json.dumps({**FIELDS, **changes}).encode()


def refusal(decoder: RegistryDecoder, value: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as refused:
        decoder(value, [])
    return refused.value


def test_the_session_registry_answers_and_says_how_long_it_took(schema_registry_url: str) -> None:
    records = RegistryRecords(schema_registry_url)
    assert isinstance(records.client.get_subjects(), list)
    if STARTED_IN:  # started here, not an external SCHEMA_REGISTRY_URL
        FIGURES.append(json.dumps({"figure": "schema_registry_ready_seconds", "value": round(STARTED_IN[0], 1)}))
        assert STARTED_IN[0] < 120


def test_avro_protobuf_and_json_schema_records_decode_to_the_json_paths_event(schema_registry_url: str) -> None:
    records = RegistryRecords(schema_registry_url)
    decoder = decoder_for(schema_registry_url)
    expected = decode_event(json_twin(occurred_at="2025-11-23T08:15:01.250Z"), [])
    avro = records.avro({**FIELDS, "type": None, "occurred_at": OCCURRED, "source_system": b"\x01"})
    protobuf = records.protobuf(**FIELDS, occurred_at=OCCURRED, sequence=2**40)
    json_schema = records.json({**FIELDS, "occurred_at": "2025-11-23T08:15:01.250Z"})
    for value in (avro, protobuf, json_schema):
        assert value[0] == 0
        assert decoder(value, []) == expected
    # the Protobuf message is the file's second: its records carry a message index the decoder followed
    assert protobuf[5:7] == b"\x02\x02"
    assert len({struct.unpack(">I", value[1:5])[0] for value in (avro, protobuf, json_schema)}) == 3


def test_relists_other_types_and_binary_cloudevents_are_read_as_in_json(schema_registry_url: str) -> None:
    records = RegistryRecords(schema_registry_url)
    decoder = decoder_for(schema_registry_url)
    relist = decoder(records.avro({**FIELDS, "type": "shop.product.relisted", "occurred_at": None}), [])
    assert relist.kind is EventKind.RELIST
    assert relist.image_ids == ("a.jpg", "b.jpg")
    with pytest.raises(OtherEventType):
        decoder(records.protobuf(**FIELDS, type="shop.product.renamed"), [])
    headers: list[tuple[str, bytes | str | None]] = [
        ("content-type", b"application/x-protobuf"),
        ("ce_specversion", b"1.0"),
        ("ce_id", b"ce-1"),
        ("ce_source", b"catalog"),
        ("ce_type", b"shop.product.delisted"),
    ]
    event = decoder(records.protobuf(**FIELDS), headers)
    assert (event.event_id, event.source_format) == ("ce-1", "cloudevents-binary")


def test_plain_json_and_cloudevents_go_the_old_way_with_the_registry_on(schema_registry_url: str) -> None:
    decoder = decoder_for(schema_registry_url)
    assert decoder(json_twin(), []) == decode_event(json_twin(), [])
    structured = json.dumps(
        {"specversion": "1.0", "id": "c", "source": "s", "type": "x.product.delisted", "data": FIELDS}
    ).encode()
    assert decoder(structured, []) == decode_event(structured, [])
    for value in (b"{not json", None, b""):
        with pytest.raises(InvalidEvent) as old:
            decode_event(value, [])
        assert refusal(decoder, value).error_class == old.value.error_class  # type: ignore[arg-type]


def test_a_decoded_record_that_is_not_a_delist_is_refused_like_its_json(schema_registry_url: str) -> None:
    records = RegistryRecords(schema_registry_url)
    decoder = decoder_for(schema_registry_url)
    refused = refusal(decoder, records.protobuf(**{**FIELDS, "image_ids": []}))
    with pytest.raises(InvalidEvent) as as_json:
        decode_event(json.dumps({key: value for key, value in FIELDS.items() if key != "image_ids"}).encode(), [])
    assert (refused.error_class, refused.reason) == (as_json.value.error_class, as_json.value.reason)
    refused = refusal(decoder, records.json({**FIELDS, "image_ids": ["x"] * 31}))
    assert (refused.error_class, refused.reason) == ("invalid_schema", "image_ids: 31 ids, at most 30 allowed")
    refused = refusal(decoder, records.avro({**FIELDS, "collection_name": "", "occurred_at": None}))
    assert (refused.error_class, refused.reason) == ("invalid_schema", "collection_name: empty")


def test_a_payload_its_schema_cannot_read_is_an_invalid_registry_record(schema_registry_url: str) -> None:
    records = RegistryRecords(schema_registry_url)
    decoder = decoder_for(schema_registry_url)
    avro = records.avro({**FIELDS, "occurred_at": None})
    refused = refusal(decoder, avro[:9])  # cut inside the first string
    assert refused.error_class == "invalid_registry_record"
    assert "does not decode with its AVRO schema" in refused.reason
    json_value = records.json(FIELDS)
    broken = json_value[:5] + json.dumps({"event_id": 7}).encode()  # the JSON Schema says: a string, required fields
    refused = refusal(decoder, broken)
    assert refused.error_class == "invalid_registry_record"
    assert "JSON schema" in refused.reason
    protobuf = records.protobuf(**FIELDS)
    assert refusal(decoder, protobuf[:7] + b"\xff\xff\xff").error_class == "invalid_registry_record"
    assert refusal(decoder, b"\x00\x00\x00\x00\x01").error_class == "invalid_registry_record"  # no payload
    assert len(refused.reason) <= 300


def test_an_unknown_schema_id_is_retried_with_backoff_then_schema_unavailable(schema_registry_url: str) -> None:
    sleeps = Sleeps()
    decoder = decoder_for(
        schema_registry_url, sleeps, max_attempts=4, backoff_initial_seconds=0.5, backoff_max_seconds=1.5
    )
    unknown = b"\x00" + struct.pack(">I", 987_654_321) + b"\x02ab"
    refused = refusal(decoder, unknown)
    assert refused.error_class == "schema_unavailable"
    assert "schema id 987654321" in refused.reason
    assert "in 4 attempt(s): HTTP 404" in refused.reason
    assert sleeps.slept == [0.5, 1.0, 1.5]
    # for unavailable_seconds, records with that id are dead-lettered without asking (an outage costs one wait)
    again = refusal(decoder, unknown)
    assert again.error_class == "schema_unavailable"
    assert sleeps.slept == [0.5, 1.0, 1.5]
    sleeps.now += 10.5
    assert refusal(decoder, unknown).error_class == "schema_unavailable"
    assert len(sleeps.slept) == 6


def test_a_schema_registered_after_a_failure_is_read_once_the_pause_is_over(schema_registry_url: str) -> None:
    records = RegistryRecords(schema_registry_url)
    sleeps = Sleeps()
    decoder = decoder_for(schema_registry_url, sleeps, max_attempts=1, unavailable_seconds=30)
    schema = json.dumps({"type": "record", "name": f"Late{uuid.uuid4().hex}", "fields": [
        {"name": name, "type": "string"} for name in ("event_id", "collection_name", "product_id")
    ] + [{"name": "image_ids", "type": {"type": "array", "items": "string"}}]})  # fmt: skip
    known = records.client.register_schema(f"late-{uuid.uuid4().hex}", Schema(schema, "AVRO"))
    value = records.avro({**FIELDS, "occurred_at": None})
    late = value[:1] + struct.pack(">I", known + 10_000) + value[5:]
    assert refusal(decoder, late).error_class == "schema_unavailable"
    sleeps.now += 31
    assert refusal(decoder, late).error_class == "schema_unavailable"  # asked again, still unknown
    assert decoder(value, []).event_id == EVENT_ID  # other ids are unaffected all along


def test_a_registry_that_is_down_costs_a_bounded_wait_and_never_raises_anything_else() -> None:
    port = free_port()  # nothing listens there
    decoder = event_decoder(
        SchemaRegistrySettings(
            url=f"http://127.0.0.1:{port}/apis/ccompat/v7",
            max_attempts=3,
            backoff_initial_seconds=0.05,
            backoff_max_seconds=0.1,
            timeout_seconds=1,
            username=SecretStr("reader"),
            password=SecretStr("sr-SECRET-pw"),
        )
    )
    began = time.monotonic()
    with pytest.raises(InvalidEvent) as refused:
        decoder(b"\x00\x00\x00\x00\x05\x02ab", [])
    assert time.monotonic() - began < 5
    assert refused.value.error_class == "schema_unavailable"
    assert refused.value.reason.endswith("in 3 attempt(s): ConnectError")
    assert "SECRET" not in refused.value.reason
    assert decoder(json_twin(), []).event_id == EVENT_ID  # the JSON path needs no registry
