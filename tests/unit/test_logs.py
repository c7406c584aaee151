"""The JSON log line: allowed keys only, the ids of the batch a line is logged in, librdkafka's errors once."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError

from service.kafka_clients import LIBRDKAFKA_LOGGER, consumer_config, log_kafka_error, producer_config
from service.logs import JsonFormatter, add_log_context, log_context
from service.settings import Settings


def format_line(logger: str, message: str, **extra: Any) -> dict[str, Any]:
    record = logging.getLogger(logger).makeRecord(logger, logging.INFO, __file__, 1, message, (), None, extra=extra)
    parsed: dict[str, Any] = json.loads(JsonFormatter().format(record))
    return parsed


def test_only_allowed_keys_reach_the_line() -> None:
    line = format_line("x", "hello", event_id="e1", request_id="r1", secret_key="hunter2", event_ids=["a", "b"])
    assert line["event_id"] == "e1"
    assert line["request_id"] == "r1"
    assert line["event_ids"] == ["a", "b"]
    assert "secret_key" not in line


def test_a_line_logged_in_a_batchs_context_carries_its_ids_until_the_context_ends() -> None:
    with log_context(batch_id="b1", collection="shoes"):
        add_log_context(request_id="r1")
        inside = format_line("service.api.client", "call failed, retrying", code="10020")
        explicit = format_line("x", "y", collection="hats")
    after = format_line("x", "after")
    assert {key: inside[key] for key in ("batch_id", "collection", "request_id", "code")} == {
        "batch_id": "b1",
        "collection": "shoes",
        "request_id": "r1",
        "code": "10020",
    }
    assert explicit["collection"] == "hats"  # what a line says itself wins
    assert not {"batch_id", "collection", "request_id"} & after.keys()


def test_clients_log_through_the_librdkafka_logger_and_error_callback() -> None:
    settings = Settings()
    for config in (consumer_config(settings), producer_config(settings)):
        assert config["logger"] is LIBRDKAFKA_LOGGER
        assert config["error_cb"] is log_kafka_error


def test_error_callback_leaves_what_librdkafka_logged_itself(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="service.kafka_clients")
    for code in (KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._AUTHENTICATION, KafkaError._SSL):
        log_kafka_error(KafkaError(code, "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed"))
    log_kafka_error(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    assert caplog.records == []
    log_kafka_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert [(r.levelname, r.getMessage(), r.__dict__["code"]) for r in caplog.records] == [
        ("WARNING", "kafka: 1/1 brokers are down", "_ALL_BROKERS_DOWN")
    ]
