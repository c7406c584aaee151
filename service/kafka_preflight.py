"""Checks of the Kafka configuration before anything runs: librdkafka's own validation, and the probe.

librdkafka checks every property's name and value, and loads the TLS files it is given, when a client is
created. Building the service's consumer and producer from its configuration (without bootstrap servers, so
nothing connects) and closing them at once turns a misspelt or invalid property into one line naming it, at
start-up and in ``check-config``, instead of a traceback from the running service.

The probe (``check-config --probe``) does connect: it asks the brokers for their metadata with the
consumer's configuration (the same security settings the service uses) and says which of the three topics
is missing, and which internal topics a start would make (with the command, where imgsweep may not make them):
the control topic, and behind the router the collections topic and the ``.by-collection`` deletions changelog
among them.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from service.internal_topics import InternalTopic, collections_topic, create_command, internal_topics
from service.kafka_clients import consumer_config, producer_config
from service.pipeline.collections_topic import CollectionPartitions
from service.router import pipeline_settings
from service.settings import ConfigError, Settings

__all__ = ["ProbeResult", "check_librdkafka_config", "probe_brokers"]

# Files librdkafka reads when a client is created; a missing one gets librdkafka's bare "BIO lib" error.
_FILE_PROPERTIES = (
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
)
_PROPERTY_IN_MESSAGE = re.compile(r"\b[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+\b")  # bogus.prop, ssl.key.pem
_LOG_PREFIX = re.compile(r"^\S+ \[[^\]]*\] \[[^\]]*\]: ")  # "CONFWARN [client#consumer-1] [thrd:app]: "
# What librdkafka's OpenSSL error leaves unsaid.
_HINTS = {
    "ssl.key.location": (
        "the key must be PEM, match ssl.certificate.location and, if encrypted, come with the right "
        "ssl.key.password (IMGSWEEP_KAFKA__SECRET_PROPERTIES)"
    ),
    "ssl.keystore.location": "a PKCS #12 file readable with ssl.keystore.password (IMGSWEEP_KAFKA__SECRET_PROPERTIES)",
}
_SECRET_NAME = re.compile(r"(password|secret|token|key\.pem|\.pem$)")
_MASK = "**********"


class _Collected(logging.Handler):
    """librdkafka's log lines, kept instead of written to stderr around the service's own output."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _quiet_logger() -> tuple[logging.Logger, _Collected]:
    logger = logging.Logger("imgsweep.librdkafka-check")  # not registered: never reaches the root logger
    collected = _Collected()
    logger.addHandler(collected)
    return logger, collected


def check_librdkafka_config(settings: Settings) -> list[str]:
    """Raises ConfigError naming the first property librdkafka refuses; returns its configuration warnings.

    Never blocks on the network: the clients are built without bootstrap servers and closed at once.
    """
    _check_files(settings)
    logger, collected = _quiet_logger()
    builds: list[tuple[str, type[Consumer] | type[Producer], dict[str, Any]]] = [
        ("consumer", Consumer, consumer_config(settings, logger=logger)),
        ("producer", Producer, producer_config(settings, logger=logger)),
    ]
    for _, client_type, config in builds:
        config.pop("bootstrap.servers", None)  # validate only: no connection
        try:
            client = client_type(config)
        except KafkaException as error:
            raise ConfigError(_refusal(settings, error)) from None
        client.close()
    warnings = {
        _LOG_PREFIX.sub("", line) for line in collected.lines if "CONFWARN" in line and "bootstrap.servers" not in line
    }
    return sorted(_masked(settings, line) for line in warnings)


def _check_files(settings: Settings) -> None:
    properties = settings.kafka.librdkafka_common()
    for name in _FILE_PROPERTIES:
        path = properties.get(name)
        if path is None or (name == "ssl.ca.location" and path == "probe"):
            continue
        if not os.path.exists(path):
            problem = "does not exist"
        elif not os.access(path, os.R_OK):
            problem = "cannot be read by this user"
        else:
            continue
        raise ConfigError(
            f"{_carrier(settings, name)}: librdkafka property {name!r}: {path} {problem} "
            "(on Kubernetes: mount the Secret with extraVolumes and extraVolumeMounts)"
        )


def _refusal(settings: Settings, error: KafkaException) -> str:
    kafka_error: KafkaError = error.args[0]
    text = _masked(settings, kafka_error.str())
    match = _PROPERTY_IN_MESSAGE.search(text)
    where = _carrier(settings, match.group(0)) if match else "IMGSWEEP_KAFKA__PROPERTIES"
    hint = f" ({_HINTS[match.group(0)]})" if match and match.group(0) in _HINTS else ""
    return f"{where}: librdkafka refuses the configuration: {text}{hint}"


def _carrier(settings: Settings, name: str) -> str:
    """The variable a librdkafka property came from, as far as it can be told."""
    if name in settings.kafka.secret_properties:
        return "IMGSWEEP_KAFKA__SECRET_PROPERTIES"
    if name in {"sasl.username", "sasl.password"} and name not in settings.kafka.properties:
        return f"IMGSWEEP_KAFKA__{name.replace('.', '_').upper()}"
    return "IMGSWEEP_KAFKA__PROPERTIES"  # what is not there is most likely an alias of a property set there


def _masked(settings: Settings, text: str) -> str:
    kafka = settings.kafka
    secrets = [value for name, value in kafka.librdkafka_common().items() if _SECRET_NAME.search(name)]
    secrets += [value.get_secret_value() for value in kafka.secret_properties.values()]
    for value in secrets:
        if isinstance(value, str) and value:
            text = text.replace(value, _MASK)
    return text


@dataclass(frozen=True)
class ProbeResult:
    brokers: int
    problems: list[str]
    warnings: list[str] = field(default_factory=list)
    """What works without, less well: a missing demand topic (the QPS is then shared by partitions)."""


def probe_brokers(settings: Settings, timeout: float) -> ProbeResult:
    """Asks the brokers for their topics with the service's consumer configuration; blocks up to `timeout`.

    A problem names the setting to fix: the bootstrap servers when no broker answered, or each of the
    three topics that the brokers do not know (or that this user may not describe).
    """
    kafka = settings.kafka
    logger, collected = _quiet_logger()
    errors: list[str] = []
    consumer = Consumer(consumer_config(settings, logger=logger, error_cb=lambda e: errors.append(e.str())))
    try:
        metadata = consumer.list_topics(timeout=timeout)
    except KafkaException as error:
        consumer.poll(0)  # serves the error callback, so the reason is known
        reasons = [*errors, *(line for line in collected.lines if "FAIL" in line), error.args[0].str()]
        return ProbeResult(
            0,
            [
                f"IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS: no broker at {kafka.bootstrap_servers} answered within "
                f"{timeout:g} s ({_masked(settings, reasons[0])})"
            ],
        )
    finally:
        consumer.close()
    problems = []
    dry_run_form = " (its dry-run form: IMGSWEEP_DRY_RUN is true)" if settings.dry_run else ""
    for variable, topic, form in (
        ("IMGSWEEP_KAFKA__INPUT_TOPIC", kafka.input_topic, ""),
        ("IMGSWEEP_KAFKA__OUTCOME_TOPIC", kafka.outcome_topic, dry_run_form),
        ("IMGSWEEP_KAFKA__DLQ_TOPIC", kafka.dlq_topic, dry_run_form),
    ):
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            problems.append(
                f"{variable}: topic {topic!r}{form} does not exist on the brokers at {kafka.bootstrap_servers} "
                "(or this user may not describe it): create it, or set the right name"
            )
    warnings = []
    for internal in _internal_topics(settings, metadata.topics):
        found = metadata.topics.get(internal.name)
        if found is not None and found.error is None:
            continue
        if internal.name == kafka.demand_topic:  # works without it, less well
            warnings.append(
                f"{internal.variable}: topic {internal.name!r}{dry_run_form} does not exist on the brokers (or this "
                "user may not describe it): replicas will share the QPS by partitions, not by what each has to send, "
                "until it exists; "
                + (
                    "imgsweep creates it at start"
                    if kafka.create_topics
                    else "IMGSWEEP_KAFKA__CREATE_TOPICS is false: create it with "
                    + create_command(internal, kafka.bootstrap_servers)
                )
            )
        elif kafka.create_topics:
            warnings.append(f"{internal.variable}: topic {internal.name!r} is missing; imgsweep creates it at start")
        else:
            # a budget topic no account's spending limit needs: the budget is then counted by each process alone
            (problems if internal.required else warnings).append(
                f"{internal.variable}: topic {internal.name!r}{dry_run_form} does not exist and "
                "IMGSWEEP_KAFKA__CREATE_TOPICS is false: create it with "
                + create_command(internal, kafka.bootstrap_servers)
            )
    return ProbeResult(len(metadata.brokers), problems, warnings)


def _internal_topics(settings: Settings, topics: dict[str, Any]) -> list[InternalTopic]:
    """The internal topics a start would make: behind the router (decision 0022), the collections topic (its
    partitions as it has them, or as the router would make it) and the pipeline's own, whose deletions changelog
    is ``<deletions topic>.by-collection`` with the collections topic's partitions."""
    kafka = settings.kafka
    source = topics.get(kafka.input_topic)
    partitions = len(source.partitions) if source is not None and source.partitions else 1
    if not kafka.repartition:
        return internal_topics(settings, partitions)
    made = topics.get(kafka.collections_topic)
    if made is not None and made.partitions:
        routed = len(made.partitions)
    else:
        routed = CollectionPartitions.sized(partitions, len(settings.api_accounts()))
    return [collections_topic(settings, routed), *internal_topics(pipeline_settings(settings), routed)]
