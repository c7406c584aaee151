"""Logs and traces that join up, on the running service: its output is JSON lines only (librdkafka's too, each
broker failure once), lines carry the ids of their event, batch and call, a W3C trace context goes from the
input to the outcome and the dead letter, and tracing exports a span per call, linked to its events, by OTLP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import REPO, Record, consume_all, event, free_port, produce

pytestmark = pytest.mark.e2e

PARENTS = [f"00-{n:032x}-{n + 100:016x}-01" for n in range(1, 6)]
"""Trace contexts with trace ids 1..5 and span ids 101..105."""


def structured(event_id: str, collection: str, product: str, images: list[str], **extension: str) -> Record:
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/catalog",
        "type": "com.example.product.delisted",
        **extension,
    }
    if images:
        envelope["data"] = {"collection_name": collection, "product_id": product, "image_ids": images}
    headers: list[tuple[str, str | bytes | None]] = [("content-type", b"application/cloudevents+json")]
    return product.encode(), json.dumps(envelope).encode(), headers


def traced(record: Record, parent: str, state: bytes | None = None) -> Record:
    """The record with a ``traceparent`` (and ``tracestate``) Kafka header."""
    key, value, headers = record
    extra: list[tuple[str, str | bytes | None]] = [("traceparent", parent.encode())]
    if state is not None:
        extra.append(("tracestate", state))
    return key, value, [*headers, *extra]


def binary(event_id: str, collection: str, product: str, images: list[str], parent: str) -> Record:
    headers: list[tuple[str, str | bytes | None]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", b"/catalog"),
        ("ce_type", b"com.example.product.delisted"),
        ("ce_traceparent", parent.encode()),
        ("content-type", b"application/json"),
    ]
    document = {"collection_name": collection, "product_id": product, "image_ids": images}
    return product.encode(), json.dumps(document).encode(), headers


@pytest.fixture
def without_opentelemetry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PYTHONPATH on which ``import opentelemetry`` fails, as where the otel extra is not installed."""
    blocker = tmp_path / "no-otel"
    (blocker / "opentelemetry").mkdir(parents=True)
    (blocker / "opentelemetry" / "__init__.py").write_text("raise ImportError('the otel extra is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")])))
    return blocker


def test_the_output_is_json_lines_with_librdkafkas_and_ids_and_each_broker_failure_once(
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
    without_opentelemetry: Path,
) -> None:
    names = topics(partitions=2)
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p2", "b.jpg")]})
    dead = free_port()  # a broker in the list where nothing listens
    service = service_process(
        names, sandbox, KAFKA__BOOTSTRAP_SERVERS=f"{kafka_bootstrap},127.0.0.1:{dead}", LOG__LEVEL="DEBUG"
    )
    produce(
        kafka_bootstrap,
        names.input,
        [event("e1", "shoes", "p1", ["a.jpg"]), event("e2", "shoes", "p2", ["b.jpg"]), (b"p3", b"{broken", [])],
    )
    assert len(consume_all(kafka_bootstrap, names.outcome, expect=2)) == 2
    assert len(consume_all(kafka_bootstrap, names.dlq, expect=1)) == 1
    deadline = time.monotonic() + 30
    while f"127.0.0.1:{dead}" not in service.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.stop()

    text = service.logs()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON, or this fails
    assert all(isinstance(line, dict) and {"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    assert "%3|" not in text
    about_dead = [line for line in lines if f"127.0.0.1:{dead}" in line["msg"]]
    assert about_dead, "librdkafka never said the dead broker failed"
    assert {line["logger"] for line in about_dead} == {"librdkafka"}  # once: not again from error_cb
    # A line about a call names its batch, collection and JD's request id; one about an event its ids.
    [call] = [line for line in lines if line["msg"] == "call finished"]
    assert call["collection"] == "shoes"
    assert call["batch_id"]
    assert len(call["request_id"]) == 32
    published = {line["event_id"]: line for line in lines if line["msg"] == "outcome published"}
    assert set(published) == {"e1", "e2"}
    assert {key: published["e1"][key] for key in ("product_id", "collection")} == {
        "product_id": "p1",
        "collection": "shoes",
    }
    assert {"partition", "offset"} <= published["e1"].keys()
    [invalid] = [line for line in lines if line["msg"].startswith("invalid event")]
    assert invalid["error_class"] == "invalid_json"
    assert {"partition", "offset"} <= invalid.keys()


def test_tracing_enabled_without_the_extra_exits_2_naming_it(without_opentelemetry: Path, tmp_path: Path) -> None:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("IMGSWEEP_")},
        "IMGSWEEP_TRACING__ENABLED": "true",
        "IMGSWEEP_SECRETS_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "service", "check-config", "--no-require-credentials"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "imgsweep[otel]" in result.stderr


class Collector:
    """An OTLP/HTTP trace endpoint on loopback: the spans the service exports, decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    """The collector, and the standard OTel variables that point the service's exporter at it (fast batches)."""
    running = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", running.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_a_traceparent_goes_from_the_input_to_the_outcome_the_dead_letter_and_the_calls_span(
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
    collector: Collector,
) -> None:
    names = topics(partitions=1)
    sandbox = sandbox_process("--qps", "0", "--unknown-collection-1030")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p2", "b.jpg"), ("p3", "c.jpg")]})
    service_process(names, sandbox, TRACING__ENABLED="true")
    produce(
        kafka_bootstrap,
        names.input,
        [
            traced(event("e1", "shoes", "p1", ["a.jpg"]), PARENTS[0], b"vendor=x"),  # a Kafka header
            binary("e2", "shoes", "p2", ["b.jpg"], PARENTS[1]),  # the CloudEvents extension, binary mode
            structured("e3", "shoes", "p3", ["c.jpg"], traceparent=PARENTS[2]),  # and structured mode
            structured("e4", "shoes", "p4", [], traceparent=PARENTS[3]),  # no data: invalid, dead-lettered
            traced(event("e5", "ghost", "p5", ["x.jpg"]), PARENTS[4]),  # no such collection: item_failed
        ],
    )
    outcomes = {record.json()["event_id"]: record for record in consume_all(kafka_bootstrap, names.outcome, expect=4)}
    assert {event_id: record.headers.get("traceparent") for event_id, record in outcomes.items()} == {
        f"e{n}": PARENTS[n - 1].encode() for n in (1, 2, 3, 5)
    }
    assert outcomes["e1"].headers["tracestate"] == b"vendor=x"
    dead_letters = {
        record.headers["imgsweep_error_class"]: record for record in consume_all(kafka_bootstrap, names.dlq, expect=2)
    }
    assert set(dead_letters) == {b"invalid_schema", b"item_failed"}, [r.headers for r in dead_letters.values()]
    invalid, failed = dead_letters[b"invalid_schema"], dead_letters[b"item_failed"]
    assert invalid.headers["traceparent"] == PARENTS[3].encode()  # added: the envelope carried it
    assert invalid.json()["traceparent"] == PARENTS[3]  # and the value is as it came
    assert failed.headers["traceparent"] == PARENTS[4].encode()  # kept: the record carried it

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(collector.spans) < 2:
        time.sleep(0.1)
    linked = {
        int.from_bytes(link.trace_id, "big"): int.from_bytes(link.span_id, "big")
        for span in collector.spans
        for link in span.links
    }
    assert linked == {n: n + 100 for n in (1, 2, 3, 5)}
    assert {span.name for span in collector.spans} == {"jd delete images"}
