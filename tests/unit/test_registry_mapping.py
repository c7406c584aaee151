"""The Schema Registry input's pure parts: the framing, deserialized values -> the plain-JSON event, settings."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devkit.registry import protobuf_delist_class
from service.pipeline.events import EventKind, InvalidEvent, OtherEventType, decode_event
from service.registry.decoder import event_decoder
from service.registry.mapping import (
    event_from_document,
    is_registry_framed,
    json_document,
    message_document,
    schema_id_of,
    schema_type_of,
)
from service.settings import ConfigError, SchemaRegistrySettings, load_settings, masked_config

FIELDS: dict[str, Any] = {
    "event_id": "e-1",
    "collection_name": "shoes",
    "product_id": "0042",
    "image_ids": ["a.jpg", "b.jpg", "a.jpg"],
}


def plain(document: object) -> bytes:
    return json.dumps(document).encode()


# --- framing ---------------------------------------------------------------------------------------------------


def test_only_a_leading_zero_byte_marks_a_registry_record() -> None:
    assert is_registry_framed(b"\x00\x00\x00\x00\x07payload")
    assert not is_registry_framed(b'{"event_id": "x"}')
    assert not is_registry_framed(b"")
    assert not is_registry_framed(None)


def test_the_schema_id_is_the_big_endian_word_after_the_magic_byte() -> None:
    assert schema_id_of(b"\x00\x00\x01\x00\x02\x08") == 65538


@pytest.mark.parametrize("value", [b"\x00", b"\x00\x00\x00\x00\x01"])
def test_a_frame_cut_short_is_an_invalid_registry_record(value: bytes) -> None:
    with pytest.raises(InvalidEvent) as refused:
        schema_id_of(value)
    assert refused.value.error_class == "invalid_registry_record"
    assert f"{len(value)} bytes" in refused.value.reason


def test_schema_types_default_to_avro_and_unknown_ones_are_refused() -> None:
    assert schema_type_of(None, 1) == "AVRO"
    assert schema_type_of("protobuf", 1) == "PROTOBUF"
    assert schema_type_of("JSON", 1) == "JSON"
    with pytest.raises(InvalidEvent, match="schema type 'XML' is not supported") as refused:
        schema_type_of("XML", 9)
    assert refused.value.error_class == "invalid_registry_record"


# --- values -> JSON --------------------------------------------------------------------------------------------


def test_avro_values_become_the_json_a_plain_producer_sends() -> None:
    moment = datetime(2025, 11, 23, 8, 15, tzinfo=UTC)
    document = json_document(
        {
            "event_id": uuid.UUID(int=1),
            "occurred_at": moment,
            "when": moment.date(),
            "price": Decimal("12.50"),
            "ratio": float("nan"),
            "blob": b"\x00\x01",
            "nested": {"ids": ("x", 1, True, None)},
        }
    )
    assert document == {
        "event_id": "00000000-0000-0000-0000-000000000001",
        "occurred_at": "2025-11-23T08:15:00+00:00",
        "when": "2025-11-23",
        "price": 12.5,
        "ratio": None,
        "blob": None,
        "nested": {"ids": ["x", 1, True, None]},
    }


def test_avro_nulls_are_absent_fields_but_json_schema_nulls_stay() -> None:
    assert json_document({"type": None, "data": {"occurred_at": None, "ids": [None]}}, drop_nulls=True) == {
        "data": {"ids": [None]}
    }
    assert event_from_document(json_document({**FIELDS, "type": None}, drop_nulls=True), []).event_type is None
    with pytest.raises(InvalidEvent, match="'type': expected a non-empty string"):
        event_from_document(json_document({**FIELDS, "type": None}), [])


def test_a_decoded_document_gives_the_same_event_as_the_same_plain_json() -> None:
    assert event_from_document(FIELDS, []) == decode_event(plain(FIELDS), [])
    event = event_from_document({**FIELDS, "occurred_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)}, None)
    assert event.image_ids == ("a.jpg", "b.jpg")
    assert event.occurred_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "change",
    [
        {"product_id": 42},  # a number: refused as in JSON
        {"image_ids": []},
        {"collection_name": ""},
        {"event_id": "x\x00"},
        {"occurred_at": datetime(2025, 1, 2, 3, 4, 5)},  # naive: its offset is unknown
        {"image_ids": [f"{n}.jpg" for n in range(31)]},
    ],
)
def test_an_invalid_document_is_refused_with_the_json_paths_class_and_reason(change: dict[str, Any]) -> None:
    document = {**FIELDS, **change}
    with pytest.raises(InvalidEvent) as from_registry:
        event_from_document(json_document(document), [])
    with pytest.raises(InvalidEvent) as from_json:
        decode_event(plain(json_document(document)), [])
    assert (from_registry.value.error_class, from_registry.value.reason) == (
        from_json.value.error_class,
        from_json.value.reason,
    )
    assert from_registry.value.error_class == "invalid_schema"


def test_relists_and_other_types_are_told_apart_like_json() -> None:
    relist = event_from_document({**FIELDS, "type": "shop.product.relisted", "image_ids": ["a.jpg"]}, [])
    assert relist.kind is EventKind.RELIST
    with pytest.raises(OtherEventType):
        event_from_document({**FIELDS, "type": "shop.product.renamed"}, [])


def test_ce_headers_make_a_binary_cloudevent_and_the_registry_content_type_is_ignored() -> None:
    headers: list[tuple[str, bytes | str | None]] = [
        ("content-type", b"application/vnd.apache.avro+binary"),
        ("ce_specversion", b"1.0"),
        ("ce_id", b"ce-7"),
        ("ce_source", b"catalog"),
        ("ce_type", b"com.shop.product.delisted"),
        ("ce_time", b"2025-11-23T08:15:00Z"),
    ]
    data = {key: value for key, value in FIELDS.items() if key != "event_id"}
    event = event_from_document(data, headers)
    assert (event.event_id, event.source_format) == ("ce-7", "cloudevents-binary")
    assert event.occurred_at == datetime(2025, 11, 23, 8, 15, tzinfo=UTC)


# --- Protobuf messages -----------------------------------------------------------------------------------------

ProductDelisted = protobuf_delist_class("unit.mapping")


def test_a_protobuf_message_reads_by_field_name_with_timestamps_as_rfc3339() -> None:
    occurred = datetime(2025, 11, 23, 8, 15, 1, 500000, tzinfo=UTC)
    message = ProductDelisted(
        event_id="p-1",
        collection_name="shoes",
        product_id="0042",
        image_ids=["a.jpg"],
        occurred_at=occurred,
        sequence=7,
    )
    document = message_document(message)
    assert document == {
        "event_id": "p-1",
        "collection_name": "shoes",
        "product_id": "0042",
        "image_ids": ["a.jpg"],
        "occurred_at": "2025-11-23T08:15:01.500Z",
        "sequence": 7,  # an int64 stays a number (proto3's JSON mapping would make it a string)
    }
    event = event_from_document(document, [])
    assert event.occurred_at == datetime(2025, 11, 23, 8, 15, 1, 500000, tzinfo=UTC)


def test_unset_protobuf_fields_are_absent_so_a_missing_id_is_refused_as_in_json() -> None:
    document = message_document(ProductDelisted(event_id="p-2", collection_name="shoes", image_ids=["a.jpg"]))
    assert document == {"event_id": "p-2", "collection_name": "shoes", "image_ids": ["a.jpg"]}
    with pytest.raises(InvalidEvent, match="product_id: missing") as refused:
        event_from_document(document, [])
    assert refused.value.error_class == "invalid_schema"


def test_a_protobuf_type_field_left_empty_is_no_type_and_a_set_one_is_matched() -> None:
    assert event_from_document(message_document(ProductDelisted(**FIELDS)), []).kind is EventKind.DELIST
    relist = ProductDelisted(**{**FIELDS, "type": "shop.product.relisted"})
    assert event_from_document(message_document(relist), []).kind is EventKind.RELIST


# --- settings --------------------------------------------------------------------------------------------------


def test_off_without_a_url_and_then_decoding_is_the_json_paths() -> None:
    settings = SchemaRegistrySettings()
    assert not settings.enabled
    assert event_decoder(settings) is decode_event
    assert not SchemaRegistrySettings(url=" ").enabled


@pytest.mark.usefixtures("settings_from_the_test_only")
def test_credentials_come_from_secret_files_and_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "IMGSWEEP_SCHEMA_REGISTRY__USERNAME").write_text("catalog-reader")
    (secrets / "IMGSWEEP_SCHEMA_REGISTRY__PASSWORD").write_text("sr-SECRET-value")
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("IMGSWEEP_SCHEMA_REGISTRY__URL", "https://sr.example:8081/, http://sr2.example/ccompat")
    monkeypatch.setenv("IMGSWEEP_SCHEMA_REGISTRY__MAX_ATTEMPTS", "5")
    settings = load_settings(dry_run=True).schema_registry
    assert settings.url == "https://sr.example:8081,http://sr2.example/ccompat"
    assert settings.max_attempts == 5
    assert settings.client_config()["basic.auth.user.info"] == "catalog-reader:sr-SECRET-value"
    assert settings.client_config()["max.retries"] == 0
    shown = json.dumps(masked_config(load_settings(dry_run=True)))
    assert "sr-SECRET-value" not in shown
    assert "catalog-reader" not in shown


@pytest.mark.usefixtures("settings_from_the_test_only")
@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"URL": "http://reader:pw-SECRET@sr.example"}, "credentials do not belong in the URL"),
        ({"URL": "ftp://sr.example"}, "expected http(s)://host"),
        ({"URL": "http://sr.example", "PASSWORD": "pw-SECRET"}, "set together or not at all"),
        ({"URL": "http://sr.example", "MAX_ATTEMPTS": "0"}, "IMGSWEEP_SCHEMA_REGISTRY__MAX_ATTEMPTS"),
        ({"BACKOFF_INITIAL_SECONDS": "5", "BACKOFF_MAX_SECONDS": "1"}, "BACKOFF_MAX_SECONDS is below"),
        ({"URLS": "http://sr.example"}, "is not a known setting"),
    ],
)
def test_bad_settings_are_named_and_never_echo_a_secret(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(f"IMGSWEEP_SCHEMA_REGISTRY__{name}", value)
    with pytest.raises(ConfigError) as refused:
        load_settings(dry_run=True)
    assert message in str(refused.value)
    assert "SECRET" not in str(refused.value)


def test_aware_timestamps_of_any_offset_are_read_in_utc() -> None:
    moment = datetime(2025, 11, 23, 16, 15, tzinfo=timezone(timedelta(hours=8)))
    event = event_from_document(json_document({**FIELDS, "occurred_at": moment}), [])
    assert event.occurred_at == datetime(2025, 11, 23, 8, 15, tzinfo=UTC)
