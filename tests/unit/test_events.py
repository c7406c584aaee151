"""Every wire form decodes; anything else is an InvalidEvent with a bounded class and a short reason, never a crash."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.pipeline.events import (
    ERROR_CLASSES,
    MAX_COLLECTION_NAME_CHARS,
    MAX_EVENT_ID_CHARS,
    MAX_IMAGE_ID_CHARS,
    MAX_IMAGES_PER_EVENT,
    MAX_PRODUCT_ID_CHARS,
    MAX_REASON_CHARS,
    MAX_VALUE_BYTES,
    DelistEvent,
    EventKind,
    InvalidEvent,
    OtherEventType,
    cloudevents,
    decode_event,
    fields,
    input_event_json_schema,
)
from service.pipeline.events.timestamps import common_timestamp, parse_rfc3339

Headers = Sequence[tuple[str, bytes | str | None]]

FIELDS: dict[str, Any] = {"collection_name": "shop-1", "product_id": "100012043978", "image_ids": ["a.jpg", "b.jpg"]}
PLAIN: dict[str, Any] = {"event_id": "evt-1", **FIELDS}
ATTRIBUTES: dict[str, Any] = {"specversion": "1.0", "id": "ce-1", "source": "/catalog", "type": "shop.product.delisted"}
STRUCTURED: dict[str, Any] = {**ATTRIBUTES, "data": FIELDS}
BINARY: list[tuple[str, bytes | str | None]] = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"ce-1"),
    ("ce_source", b"/catalog"),
    ("ce_type", b"shop.product.delisted"),
]
STRUCTURED_HEADERS: list[tuple[str, bytes | str | None]] = [("content-type", b"application/cloudevents+json")]


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def plain(**changes: object) -> bytes:
    return encode({**PLAIN, **changes})


def without(document: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name not in names}


def structured(data: object = FIELDS, **changes: object) -> bytes:
    return encode({**ATTRIBUTES, "data": data, **changes})


def binary_headers(**changes: bytes | str | None) -> list[tuple[str, bytes | str | None]]:
    """BINARY with ``ce_<name>`` headers replaced (or added); ``drop_<name>=None`` removes one."""
    dropped = {name.removeprefix("drop_") for name in changes if name.startswith("drop_")}
    headers = [(key, raw) for key, raw in BINARY if key.removeprefix("ce_") not in dropped | set(changes)]
    return headers + [(f"ce_{name}", raw) for name, raw in changes.items() if not name.startswith("drop_")]


def refusal(value: bytes | None, headers: Headers | None = None) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(value, headers)
    return raised.value


# --- valid forms -----------------------------------------------------------------------------------------------


def test_plain_json_without_occurred_at() -> None:
    event = decode_event(plain(), None)
    assert event == DelistEvent(
        event_id="evt-1",
        collection_name="shop-1",
        product_id="100012043978",
        image_ids=("a.jpg", "b.jpg"),
        occurred_at=None,
        source_format="json",
    )


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2025-11-23T08:15:00Z", datetime(2025, 11, 23, 8, 15, tzinfo=UTC)),
        ("2025-11-23T08:15:00+08:00", datetime(2025, 11, 23, 0, 15, tzinfo=UTC)),
        ("2025-11-23T08:15:00-05:30", datetime(2025, 11, 23, 13, 45, tzinfo=UTC)),
        ("2025-11-23t08:15:00z", datetime(2025, 11, 23, 8, 15, tzinfo=UTC)),
        ("2025-11-23 08:15:00Z", datetime(2025, 11, 23, 8, 15, tzinfo=UTC)),
        ("2025-11-23T08:15:00.5Z", datetime(2025, 11, 23, 8, 15, 0, 500_000, tzinfo=UTC)),
        ("2025-11-23T08:15:00.123456789Z", datetime(2025, 11, 23, 8, 15, 0, 123_456, tzinfo=UTC)),  # truncated
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),  # leap second
        ("2025-11-23T08:15:00-00:00", datetime(2025, 11, 23, 8, 15, tzinfo=UTC)),  # RFC 3339: offset unknown
        (None, None),
    ],
)
def test_plain_json_occurred_at_is_utc(occurred_at: str | None, expected: datetime | None) -> None:
    event = decode_event(plain(occurred_at=occurred_at), None)
    assert event.occurred_at == expected
    assert event.occurred_at is None or event.occurred_at.tzinfo is UTC


def test_duplicate_image_ids_are_merged_in_order_of_first_appearance() -> None:
    event = decode_event(plain(image_ids=["b", "a", "b", "c", "a"]), None)
    assert event.image_ids == ("b", "a", "c")


def test_the_image_cap_counts_entries_as_sent() -> None:
    assert len(decode_event(plain(image_ids=[f"{n}.jpg" for n in range(30)]), None).image_ids) == 30
    assert decode_event(plain(image_ids=["same.jpg"] * 30), None).image_ids == ("same.jpg",)
    too_many = refusal(plain(image_ids=["same.jpg"] * 31))
    assert too_many.error_class == "invalid_schema"
    assert too_many.reason == "image_ids: 31 ids, at most 30 allowed"


def test_unknown_members_are_ignored() -> None:
    event = decode_event(plain(schema_version=3, shop={"region": "cn"}, tags=[1, None]), None)
    assert event.event_id == "evt-1"
    ce = encode({**STRUCTURED, "traceparent": "00-abc", "data": {**FIELDS, "reason": "out of stock"}})
    assert decode_event(ce, None).product_id == "100012043978"


def test_ids_are_opaque_and_may_be_any_printable_text() -> None:
    event = decode_event(plain(product_id="0012", image_ids=[" spaced name.jpg ", "商品/主图 1.png", "😀"]), None)
    assert event.product_id == "0012"
    assert event.image_ids == (" spaced name.jpg ", "商品/主图 1.png", "😀")


def test_ids_at_their_caps_are_accepted() -> None:
    event = decode_event(
        plain(
            event_id="e" * MAX_EVENT_ID_CHARS,
            collection_name="c" * MAX_COLLECTION_NAME_CHARS,
            product_id="9" * MAX_PRODUCT_ID_CHARS,
            image_ids=["i" * MAX_IMAGE_ID_CHARS],
        ),
        None,
    )
    assert len(event.image_ids[0]) == MAX_IMAGE_ID_CHARS


def test_a_value_of_exactly_the_size_cap_is_accepted() -> None:
    value = plain()
    value += b" " * (MAX_VALUE_BYTES - len(value))
    assert decode_event(value, None).event_id == "evt-1"


@pytest.mark.parametrize(
    "headers",
    [
        STRUCTURED_HEADERS,
        [("Content-Type", "application/cloudevents+json; charset=UTF-8")],
        None,  # recognised by its specversion member
        [("traceparent", b"\xff\xfe"), ("x-null", None)],
    ],
)
def test_cloudevents_structured(headers: Headers | None) -> None:
    event = decode_event(structured(time="2025-11-23T08:15:00+08:00"), headers)
    assert event == DelistEvent(
        event_id="ce-1",
        collection_name="shop-1",
        product_id="100012043978",
        image_ids=("a.jpg", "b.jpg"),
        occurred_at=datetime(2025, 11, 23, 0, 15, tzinfo=UTC),
        source_format="cloudevents-structured",
        event_type=ATTRIBUTES["type"],
    )


def test_cloudevents_structured_with_data_base64() -> None:
    envelope = {**ATTRIBUTES, "datacontenttype": "application/json", "data_base64": base64.b64encode(encode(FIELDS))}
    event = decode_event(json.dumps(envelope, default=bytes.decode).encode(), STRUCTURED_HEADERS)
    assert (event.event_id, event.image_ids, event.occurred_at) == ("ce-1", ("a.jpg", "b.jpg"), None)


def test_cloudevents_data_occurred_at_wins_over_time() -> None:
    data = {**FIELDS, "occurred_at": "2025-01-01T00:00:00Z"}
    event = decode_event(structured(data, time="2025-06-01T00:00:00Z"), None)
    assert event.occurred_at == datetime(2025, 1, 1, tzinfo=UTC)
    event = decode_event(encode({**FIELDS, "occurred_at": None}), [*BINARY, ("ce_time", b"2025-06-01T00:00:00Z")])
    assert event.occurred_at == datetime(2025, 6, 1, tzinfo=UTC)


def test_cloudevents_id_wins_over_an_event_id_in_the_data() -> None:
    assert decode_event(structured({**FIELDS, "event_id": "legacy-7"}), None).event_id == "ce-1"
    assert decode_event(encode({**FIELDS, "event_id": "legacy-7"}), BINARY).event_id == "ce-1"
    assert decode_event(encode({**FIELDS, "event_id": 42}), BINARY).event_id == "ce-1"  # ignored, not checked


@pytest.mark.parametrize(
    "headers",
    [
        BINARY,
        [(key, raw.decode() if isinstance(raw, bytes) else raw) for key, raw in BINARY],  # str values
        [(key.upper(), raw) for key, raw in BINARY],
        [*BINARY, ("content-type", b"application/json")],
        [*BINARY, ("content-type", b"application/vnd.shop.delist+json; charset=utf-8")],
        [*BINARY, ("ce_id", b"ce-1"), ("ce_subject", b"sku"), ("traceparent", b"\xff"), ("baggage", None)],
    ],
)
def test_cloudevents_binary(headers: Headers) -> None:
    event = decode_event(encode(FIELDS), headers)
    assert event == DelistEvent(
        event_id="ce-1",
        collection_name="shop-1",
        product_id="100012043978",
        image_ids=("a.jpg", "b.jpg"),
        source_format="cloudevents-binary",
        event_type=ATTRIBUTES["type"],
    )


def test_cloudevents_binary_time() -> None:
    event = decode_event(encode(FIELDS), [*BINARY, ("ce_time", "2025-11-23T08:15:00.25-01:00")])
    assert event.occurred_at == datetime(2025, 11, 23, 9, 15, 0, 250_000, tzinfo=UTC)


def test_binary_mode_ignores_a_specversion_member_in_the_value() -> None:
    assert decode_event(encode({**FIELDS, "specversion": "0.1"}), BINARY).source_format == "cloudevents-binary"


# --- invalid input ---------------------------------------------------------------------------------------------

NESTED_TOO_DEEP = b'{"event_id": "e", "extra": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"

INVALID: list[Any] = [
    # empty, too large, not UTF-8
    pytest.param(None, None, "empty_value", "value: empty", id="null-value"),
    pytest.param(b"", BINARY, "empty_value", "value: empty", id="zero-bytes"),
    pytest.param(b" " * (MAX_VALUE_BYTES + 1), None, "too_large", "1048577 bytes, at most 1048576", id="too-large"),
    pytest.param(b"\xff{}", None, "invalid_utf8", "value: not valid UTF-8 (byte 0", id="bad-start-byte"),
    pytest.param(b'{"event_id": "\xc3\x28"}', None, "invalid_utf8", "byte 14", id="bad-continuation"),
    pytest.param(b'"\xc0\xaf"', None, "invalid_utf8", "not valid UTF-8", id="overlong"),
    pytest.param(b'"\xed\xa0\x80"', None, "invalid_utf8", "not valid UTF-8", id="encoded-surrogate"),
    pytest.param(b"\xff", BINARY, "invalid_utf8", "not valid UTF-8", id="binary-value-not-utf8"),
    # not (strict) JSON
    pytest.param(b"{", None, "invalid_json", "value: not JSON: ", id="truncated"),
    pytest.param(b"{'event_id': 'e'}", None, "invalid_json", "not JSON", id="single-quotes"),
    pytest.param(plain() + b"x", None, "invalid_json", "Extra data", id="trailing-garbage"),
    pytest.param(b"\xef\xbb\xbf" + plain(), None, "invalid_json", "BOM", id="byte-order-mark"),
    pytest.param(b'{"event_id": "a\tb"}', None, "invalid_json", "control character", id="raw-control-character"),
    pytest.param(b"NaN", None, "invalid_json", "NaN is not JSON", id="nan"),
    pytest.param(plain()[:-1] + b', "x": Infinity}', None, "invalid_json", "Infinity is not JSON", id="infinity"),
    pytest.param(plain()[:-1] + b', "x": -Infinity}', None, "invalid_json", "-Infinity", id="minus-infinity"),
    pytest.param(plain()[:-1] + b', "x": ' + b"7" * 5000 + b"}", None, "invalid_json", "5000 digits", id="huge-int"),
    pytest.param(b"[" * 100_000, None, "invalid_json", "nested too deeply", id="deep-arrays"),
    pytest.param(b'{"a":' * 100_000, None, "invalid_json", "nested too deeply", id="deep-objects"),
    pytest.param(NESTED_TOO_DEEP, None, "invalid_json", "nested too deeply", id="deep-extra-member"),
    pytest.param(b'{"event_id": "a", "event_id": "b"}', None, "invalid_json", "'event_id' appears twice", id="repeat"),
    pytest.param(b"not json", BINARY, "invalid_json", "value: not JSON", id="binary-value-not-json"),
    # JSON, but not a delist event
    pytest.param(b"[1, 2]", None, "invalid_schema", "value: expected a JSON object, got an array", id="array"),
    pytest.param(b'"event"', None, "invalid_schema", "got a string", id="string"),
    pytest.param(b"null", None, "invalid_schema", "got null", id="json-null"),
    pytest.param(b"{}", None, "invalid_schema", "event_id: missing (and 3 more)", id="empty-object"),
    pytest.param(encode(without(PLAIN, "event_id")), None, "invalid_schema", "event_id: missing", id="no-event-id"),
    pytest.param(
        encode(without(PLAIN, "collection_name")), None, "invalid_schema", "collection_name: missing", id="nc"
    ),
    pytest.param(encode(without(PLAIN, "product_id")), None, "invalid_schema", "product_id: missing", id="no-product"),
    pytest.param(encode(without(PLAIN, "image_ids")), None, "invalid_schema", "image_ids: missing", id="no-images"),
    pytest.param(plain(image_ids="a.jpg"), None, "invalid_schema", "image_ids: expected an array", id="ids-string"),
    pytest.param(plain(image_ids={"a": 1}), None, "invalid_schema", "got an object", id="ids-object"),
    pytest.param(plain(image_ids=[]), None, "invalid_schema", "image_ids: 0 ids, at least 1 required", id="no-ids"),
    pytest.param(plain(image_ids=["a"] * 31), None, "invalid_schema", "31 ids, at most 30", id="31-ids"),
    pytest.param(plain(image_ids=["a", 7]), None, "invalid_schema", "image_ids[1]: expected a string, got a number"),
    pytest.param(plain(image_ids=["a", ""]), None, "invalid_schema", "image_ids[1]: empty", id="empty-image-id"),
    pytest.param(plain(image_ids=[None]), None, "invalid_schema", "image_ids[0]: expected a string, got null"),
    pytest.param(plain(product_id=100012043978), None, "invalid_schema", "product_id: expected a string, got a number"),
    pytest.param(plain(product_id=1.5), None, "invalid_schema", "product_id: expected a string, got a number"),
    pytest.param(plain(product_id=True), None, "invalid_schema", "product_id: expected a string, got a boolean"),
    pytest.param(plain(event_id=["e"]), None, "invalid_schema", "event_id: expected a string, got an array"),
    pytest.param(plain(event_id=""), None, "invalid_schema", "event_id: empty", id="empty-event-id"),
    pytest.param(plain(collection_name=""), None, "invalid_schema", "collection_name: empty", id="empty-collection"),
    pytest.param(plain(event_id="e" * 257), None, "invalid_schema", "event_id: 257 characters, at most 256"),
    pytest.param(plain(collection_name="c" * 129), None, "invalid_schema", "collection_name: 129 characters"),
    pytest.param(plain(product_id="9" * 129), None, "invalid_schema", "product_id: 129 characters, at most 128"),
    pytest.param(plain(image_ids=["i" * 257]), None, "invalid_schema", "image_ids[0]: 257 characters, at most 256"),
    pytest.param(plain(product_id="12\x0034"), None, "invalid_schema", "product_id: contains U+0000 at position 2"),
    pytest.param(plain(image_ids=["a\nb"]), None, "invalid_schema", "image_ids[0]: contains U+000A", id="newline"),
    pytest.param(plain(image_ids=["a\x1f"]), None, "invalid_schema", "contains U+001F", id="unit-separator"),
    pytest.param(plain(image_ids=["\x7f"]), None, "invalid_schema", "contains U+007F", id="delete"),
    pytest.param(plain(image_ids=["a\x85"]), None, "invalid_schema", "contains U+0085", id="c1-next-line"),
    pytest.param(plain(event_id="e\u2028"), None, "invalid_schema", "event_id: contains U+2028", id="line-separator"),
    pytest.param(plain(event_id="e\u2029"), None, "invalid_schema", "contains U+2029", id="paragraph-separator"),
    pytest.param(b'{"event_id": "\\ud800"}', None, "invalid_schema", "event_id: contains a lone surrogate"),
    pytest.param(plain(image_ids=["\udfff"]), None, "invalid_schema", "image_ids[0]: contains a lone surrogate"),
    # occurred_at
    pytest.param(
        plain(occurred_at="2025-11-23T08:15:00"), None, "invalid_schema", "occurred_at: '2025-11-23T08:15:00'"
    ),
    pytest.param(plain(occurred_at="2025-11-23"), None, "invalid_schema", "not an RFC 3339 date-time", id="date-only"),
    pytest.param(plain(occurred_at="yesterday"), None, "invalid_schema", "occurred_at: 'yesterday' is not an RFC 3339"),
    pytest.param(plain(occurred_at="2025-13-01T00:00:00Z"), None, "invalid_schema", "month must be in 1..12"),
    pytest.param(plain(occurred_at="2025-02-30T00:00:00Z"), None, "invalid_schema", "day is out of range"),
    pytest.param(plain(occurred_at="2025-02-01T24:00:00Z"), None, "invalid_schema", "hour must be in 0..23"),
    pytest.param(plain(occurred_at="2025-02-01T00:00:61Z"), None, "invalid_schema", "second must be in 0..59"),
    pytest.param(plain(occurred_at="2025-02-01T00:00:00+24:00"), None, "invalid_schema", "offset out of range"),
    pytest.param(plain(occurred_at="0000-01-01T00:00:00Z"), None, "invalid_schema", "year 0 is out of range"),
    pytest.param(plain(occurred_at="0001-01-01T00:00:00+01:00"), None, "invalid_schema", "out of range", id="min"),
    pytest.param(plain(occurred_at="9999-12-31T23:59:59-01:00"), None, "invalid_schema", "out of range", id="max"),
    pytest.param(
        plain(occurred_at="\uff12\uff10\uff12\uff15-11-23T08:15:00Z"),
        None,
        "invalid_schema",
        "not an RFC 3339",
        id="wide",
    ),
    pytest.param(plain(occurred_at=1732349700), None, "invalid_schema", "expected an RFC 3339 date-time string, got a"),
    pytest.param(plain(occurred_at="2025-11-23T08:15:00." + "1" * 100 + "Z"), None, "invalid_schema", "too long"),
    # CloudEvents structured
    pytest.param(structured(specversion="0.3"), None, "invalid_cloudevent", "specversion: '0.3' is not supported"),
    pytest.param(structured(specversion=1.0), None, "invalid_cloudevent", "expected the string '1.0', got a number"),
    pytest.param(encode(without(STRUCTURED, "specversion")), STRUCTURED_HEADERS, "invalid_cloudevent", "specversion"),
    pytest.param(encode(without(STRUCTURED, "id")), None, "invalid_cloudevent", "id: missing", id="ce-no-id"),
    pytest.param(encode(without(STRUCTURED, "source")), None, "invalid_cloudevent", "source: missing"),
    pytest.param(encode(without(STRUCTURED, "type")), None, "invalid_cloudevent", "type: missing", id="ce-no-type"),
    pytest.param(structured(id=""), None, "invalid_cloudevent", "id: empty", id="ce-empty-id"),
    pytest.param(structured(id=17), None, "invalid_cloudevent", "id: expected a string, got a number"),
    pytest.param(structured(id="i" * 257), None, "invalid_cloudevent", "id: 257 characters, at most 256"),
    pytest.param(structured(source=""), None, "invalid_cloudevent", "source: empty", id="ce-empty-source"),
    pytest.param(structured(time="soon"), None, "invalid_cloudevent", "time: 'soon' is not an RFC 3339 date-time"),
    pytest.param(structured(datacontenttype="text/plain"), None, "invalid_cloudevent", "datacontenttype: 'text/plain'"),
    pytest.param(b"[]", STRUCTURED_HEADERS, "invalid_cloudevent", "value: a structured CloudEvent is a JSON object"),
    pytest.param(
        structured(data_base64="e30="), None, "invalid_cloudevent", "data, data_base64: both present", id="both-data"
    ),
    pytest.param(
        encode({**ATTRIBUTES, "data_base64": "not base64!"}),
        None,
        "invalid_cloudevent",
        "data_base64: not valid base64",
    ),
    pytest.param(
        encode({**ATTRIBUTES, "data_base64": "é"}), None, "invalid_cloudevent", "not valid base64", id="b64-é"
    ),
    pytest.param(encode({**ATTRIBUTES, "data_base64": 5}), None, "invalid_cloudevent", "expected a base64 string"),
    pytest.param(encode({**ATTRIBUTES, "data_base64": "/w=="}), None, "invalid_utf8", "data_base64: not valid UTF-8"),
    pytest.param(encode({**ATTRIBUTES, "data_base64": "e30"}), None, "invalid_cloudevent", "base64", id="b64-padding"),
    pytest.param(encode({**ATTRIBUTES, "data_base64": "Ww=="}), None, "invalid_json", "data_base64: not JSON"),
    pytest.param(encode({**ATTRIBUTES, "data_base64": "e30="}), None, "invalid_schema", "data_base64.collection_name"),
    pytest.param(encode(ATTRIBUTES), None, "invalid_schema", "data: missing", id="ce-no-data"),
    pytest.param(structured(None), None, "invalid_schema", "data: expected a JSON object, got null", id="data-null"),
    pytest.param(structured(json.dumps(FIELDS)), None, "invalid_schema", "data: expected a JSON object, got a string"),
    pytest.param(structured({**FIELDS, "image_ids": []}), None, "invalid_schema", "data.image_ids: 0 ids"),
    pytest.param(structured({**FIELDS, "image_ids": ["a", 1]}), None, "invalid_schema", "data.image_ids[1]: expected"),
    pytest.param(
        structured(), [("content-type", b"application/cloudevents-batch+json")], "invalid_cloudevent", "batch"
    ),
    pytest.param(structured(), [("content-type", "application/cloudevents+avro")], "invalid_cloudevent", "only appl"),
    # CloudEvents binary
    pytest.param(encode(FIELDS), binary_headers(specversion=b"0.3"), "invalid_cloudevent", "ce_specversion: '0.3'"),
    pytest.param(
        encode(FIELDS), binary_headers(drop_specversion=None), "invalid_cloudevent", "ce_specversion: missing"
    ),
    pytest.param(encode(FIELDS), binary_headers(drop_id=None), "invalid_cloudevent", "ce_id: missing", id="bin-no-id"),
    pytest.param(encode(FIELDS), binary_headers(drop_source=None), "invalid_cloudevent", "ce_source: missing"),
    pytest.param(encode(FIELDS), binary_headers(drop_type=None), "invalid_cloudevent", "ce_type: missing"),
    pytest.param(encode(FIELDS), binary_headers(id=None), "invalid_cloudevent", "ce_id: header has no value"),
    pytest.param(encode(FIELDS), binary_headers(id=b""), "invalid_cloudevent", "ce_id: empty", id="bin-empty-id"),
    pytest.param(encode(FIELDS), binary_headers(id="x\x00"), "invalid_cloudevent", "ce_id: contains U+0000"),
    pytest.param(encode(FIELDS), binary_headers(source=b"\xc3("), "invalid_cloudevent", "ce_source: header value is n"),
    pytest.param(encode(FIELDS), binary_headers(time=b"2025-11-23"), "invalid_cloudevent", "ce_time: '2025-11-23' is"),
    pytest.param(encode(FIELDS), binary_headers(time=b"\xff"), "invalid_cloudevent", "ce_time: header value is not"),
    pytest.param(encode(FIELDS), [*BINARY, ("ce_id", b"other")], "invalid_cloudevent", "ce_id: header repeated"),
    pytest.param(encode(FIELDS), [*BINARY, ("content-type", b"text/plain")], "invalid_cloudevent", "content-type: 'te"),
    pytest.param(encode(FIELDS), [*BINARY, ("content-type", b"\xff")], "invalid_cloudevent", "content-type: header v"),
    pytest.param(
        encode(FIELDS),
        [*BINARY, ("content-type", b"application/json"), ("Content-Type", b"text/plain")],
        "invalid_cloudevent",
        "content-type: header repeated",
        id="content-type-repeated",
    ),
    pytest.param(encode(without(FIELDS, "product_id")), BINARY, "invalid_schema", "product_id: missing", id="bin-no-p"),
    pytest.param(b"[]", BINARY, "invalid_schema", "value: expected a JSON object, got an array", id="binary-array"),
]


@pytest.mark.parametrize(("value", "headers", "error_class", "reason"), INVALID)
def test_invalid_input_is_refused_with_its_class_and_reason(
    value: bytes | None, headers: Headers | None, error_class: str, reason: str
) -> None:
    refused = refusal(value, headers)
    assert refused.error_class == error_class
    assert reason in refused.reason
    assert len(refused.reason) <= MAX_REASON_CHARS
    assert refused.reason.isprintable()


def test_a_reason_never_echoes_the_payload() -> None:
    secretive = "s" * 20_000
    for value in (
        plain(event_id=secretive),
        plain(image_ids=[secretive] * 40),
        plain(occurred_at=secretive),
        structured(specversion=secretive),
        plain()[:-1] + b', "' + secretive.encode() + b'": 1, "' + secretive.encode() + b'": 2}',
    ):
        refused = refusal(value)
        assert len(refused.reason) <= MAX_REASON_CHARS
        assert "s" * 50 not in refused.reason
    long_header_name = "ce_" + "h" * 1000
    refused = refusal(encode(FIELDS), [*BINARY, (long_header_name, None)])
    assert len(refused.reason) <= MAX_REASON_CHARS
    assert "h" * 50 not in refused.reason


def test_the_first_problem_is_a_top_level_one() -> None:
    refused = refusal(plain(image_ids=["ok", 1, "", None], product_id=9))
    assert refused.reason == "product_id: expected a string, got a number (and 3 more)"


# --- InvalidEvent and DelistEvent ------------------------------------------------------------------------------


def test_error_classes_are_a_fixed_set() -> None:
    assert ERROR_CLASSES == (
        "empty_value",
        "too_large",
        "invalid_utf8",
        "invalid_json",
        "invalid_schema",
        "invalid_cloudevent",
        "invalid_registry_record",
        "schema_unavailable",
    )
    with pytest.raises(ValueError, match="unknown error class"):
        InvalidEvent("kaput", "whatever")  # type: ignore[arg-type]


def test_invalid_event_bounds_its_reason_and_survives_pickling() -> None:
    refused = InvalidEvent("invalid_schema", "x" * 1000)
    assert len(refused.reason) == MAX_REASON_CHARS
    assert refused.reason.endswith("…")
    assert str(refused) == f"invalid_schema: {refused.reason}"
    copy = pickle.loads(pickle.dumps(refused))  # noqa: S301 - our own bytes
    assert (copy.error_class, copy.reason) == (refused.error_class, refused.reason)


def test_delist_event_keeps_its_invariants_when_built_directly() -> None:
    event = DelistEvent(
        event_id="e",
        collection_name="c",
        product_id="p",
        image_ids=("a", "b", "a"),
        occurred_at=datetime(2025, 1, 1, 8, tzinfo=timezone(timedelta(hours=8))),
        source_format="json",
    )
    assert event.image_ids == ("a", "b")
    assert event.occurred_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert event.occurred_at is not None
    assert event.occurred_at.tzinfo is UTC
    with pytest.raises(ValidationError):
        event.event_id = "other"
    with pytest.raises(ValidationError, match="without a UTC offset"):
        DelistEvent(
            event_id="e",
            collection_name="c",
            product_id="p",
            image_ids=("a",),
            occurred_at=datetime(2025, 1, 1),  # naive
            source_format="json",
        )


def test_input_json_schema_states_the_same_contract() -> None:
    schema = input_event_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"event_id", "collection_name", "product_id", "image_ids"}
    assert "additionalProperties" not in schema  # unknown members are ignored
    properties = schema["properties"]
    assert properties["image_ids"]["minItems"] == 1
    assert properties["image_ids"]["maxItems"] == MAX_IMAGES_PER_EVENT
    assert properties["image_ids"]["items"]["maxLength"] == MAX_IMAGE_ID_CHARS
    assert properties["event_id"]["maxLength"] == MAX_EVENT_ID_CHARS
    assert properties["collection_name"]["maxLength"] == MAX_COLLECTION_NAME_CHARS
    assert properties["product_id"]["type"] == "string"
    assert properties["product_id"]["maxLength"] == MAX_PRODUCT_ID_CHARS
    assert {"type": "string", "format": "date-time"} in properties["occurred_at"]["anyOf"]
    assert json.loads(json.dumps(schema)) == schema
    assert input_event_json_schema() is not schema  # callers may change their copy


# --- properties ------------------------------------------------------------------------------------------------


def outcome(value: bytes | None, headers: Headers | None) -> DelistEvent | InvalidEvent | OtherEventType:
    try:
        return decode_event(value, headers)
    except (InvalidEvent, OtherEventType) as refused:
        return refused


def decodes_or_refuses(value: bytes | None, headers: Headers | None) -> None:
    """The whole contract: a valid DelistEvent, an InvalidEvent with a bounded class and a short reason, or an
    event of another type (neither delist nor relist), named by its type."""
    event = outcome(value, headers)
    if isinstance(event, OtherEventType):
        assert event.event_type
        return
    if isinstance(event, InvalidEvent):
        assert event.error_class in ERROR_CLASSES
        assert 0 < len(event.reason) <= MAX_REASON_CHARS
        assert event.reason.isprintable()
        return
    assert isinstance(event, DelistEvent)
    assert (1 if event.kind is EventKind.DELIST else 0) <= len(event.image_ids) <= MAX_IMAGES_PER_EVENT
    assert len(set(event.image_ids)) == len(event.image_ids)
    assert event.occurred_at is None or event.occurred_at.utcoffset() == timedelta(0)


HEADER_KEYS = st.sampled_from(
    ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "CE_ID", "content-type", "Content-Type", "trace"]
) | st.text(max_size=12)
HEADER_VALUES = (
    st.none()
    | st.binary(max_size=24)
    | st.text(max_size=24)
    | st.sampled_from(
        [
            b"1.0",
            "1.0",
            b"application/cloudevents+json",
            "application/json",
            b"application/cloudevents-batch+json",
            "2025-11-23T08:15:00Z",
            b"ce-1",
        ]
    )
)
HEADER_LISTS = st.none() | st.lists(st.tuples(HEADER_KEYS, HEADER_VALUES), max_size=6)
VALUES = (
    st.none()
    | st.binary(max_size=200)
    | st.sampled_from([plain(), structured(), encode(FIELDS)])  # valid, whatever the headers make of them
    | st.sampled_from([plain(), structured(), encode(FIELDS)]).flatmap(
        lambda valid: st.binary(max_size=8).map(
            lambda noise: valid[: len(valid) // 2] + noise + valid[len(valid) // 2 :]
        )
    )
)


@settings(max_examples=500, deadline=None)
@given(VALUES, HEADER_LISTS)
def test_arbitrary_bytes_and_headers_decode_or_are_refused(value: bytes | None, headers: Headers | None) -> None:
    decodes_or_refuses(value, headers)


ANY_TEXT = st.text(max_size=12) | st.text(st.characters(categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1, max_size=3)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=10,
)
SHALLOW_JSON_VALUES = (
    JSON_SCALARS | st.lists(JSON_SCALARS, max_size=4) | st.dictionaries(st.text(max_size=12), JSON_SCALARS, max_size=4)
)
MODES: list[Headers | None] = [None, BINARY, STRUCTURED_HEADERS]


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES, st.sampled_from(MODES))
def test_arbitrary_json_decodes_or_is_refused(document: object, headers: Headers | None) -> None:
    decodes_or_refuses(encode(document), headers)


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[bytes, Headers | None]:
    """A valid event of some form with one member replaced by arbitrary JSON, or removed."""
    form = draw(st.sampled_from(["json", "structured", "structured-data", "binary"]))
    document = {"json": PLAIN, "structured": STRUCTURED, "structured-data": FIELDS, "binary": FIELDS}[form]
    names = [*document, "occurred_at", "time", "data_base64", "datacontenttype", "event_id"]
    name = draw(st.sampled_from(names))
    changed = dict(document)
    if draw(st.booleans()):
        changed.pop(name, None)
    else:
        changed[name] = draw(SHALLOW_JSON_VALUES)
    if form == "structured-data":
        changed = {**ATTRIBUTES, "data": changed}
    return encode(changed), BINARY if form == "binary" else None


@settings(max_examples=500, deadline=None)
@given(mutated_events())
def test_a_valid_event_with_one_member_changed_decodes_or_is_refused(message: tuple[bytes, Headers | None]) -> None:
    decodes_or_refuses(*message)


ID_CHARACTERS = st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"])


def identifiers(cap: int) -> st.SearchStrategy[str]:
    """Valid ids, kept short: ids at their caps are tested above, and long generated text is slow."""
    return st.text(ID_CHARACTERS, min_size=1, max_size=min(cap, 32))


OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
MOMENTS = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=OFFSETS)
IMAGE_ID_LISTS = st.lists(identifiers(MAX_IMAGE_ID_CHARS), min_size=1, max_size=MAX_IMAGES_PER_EVENT) | st.lists(
    st.sampled_from(["a.jpg", "b.jpg", "c.jpg"]), min_size=1, max_size=MAX_IMAGES_PER_EVENT
)


@st.composite
def encoded_events(draw: st.DrawFn) -> tuple[bytes, Headers | None, dict[str, Any]]:
    """A valid event in one of the wire forms, and the fields decoding must give back."""
    event_id = draw(identifiers(MAX_EVENT_ID_CHARS))
    fields: dict[str, Any] = {
        "collection_name": draw(identifiers(MAX_COLLECTION_NAME_CHARS)),
        "product_id": draw(identifiers(MAX_PRODUCT_ID_CHARS)),
        "image_ids": draw(IMAGE_ID_LISTS),
    }
    occurred_at = draw(st.none() | MOMENTS)
    form = draw(st.sampled_from(["json", "structured", "structured-base64", "binary"]))
    in_envelope = form != "json" and occurred_at is not None and draw(st.booleans())  # as CloudEvents time
    if occurred_at is not None and not in_envelope:
        fields["occurred_at"] = occurred_at.isoformat()
    ensure_ascii = draw(st.booleans())
    headers: Headers | None = None
    if form == "json":
        value = json.dumps({"event_id": event_id, **fields}, ensure_ascii=ensure_ascii).encode()
    elif form == "binary":
        headers = [*binary_headers(id=event_id.encode())]
        if in_envelope and occurred_at is not None:
            headers.append(("ce_time", occurred_at.isoformat()))
        value = json.dumps(fields, ensure_ascii=ensure_ascii).encode()
    else:
        envelope: dict[str, Any] = {**ATTRIBUTES, "id": event_id}
        if in_envelope and occurred_at is not None:
            envelope["time"] = occurred_at.isoformat()
        if form == "structured-base64":
            envelope["data_base64"] = base64.b64encode(json.dumps(fields).encode()).decode()
        else:
            envelope["data"] = fields
        value = json.dumps(envelope, ensure_ascii=ensure_ascii).encode()
        headers = draw(st.sampled_from([None, STRUCTURED_HEADERS]))
    expected = {
        "event_id": event_id,
        "collection_name": fields["collection_name"],
        "product_id": fields["product_id"],
        "image_ids": tuple(dict.fromkeys(fields["image_ids"])),
        "occurred_at": None if occurred_at is None else occurred_at.astimezone(UTC),
        "source_format": {"json": "json", "binary": "cloudevents-binary"}.get(form, "cloudevents-structured"),
        "kind": "delist",
        "event_type": None if form == "json" else ATTRIBUTES["type"],
        "traceparent": None,
        "tracestate": None,
    }
    return value, headers, expected


@settings(max_examples=500, deadline=None)
@given(encoded_events())
def test_valid_events_round_trip(message: tuple[bytes, Headers | None, dict[str, Any]]) -> None:
    value, headers, expected = message
    event = decode_event(value, headers)
    assert event.model_dump() == expected
    assert event.occurred_at is None or event.occurred_at.tzinfo is UTC


# --- the common case, checked without pydantic -----------------------------------------------------------------


def through_the_models(value: bytes | None, headers: Headers | None) -> DelistEvent | InvalidEvent | OtherEventType:
    """Decoding with the plain-Python checks of the common case switched off: every event through the models."""
    with (
        mock.patch.object(fields, "common_fields", return_value=None),
        mock.patch.object(cloudevents, "_common_attributes", return_value=None),
    ):
        return outcome(value, headers)


def same_as_the_models(value: bytes | None, headers: Headers | None) -> None:
    fast, reference = outcome(value, headers), through_the_models(value, headers)
    if isinstance(reference, OtherEventType):
        assert isinstance(fast, OtherEventType)
        assert fast.event_type == reference.event_type
        return
    if isinstance(reference, InvalidEvent):
        assert isinstance(fast, InvalidEvent)
        assert (fast.error_class, fast.reason) == (reference.error_class, reference.reason)
        return
    assert isinstance(fast, DelistEvent)
    assert fast == reference
    assert fast.occurred_at is None or fast.occurred_at.tzinfo is UTC
    # Built without validation, yet exactly what validating the same fields gives.
    validated = DelistEvent(**fast.model_dump())
    assert fast == validated
    assert fast.model_fields_set == validated.model_fields_set


@settings(max_examples=300, deadline=None)
@given(VALUES, HEADER_LISTS)
def test_the_common_case_checks_agree_with_the_models_on_arbitrary_input(
    value: bytes | None, headers: Headers | None
) -> None:
    same_as_the_models(value, headers)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.sampled_from(MODES))
def test_the_common_case_checks_agree_with_the_models_on_arbitrary_json(
    document: object, headers: Headers | None
) -> None:
    same_as_the_models(encode(document), headers)


@settings(max_examples=1000, deadline=None)
@given(mutated_events())
def test_the_common_case_checks_agree_with_the_models_on_nearly_valid_events(
    message: tuple[bytes, Headers | None],
) -> None:
    same_as_the_models(*message)


@settings(max_examples=300, deadline=None)
@given(encoded_events())
def test_the_common_case_checks_agree_with_the_models_on_valid_events(
    message: tuple[bytes, Headers | None, dict[str, Any]],
) -> None:
    same_as_the_models(*message[:2])


EDGY_IDENTIFIERS = (
    st.sampled_from(["", "x" * MAX_IMAGE_ID_CHARS, "x" * (MAX_IMAGE_ID_CHARS + 1), "a\u2028", "a\x7f", "\x85", "ok"])
    | st.sampled_from(["\ud800", "a\udfff", "😀", "x" * MAX_PRODUCT_ID_CHARS, "x" * (MAX_PRODUCT_ID_CHARS + 1)])
    | ANY_TEXT
    | st.integers(max_value=10)
    | st.none()
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339-like text: usually valid, often just out of range or shape."""
    numbers = [draw(st.integers(0, limit)) for limit in (10_000, 14, 33, 25, 61, 61)]
    year, month, day, hour, minute, second = numbers
    fraction = draw(st.sampled_from(["", "."]) | st.text("0123456789", min_size=1, max_size=12).map(".{}".format))
    separator = draw(st.sampled_from(["T", "T", "t", " ", "_"]))
    offset = draw(
        st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+24:00", "+00:60", "+0530"])
        | st.tuples(st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61)).map(
            lambda parts: f"{parts[0]}{parts[1]:02d}:{parts[2]:02d}"
        )
    )
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"


@settings(max_examples=2000, deadline=None)
@given(timestamps() | MOMENTS.map(datetime.isoformat) | st.text(max_size=40))
def test_the_common_timestamp_reading_agrees_with_rfc3339_parsing(text: str) -> None:
    common = common_timestamp(text)
    if common is None:
        return
    assert common == parse_rfc3339(text)
    assert common.tzinfo is UTC


@settings(max_examples=1000, deadline=None)
@given(
    form=st.sampled_from(["json", "structured", "binary"]),
    member=st.sampled_from(["event_id", "collection_name", "product_id", "image_id", "source", "type"]),
    value=EDGY_IDENTIFIERS,
)
def test_the_common_case_checks_agree_with_the_models_on_edgy_strings(form: str, member: str, value: object) -> None:
    fields: dict[str, Any] = {**FIELDS}
    attributes: dict[str, Any] = {**ATTRIBUTES}
    if member == "image_id":
        fields["image_ids"] = ["a.jpg", value]
    elif member in ("source", "type"):
        attributes[member] = value
    elif member == "event_id":
        attributes["id"] = value
    else:
        fields[member] = value
    if form == "json":
        same_as_the_models(encode({"event_id": attributes["id"], **fields}), None)
    elif form == "structured":
        same_as_the_models(encode({**attributes, "data": fields}), None)
    elif all(isinstance(attributes[name], str) for name in ("id", "source", "type")):
        headers = binary_headers(**{name: attributes[name] for name in ("id", "source", "type")})
        same_as_the_models(encode(fields), headers)


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (plain(occurred_at="2025-11-23T08:15:00.123Z"), None),
        (structured(time="2025-11-23T16:15:00+08:00"), None),
        (encode(FIELDS), [*BINARY, ("ce_time", b"2025-11-23T08:15:00Z"), ("content-type", b"application/json")]),
    ],
)
def test_the_usual_events_never_reach_the_models(value: bytes, headers: Headers | None) -> None:
    never = AssertionError("validated through a model")
    with (
        mock.patch.object(fields, "validate", side_effect=never),
        mock.patch.object(cloudevents, "validate", side_effect=never),
    ):
        event = decode_event(value, headers)
    assert event.image_ids == ("a.jpg", "b.jpg")


def test_a_decoded_event_replaces_every_field_of_the_event_it_is_copied_from() -> None:
    headers = [*BINARY, ("ce_time", b"2025-11-23T08:15:00Z")]
    event = decode_event(encode(FIELDS), headers)
    for name in DelistEvent.model_fields:
        assert getattr(event, name) != getattr(fields._ANY_EVENT, name), name
