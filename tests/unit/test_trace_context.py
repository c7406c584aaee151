"""W3C trace context: where an input's is read from, what is refused, and the headers that carry it on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from service.pipeline.events import decode_event
from service.pipeline.outcomes import Outcome, dead_letter_headers, outcome_headers
from service.pipeline.pending import Headers, SourceRecord
from service.pipeline.trace_context import record_trace_context, trace_context
from service.vocabulary import OutcomeStatus, TraceContext

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-00"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
FIELDS = {"collection_name": "shoes", "product_id": "p1", "image_ids": ["a.jpg"]}
BINARY: Headers = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e1"),
    ("ce_source", b"/catalog"),
    ("ce_type", b"com.example.product.delisted"),
]


def structured(**extension: str) -> bytes:
    envelope = {"specversion": "1.0", "id": "e1", "source": "/catalog", "type": "com.example.product.delisted"}
    return json.dumps({**envelope, **extension, "data": FIELDS}).encode()


def context_of(value: bytes, headers: Headers) -> TraceContext | None:
    event = decode_event(value, headers)
    return trace_context(headers, event.traceparent, event.tracestate)


def test_a_traceparent_header_is_the_context_with_its_tracestate() -> None:
    headers: Headers = [("traceparent", PARENT.encode()), ("tracestate", STATE.encode())]
    found = context_of(json.dumps({"event_id": "e1", **FIELDS}).encode(), headers)
    assert found == TraceContext(PARENT, STATE)
    assert (found.trace_id, found.span_id, found.flags) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        1,
    )


def test_the_cloudevents_extension_counts_in_binary_and_structured_mode() -> None:
    binary = [*BINARY, ("ce_traceparent", PARENT.encode()), ("ce_tracestate", STATE.encode())]
    assert context_of(json.dumps(FIELDS).encode(), binary) == TraceContext(PARENT, STATE)
    assert context_of(structured(traceparent=PARENT, tracestate=STATE), []) == TraceContext(PARENT, STATE)
    assert context_of(structured(), []) is None


def test_the_transport_header_wins_over_the_extension_and_an_invalid_one_does_not() -> None:
    value = structured(traceparent=OTHER)
    assert context_of(value, [("traceparent", PARENT.encode())]) == TraceContext(PARENT)
    assert context_of(value, [("traceparent", b"00-nonsense")]) == TraceContext(OTHER)


@pytest.mark.parametrize(
    "parent",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # the forbidden version
        PARENT + "-extra",  # version 00 is exactly 55 characters
    ],
)
def test_an_invalid_traceparent_is_ignored_with_its_tracestate(parent: str) -> None:
    assert trace_context([("traceparent", parent.encode()), ("tracestate", STATE.encode())]) is None


def test_a_later_version_is_read_and_carried_as_sent() -> None:
    later = "cc" + PARENT[2:] + "-what-comes-next"
    assert trace_context([("traceparent", later.encode())]) == TraceContext(later)


def test_a_tracestate_keeps_only_what_fits() -> None:
    long = ",".join(f"k{n}=" + "v" * 20 for n in range(40))
    kept = trace_context([("traceparent", PARENT.encode()), ("tracestate", long.encode())])
    assert kept is not None
    assert kept.tracestate is not None
    assert len(kept.tracestate) <= 512
    assert kept.tracestate.split(",")[0] == "k0=" + "v" * 20
    garbled = trace_context([("traceparent", PARENT.encode()), ("tracestate", "k=\u00e9".encode())])
    assert garbled == TraceContext(PARENT)


def test_an_invalid_records_context_is_read_from_its_headers_or_envelope() -> None:
    assert record_trace_context([("ce_traceparent", PARENT.encode())], b"{") == TraceContext(PARENT)
    broken = json.dumps({"specversion": "1.0", "traceparent": PARENT, "tracestate": STATE, "data": 7}).encode()
    assert record_trace_context([], broken) == TraceContext(PARENT, STATE)
    assert record_trace_context([], b'{"traceparent": ') is None
    assert record_trace_context([], None) is None


def test_the_outcome_carries_the_context_as_headers() -> None:
    outcome = Outcome("o1", "e1", OutcomeStatus.DELETED, datetime(2026, 1, 1, tzinfo=UTC), b"{}")
    headers = outcome_headers(outcome, source="imgsweep/g", trace=TraceContext(PARENT, STATE))
    assert ("traceparent", PARENT.encode()) in headers
    assert ("tracestate", STATE.encode()) in headers
    assert not any(name.startswith("trace") for name, _ in outcome_headers(outcome, source="imgsweep/g"))


def test_a_dead_letter_gets_a_traceparent_header_only_if_it_had_none() -> None:
    def headers_of(original: Headers, trace: TraceContext | None) -> Headers:
        record = SourceRecord("in", 0, 7, b"k", b"{}", original, None)
        at = datetime(2026, 1, 1, tzinfo=UTC)
        return dead_letter_headers(record, error_class="invalid_json", reason="r", at=at, trace=trace)

    from_extension = headers_of([("ce_traceparent", PARENT.encode())], TraceContext(PARENT))
    assert [name for name, _ in from_extension[:2]] == ["ce_traceparent", "traceparent"]
    kept = headers_of([("traceparent", PARENT.encode())], TraceContext(PARENT))
    assert [name for name, _ in kept].count("traceparent") == 1
    assert not any(name == "traceparent" for name, _ in headers_of([], None))
