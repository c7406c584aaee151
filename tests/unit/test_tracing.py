"""Optional tracing: a span per API call linked to the events it carries (the SDK's in-memory exporter), the ids
a call's log lines carry, and a service that needs none of OpenTelemetry while tracing is off."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from datetime import time as clock_time
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.api.models import BatchResult, DeleteBatch, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.logs import JsonFormatter
from service.metrics import Metrics
from service.pipeline.processor import AccountCalls, Pipeline
from service.settings import ApiSettings, BatchSettings, ConfigError, Settings, TracingSettings
from service.tracing import NO_TRACING, SPAN_NAME, OtelTracing, check_tracing, response_hook, start_tracing
from tests.support.kafka import FakeConsumer, FakeMessage, FakeTransactionalProducer

TOPIC = "catalog.product-delisted"
PARENTS = (
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-00",
)
client_log = logging.getLogger("service.api.client")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    client_log.addHandler(handler)
    client_log.setLevel(logging.INFO)
    yield handler
    client_log.removeHandler(handler)
    client_log.setLevel(logging.NOTSET)


def delist(event_id: str, product: str, *, headers: list[tuple[str, bytes]], offset: int) -> FakeMessage:
    value = {"event_id": event_id, "collection_name": "shoes", "product_id": product, "image_ids": [f"{product}.jpg"]}
    return FakeMessage(TOPIC, 0, offset, json.dumps(value).encode(), headers=headers)


def published(producer: FakeTransactionalProducer) -> list[Any]:
    """Outcomes and dead letters (the memory of deletions' changelog records left out)."""
    return [record for record in producer.produced if record[0] != Settings().kafka.deletions_topic]


def run_pipeline(tracing: Any, messages: list[FakeMessage]) -> FakeTransactionalProducer:
    """The wired pipeline with a real worker thread; the 'API' answers with a request id and deletes all."""
    hook = response_hook(tracing)

    def delete(batch: DeleteBatch) -> BatchResult:
        hook(httpx.Response(503, headers={"x-jdcloud-request-id": "req-1"}))
        client_log.info("call failed, retrying", extra={"code": "http_503"})
        hook(httpx.Response(200, headers={"x-jdcloud-request-id": "req-2"}))
        return BatchResult(items=tuple(ItemResult(i, ItemStatus.DELETED) for i in batch.items), api_calls=2)

    consumer = FakeConsumer(TOPIC)
    producer = FakeTransactionalProducer(consumer)
    settings = Settings(batch=BatchSettings(linger_seconds=0, relist_grace_seconds=0), api=ApiSettings(daily_calls=-1))
    with ThreadPoolExecutor(1) as executor:
        pipeline = Pipeline(
            settings=settings,
            consumer=consumer,  # type: ignore[arg-type]
            producer=producer,  # type: ignore[arg-type]
            accounts=[
                AccountCalls(
                    settings.api_accounts()[0],
                    delete,
                    QuotaGate(UTC, clock_time(0, 0), clock=lambda: datetime(2026, 11, 27, 12, tzinfo=UTC)),
                    RateLimiter(1000),
                )
            ],
            executor=executor,
            metrics=Metrics(),
            health=HealthState(),
            stop_calls=threading.Event(),
            source="imgsweep/test",
            tracing=tracing,
        )
        producer.init_transactions()
        rebalance = pipeline._rebalance
        consumer.subscribe([TOPIC], on_assign=rebalance.on_assign, on_revoke=rebalance.on_revoke)
        consumer.assign(0)
        consumer.queue.extend(messages)
        deadline = time.monotonic() + 10
        while len(published(producer)) < len(messages) and time.monotonic() < deadline:
            pipeline._turn()
            time.sleep(0.01)
    assert len(published(producer)) == len(messages)
    return producer


def test_a_call_has_one_span_linked_to_its_events_traces(lines: Lines) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    messages = [
        delist("e1", "p1", headers=[("traceparent", PARENTS[0].encode()), ("tracestate", b"rojo=1")], offset=0),
        delist("e2", "p2", headers=[("traceparent", PARENTS[1].encode())], offset=1),
        delist("e3", "p3", headers=[("traceparent", PARENTS[0].encode())], offset=2),  # the same trace as e1
        delist("e4", "p4", headers=[], offset=3),  # no trace: no link
    ]
    producer = run_pipeline(OtelTracing(provider), messages)

    [span] = exporter.get_finished_spans()
    assert span.name == SPAN_NAME
    assert span.parent is None
    links = {(link.context.trace_id, link.context.span_id, link.context.trace_flags) for link in span.links}
    assert links == {
        (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1),
        (0x0AF7651916CD43DD8448EB211C80319C, 0xB9C7C989F97918E1, 0),
    }
    state = next(link.context.trace_state for link in span.links if link.context.trace_flags == 1)
    assert state.get("rojo") == "1"
    attributes = span.attributes or {}
    assert (attributes["imgsweep.collection"], attributes["imgsweep.items"], attributes["imgsweep.api_calls"]) == (
        "shoes",
        4,
        2,
    )
    assert [(event.name, dict(event.attributes or {})) for event in span.events] == [
        ("response", {"http.response.status_code": 503, "jd.request_id": "req-1"}),
        ("response", {"http.response.status_code": 200, "jd.request_id": "req-2"}),
    ]
    # The call's log lines carry the batch, its collection and the request id of the answer they are about.
    [line] = lines.lines
    assert (line["batch_id"], line["collection"], line["request_id"]) == (
        attributes["imgsweep.batch_id"],
        "shoes",
        "req-1",
    )
    # And the outcomes carry each event's context on.
    traced = {
        json.loads(value or b"")["event_id"]: dict(headers).get("traceparent")
        for _, value, headers in published(producer)
    }
    assert traced == {"e1": PARENTS[0].encode(), "e2": PARENTS[1].encode(), "e3": PARENTS[0].encode(), "e4": None}


def test_without_tracing_the_call_still_logs_its_ids_and_gathers_no_links(lines: Lines) -> None:
    run_pipeline(NO_TRACING, [delist("e1", "p1", headers=[("traceparent", PARENTS[0].encode())], offset=0)])
    [line] = lines.lines
    assert (line["collection"], line["request_id"]) == ("shoes", "req-1")


def test_start_tracing_is_off_by_default_and_exports_by_otlp_when_on() -> None:
    assert start_tracing(TracingSettings()) is NO_TRACING
    exporter = InMemorySpanExporter()
    tracing = start_tracing(TracingSettings(enabled=True), exporter=exporter)
    with tracing.call(DeleteBatch("shoes", (("p", "a.jpg"),), "b1"), ()):  # type: ignore[arg-type]
        pass
    tracing.shutdown()  # the batch processor exports what it holds
    assert [span.name for span in exporter.get_finished_spans()] == [SPAN_NAME]
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "imgsweep"


def test_enabled_without_the_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    check_tracing(TracingSettings())  # off: nothing is looked for
    for name in [name for name in sys.modules if name.startswith("opentelemetry")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what an uninstalled package looks like to import
    with pytest.raises(ConfigError, match=r"imgsweep\[otel\]"):
        check_tracing(TracingSettings(enabled=True))
    with pytest.raises(ConfigError, match=r"imgsweep\[otel\]"):
        start_tracing(TracingSettings(enabled=True))
