"""The health and metrics endpoint over real loopback HTTP: formats negotiated, HEAD answered, promtool clean."""

from __future__ import annotations

import http.client
import subprocess
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from service.health import HealthServer, HealthState
from service.metrics import Metrics
from tests.integration.test_observability import promtool

pytestmark = pytest.mark.integration

OPENMETRICS = "application/openmetrics-text"


@pytest.fixture
def server() -> Iterator[HealthServer]:
    metrics = Metrics(error_classes=("not_json",))
    metrics.consumed(partition=0)
    metrics.consumed(partition=1)
    metrics.consumed(partition=2)
    running = HealthServer("127.0.0.1", 0, health=HealthState(), metrics=metrics)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def request(server: HealthServer, method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_a_scrape_has_process_and_gc_series_next_to_the_service_s_own(server: HealthServer) -> None:
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert samples["process_resident_memory_bytes"] > 1_000_000  # a Python process is at least that
    assert samples["process_open_fds"] >= 1
    assert any(name.startswith("python_gc_collections") for name in samples)
    assert samples["imgsweep_events_consumed_total"] == 3


def test_promtool_finds_nothing_to_say_about_the_scrape(server: HealthServer) -> None:
    _, _, body = request(server, "GET", "/metrics")
    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=body.decode(), capture_output=True, text=True, timeout=60, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert (lint.stdout + lint.stderr).strip() == ""


@pytest.mark.parametrize(
    "accept",
    [
        OPENMETRICS,
        f"{OPENMETRICS}; version=1.0.0; charset=utf-8",
        f"{OPENMETRICS};version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",  # what Prometheus sends
    ],
)
def test_openmetrics_is_answered_when_accept_asks_for_it(server: HealthServer, accept: str) -> None:
    status, headers, body = request(server, "GET", "/metrics", Accept=accept)
    assert status == 200
    assert headers["content-type"].startswith(OPENMETRICS)
    text = body.decode()
    assert text.endswith("# EOF\n")
    # The strict parser raises on anything malformed (it is untyped upstream).
    names = {f.name for f in openmetrics_families(text)}  # type: ignore[no-untyped-call]
    assert {"process_resident_memory_bytes", "imgsweep_events_consumed"} <= names


def test_without_openmetrics_in_accept_the_text_format_is_answered(server: HealthServer) -> None:
    _, headers, body = request(server, "GET", "/metrics", Accept="text/plain")
    assert headers["content-type"].startswith("text/plain")
    assert b"# EOF" not in body


@pytest.mark.parametrize(("path", "status"), [("/metrics", 200), ("/livez", 200), ("/readyz", 503), ("/nope", 404)])
def test_head_answers_like_get_without_a_body(server: HealthServer, path: str, status: int) -> None:
    get_status, get_headers, get_body = request(server, "GET", path)
    head_status, head_headers, head_body = request(server, "HEAD", path)
    assert (head_status, get_status) == (status, status)
    assert head_body == b""
    assert get_body != b""
    assert head_headers["content-type"] == get_headers["content-type"]
    assert int(head_headers["content-length"]) > 0
