"""librdkafka's configuration: group membership (static or dynamic) and the group protocol (classic or KIP-848)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from confluent_kafka import Consumer

from service import kafka_clients
from service.kafka_clients import (
    CONNECTION_RETRY,
    consumer_config,
    demand_producer_config,
    producer_config,
    reader_config,
)
from service.settings import ConfigError, Settings, load_settings
from tests.support.murmur2 import murmur2

pytestmark = pytest.mark.usefixtures("settings_from_the_test_only")


def config_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name, value in env.items():
        monkeypatch.setenv(f"IMGSWEEP_{name}", value)
    return consumer_config(load_settings())


def librdkafka_accepts(config: dict[str, Any]) -> None:
    """librdkafka checks the configuration when the consumer is created (it refuses classic-only options
    with group.protocol=consumer); nothing listens on port 1, and the consumer is closed at once."""
    consumer = Consumer({**config, "bootstrap.servers": "127.0.0.1:1"})
    consumer.close()


def test_by_default_a_dynamic_member_of_a_classic_cooperative_sticky_group(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from(monkeypatch)
    assert "group.instance.id" not in config
    assert config["group.protocol"] == "classic"
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["session.timeout.ms"] == 45_000
    librdkafka_accepts(config)


def test_the_instance_id_makes_a_static_member(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from(monkeypatch, KAFKA__GROUP_INSTANCE_ID="imgsweep-7d9f8b6c4-x2x7q")
    assert config["group.instance.id"] == "imgsweep-7d9f8b6c4-x2x7q"
    librdkafka_accepts(config)


def test_the_consumer_protocol_leaves_assignment_and_session_to_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from(monkeypatch, KAFKA__GROUP_PROTOCOL="consumer", KAFKA__GROUP_INSTANCE_ID="imgsweep-0")
    assert config["group.protocol"] == "consumer"
    assert config["group.instance.id"] == "imgsweep-0"
    for refused in ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"):
        assert refused not in config
    librdkafka_accepts(config)


def test_the_same_options_would_make_librdkafka_refuse_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is worth something only if librdkafka really refuses them."""
    config = config_from(monkeypatch, KAFKA__GROUP_PROTOCOL="consumer")
    with pytest.raises(Exception, match=r"`session\.timeout\.ms` is not supported for `group\.protocol=consumer`"):
        librdkafka_accepts({**config, "session.timeout.ms": 45_000})


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_replay_reads_without_joining_the_services_group(monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv("IMGSWEEP_KAFKA__GROUP_PROTOCOL", protocol)
    monkeypatch.setenv("IMGSWEEP_KAFKA__GROUP_INSTANCE_ID", "imgsweep-0")
    config = reader_config(load_settings(), "imgsweep-replay-1")
    assert config["group.id"] == "imgsweep-replay-1"
    assert "group.instance.id" not in config
    assert "group.protocol" not in config
    assert config["enable.auto.commit"] is False
    librdkafka_accepts(config)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KAFKA__GROUP_INSTANCE_ID": ""}, "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID: '' is not a valid group instance id"),
        ({"KAFKA__GROUP_INSTANCE_ID": "pod 1"}, "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID: 'pod 1' is not a valid group"),
        ({"KAFKA__GROUP_INSTANCE_ID": "pod/1"}, "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID: 'pod/1' is not a valid group"),
        ({"KAFKA__GROUP_INSTANCE_ID": "x" * 250}, "1-249 characters"),
        ({"KAFKA__GROUP_PROTOCOL": "eager"}, "IMGSWEEP_KAFKA__GROUP_PROTOCOL: Input should be 'classic' or 'consumer'"),
        (
            {"KAFKA__GROUP_PROTOCOL": "consumer", "KAFKA__SESSION_TIMEOUT_MS": "10000"},
            "IMGSWEEP_KAFKA__SESSION_TIMEOUT_MS has no effect with group_protocol consumer",
        ),
        (
            {"KAFKA__GROUP_PROTOCOL": "consumer", "KAFKA__PROPERTIES": json.dumps({"heartbeat.interval.ms": "1000"})},
            "IMGSWEEP_KAFKA__PROPERTIES: librdkafka property 'heartbeat.interval.ms' is refused",
        ),
        ({"KAFKA__PROPERTIES": json.dumps({"group.instance.id": "a"})}, "use IMGSWEEP_KAFKA__GROUP_INSTANCE_ID"),
        ({"KAFKA__PROPERTIES": json.dumps({"group.protocol": "consumer"})}, "use IMGSWEEP_KAFKA__GROUP_PROTOCOL"),
    ],
)
def test_bad_membership_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"IMGSWEEP_{name}", value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert expected in str(raised.value)


def test_a_pods_name_is_a_valid_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pod names are DNS-1123 subdomains (lower-case letters, digits, '-' and '.'): all of them pass."""
    monkeypatch.setenv("IMGSWEEP_KAFKA__GROUP_INSTANCE_ID", "imgsweep-0.worker")
    assert load_settings().kafka.group_instance_id == "imgsweep-0.worker"


def every_client_config(settings: Settings) -> dict[str, dict[str, Any]]:
    """What each of ``service.kafka_clients``' builders makes (every public ``*_config`` function), so a client
    added there is checked without being listed here; a required argument other than the settings gets a name."""
    built = {}
    for name in kafka_clients.__all__:
        build = getattr(kafka_clients, name)
        if not (name.endswith("_config") and callable(build)):
            continue
        required = [
            parameter
            for parameter in list(inspect.signature(build).parameters.values())[1:]
            if parameter.default is inspect.Parameter.empty
            and parameter.kind in {inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}
        ]
        built[name] = build(settings, *(f"test-{parameter.name}" for parameter in required))
    return built


def test_every_client_spaces_its_reconnects_to_a_broker_that_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka's defaults (100 ms .. 10 s, re-bootstrap when all brokers are down) log about 20 FAIL lines a
    second per client during an outage; 1 s .. 30 s without re-bootstrapping logs a few a minute."""
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "true")
    settings = load_settings()
    configs = every_client_config(settings)
    assert {"consumer_config", "producer_config", "control_producer_config", "admin_config"} <= set(configs)
    for name, config in configs.items():
        assert {key: config.get(key) for key in CONNECTION_RETRY} == CONNECTION_RETRY, name
    librdkafka_accepts(consumer_config(settings))


def test_the_properties_may_still_choose_how_brokers_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from(
        monkeypatch,
        KAFKA__PROPERTIES=json.dumps({"metadata.recovery.strategy": "rebootstrap", "reconnect.backoff.ms": "50"}),
    )
    assert config["metadata.recovery.strategy"] == "rebootstrap"
    assert config["reconnect.backoff.ms"] == "50"
    librdkafka_accepts(config)


# Kafka's UtilsTest.testMurmur2: what Java's murmur2 gives for these keys.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_the_tests_murmur2_is_javas() -> None:
    assert {key: murmur2(key) for key in JAVA_MURMUR2} == JAVA_MURMUR2


def test_every_producer_partitions_keys_as_java_does(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    for config in (producer_config(settings), demand_producer_config(settings)):
        assert config["partitioner"] == "murmur2_random"
    monkeypatch.setenv("IMGSWEEP_KAFKA__PROPERTIES", json.dumps({"partitioner": "consistent_random"}))
    assert producer_config(load_settings())["partitioner"] == "murmur2_random", "not a property to change"
