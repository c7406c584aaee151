"""A broker outage logs a few lines a minute: the clients imgsweep builds, pointed at a loopback port where no
broker listens, counted for six seconds (librdkafka's defaults log about 20 FAIL lines a second per client)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from service import kafka_clients
from service.kafka_clients import CONNECTION_RETRY, LIBRDKAFKA_LOGGER, consumer_config, producer_config
from service.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settings_from_the_test_only")]

WATCH_SECONDS = 6.0


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def librdkafka_lines() -> Iterator[Lines]:
    lines = Lines()
    LIBRDKAFKA_LOGGER.addHandler(lines)
    try:
        yield lines
    finally:
        LIBRDKAFKA_LOGGER.removeHandler(lines)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def fail_lines(config: dict[str, Any], port: int, lines: Lines) -> int:
    config = {**config, "bootstrap.servers": f"127.0.0.1:{port}"}
    consumer = Consumer(config)
    producer = Producer(producer_config(load_settings()) | {"bootstrap.servers": f"127.0.0.1:{port}"})
    consumer.subscribe(["imgsweep-outage-test"])
    try:
        deadline = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < deadline:
            consumer.poll(0.1)
            producer.poll(0)
    finally:
        consumer.close()
    return sum(1 for record in lines.records if record.getMessage().startswith("FAIL "))


def test_an_outage_logs_a_few_lines_a_minute(
    monkeypatch: pytest.MonkeyPatch, closed_port: int, librdkafka_lines: Lines
) -> None:
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "true")
    fails = fail_lines(consumer_config(load_settings()), closed_port, librdkafka_lines)
    # Two clients, each trying at 0 s, about 1 s and about 3 s (jitter -25 %..+50 %), maybe once more.
    assert 2 <= fails <= 8, [record.getMessage() for record in librdkafka_lines.records]


def test_librdkafkas_own_retry_would_flood_the_log(
    monkeypatch: pytest.MonkeyPatch, closed_port: int, librdkafka_lines: Lines
) -> None:
    """The check above is worth something only if the settings it checks make the difference."""
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "true")
    config = {k: v for k, v in consumer_config(load_settings()).items() if k not in CONNECTION_RETRY}
    assert fail_lines(config, closed_port, librdkafka_lines) > 20


def test_every_producer_imgsweep_builds_logs_a_few_lines_a_minute(closed_port: int, librdkafka_lines: Lines) -> None:
    """Each of ``service.kafka_clients``' producers (every public ``*producer_config``, so a new one is counted
    without being listed here), pointed at the closed port together: the control producer, built without the
    backoff, logged 23 FAIL lines in 20 s where the others logged 2."""
    settings = load_settings()
    builders = [name for name in kafka_clients.__all__ if name.endswith("producer_config")]
    assert "control_producer_config" in builders
    producers = [
        Producer(
            getattr(kafka_clients, name)(settings)
            | {"bootstrap.servers": f"127.0.0.1:{closed_port}", "client.id": f"outage-{name}"}
        )
        for name in builders
    ]
    deadline = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < deadline:
        for producer in producers:
            producer.poll(0.02)
    fails = {
        name: sum(1 for r in librdkafka_lines.records if r.getMessage().startswith(f"FAIL [outage-{name}#"))
        for name in builders
    }
    # Each trying at 0 s, about 1 s and about 3 s (jitter -25 %..+50 %), maybe once more.
    assert all(1 <= count <= 4 for count in fails.values()), fails
