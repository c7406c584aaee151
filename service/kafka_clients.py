"""librdkafka's configuration for imgsweep's consumer and producer: every dotted name in one place.

librdkafka's own log lines go through Python's logging (the logger named ``librdkafka``), so they come out as
the service's JSON lines instead of ``%3|...|FAIL|...`` on stderr. librdkafka reports a broker failure twice:
as a log line (``FAIL``, with the broker and the cause) and through ``error_cb``. ``log_kafka_error`` keeps
``error_cb`` for what librdkafka does not log itself (``_ALL_BROKERS_DOWN`` above all), so each failure is one
line, and ``CONNECTION_RETRY`` spaces the retries of a broker that is down, so an outage logs a few lines a minute.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from service.settings import Settings

__all__ = [
    "CONNECTION_RETRY",
    "DEFAULT_MESSAGE_MAX_BYTES",
    "LIBRDKAFKA_LOGGER",
    "PARTITIONER",
    "STATS_INTERVAL_MS",
    "admin_config",
    "budget_producer_config",
    "budget_reader_config",
    "consumer_config",
    "control_producer_config",
    "control_reader_config",
    "demand_producer_config",
    "demand_reader_config",
    "log_commit_result",
    "log_kafka_error",
    "max_record_bytes",
    "producer_config",
    "reader_config",
    "watermarks",
]

STATS_INTERVAL_MS = 5000
DEFAULT_MESSAGE_MAX_BYTES: Final = 1_000_000
"""librdkafka's default ``message.max.bytes``: the largest record a producer takes."""

LIBRDKAFKA_LOGGER: Final = logging.getLogger("librdkafka")
"""Where librdkafka's log lines go (confluent-kafka's ``logger``; served by ``poll``/``consume``). Its syslog
levels map to Python's (3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG): a ``debug`` property shows only at
``IMGSWEEP_LOG__LEVEL=DEBUG``."""

_LOGGED_BY_LIBRDKAFKA: Final = frozenset(
    {KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._AUTHENTICATION, KafkaError._SSL}
)
"""Errors ``error_cb`` reports that librdkafka has already logged as a ``FAIL`` line naming the broker."""

_log = logging.getLogger(__name__)

CONNECTION_RETRY: Final[dict[str, Any]] = {
    # A broker that cannot be reached is retried after 1 s, then twice as long each time up to 30 s (librdkafka
    # adds -25 %..+50 % jitter), so an outage logs a FAIL line per client about twice a minute, not 20 a second
    # (librdkafka's 100 ms .. 10 s), and a broker back is found within 45 s at worst.
    "reconnect.backoff.ms": 1000,
    "reconnect.backoff.max.ms": 30_000,
    # Re-bootstrapping when all brokers are down makes new broker handles with no backoff, which try (and log)
    # once a second whatever the backoff says; the brokers learned from the metadata are kept instead. Where
    # the brokers' addresses change under a running client, set "rebootstrap" in IMGSWEEP_KAFKA__PROPERTIES.
    "metadata.recovery.strategy": "none",
    # A broker closing an idle connection (connections.max.idle.ms) is routine, not an error line.
    "log.connection.close": False,
    # Every broker learned from the metadata is connected to at once. With sparse connections (librdkafka's
    # default) a client connects to one broker at most every reconnect.backoff.ms / 2 (500 ms here), and since
    # librdkafka 2.10 the bootstrap connection is dropped once the brokers are known: each new client's first
    # request then waited 500 ms, and a start-up makes a handful of them one after the other (a restart took
    # 0.5-1.5 s longer). The cost: a connection from each client to each broker of the cluster.
    "enable.sparse.connections": False,
}
"""How every client retries a broker it lost; IMGSWEEP_KAFKA__PROPERTIES may override each."""


def log_kafka_error(error: KafkaError) -> None:
    """``error_cb``: logs what librdkafka has not logged already, once.

    A broker's connection, resolution, TLS or authentication failure is librdkafka's ``FAIL`` line; a fatal error
    is its ``FATAL`` line (and the pipeline halts on it where a message or delivery report carries it). What is
    left, chiefly ``_ALL_BROKERS_DOWN`` (no single broker's line says that), is logged here.
    """
    if error.fatal() or error.code() in _LOGGED_BY_LIBRDKAFKA:
        return
    _log.warning("kafka: %s", error.str(), extra={"code": error.name()})


def log_commit_result(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
    """``on_commit`` of a consumer with no commit step (``replay-dlq``): a failed commit is logged, once.

    The service's consumer passes its commit step's own (``CommitStep.on_commit``), which also sends the
    position again and counts ``imgsweep_commit_failures_total``."""
    failed = [tp.partition for tp in partitions if tp.error is not None]
    if error is not None or failed:
        reason = error.str() if error is not None else "; ".join(str(tp.error) for tp in partitions if tp.error)
        _log.warning("offset commit failed: %s", reason, extra={"count": len(failed) or len(partitions)})


PARTITIONER: Final = "murmur2_random"
"""Java's partitioner (murmur2 of the key, positive, modulo the partition count; keyless records spread): a
product's outcomes, dead letters and replayed copies land on the partition a Java producer would choose for the
same key, so Java and Kafka Streams consumers that co-partition by product id see them where they expect.
librdkafka's default (``consistent_random``, CRC32) would not."""


def max_record_bytes(settings: Settings) -> int:
    """The producer's ``message.max.bytes`` (librdkafka's default unless the properties set it)."""
    value = settings.kafka.librdkafka_common().get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES)
    try:
        return int(value)
    except (TypeError, ValueError):
        return DEFAULT_MESSAGE_MAX_BYTES  # librdkafka refuses it at start-up (check_librdkafka_config)


# What only a member of a classic group may set: with group.protocol=consumer (KIP-848) the broker assigns
# partitions and keeps the session, and librdkafka refuses to create a consumer that sets these.
_CLASSIC_GROUP_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")


def consumer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    """librdkafka's dotted names for the consumer, all in one place."""
    kafka = settings.kafka
    config: dict[str, Any] = {
        # Prefetch at most 16 MB per consumer (librdkafka's default is 64 MB): imgsweep holds its own bounded
        # backlog of pending events, so a deep fetch queue only costs memory. Overridable in properties.
        "queued.max.messages.kbytes": 16384,
        **CONNECTION_RETRY,
        **kafka.librdkafka_common(),
        "group.id": kafka.group_id,
        "group.protocol": kafka.group_protocol,
        "client.id": f"imgsweep-{socket.gethostname()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Input written in transactions is read once committed, never an aborted record.
        "isolation.level": "read_committed",
        "auto.offset.reset": kafka.properties.get("auto.offset.reset", "earliest"),
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": kafka.max_poll_interval_ms,
        "session.timeout.ms": kafka.session_timeout_ms,
        "statistics.interval.ms": STATS_INTERVAL_MS,
        # Behind the router the pipeline reads a transactional topic, whose high watermark counts the transactions'
        # markers: the end of a partition is told by an event instead (``Intake.caught_up``).
        "enable.partition.eof": kafka.repartition,
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": log_kafka_error,
        "on_commit": log_commit_result,
        **callbacks,
    }
    if kafka.group_instance_id is not None:
        # Static membership: a restarted replica with the same id takes its partitions back without waiting
        # for the dead member's session to expire (docs/decisions/0005-group-membership.md).
        config["group.instance.id"] = kafka.group_instance_id
    if kafka.group_protocol == "consumer":
        for name in _CLASSIC_GROUP_ONLY:
            config.pop(name, None)
    return config


def reader_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer that assigns partitions itself (replay-dlq): never a member of the service's group."""
    config = consumer_config(settings)
    for name in ("group.instance.id", "group.protocol", *_CLASSIC_GROUP_ONLY):
        config.pop(name, None)
    config["group.id"] = group_id
    config["enable.partition.eof"] = False  # the service's consumer's, behind the router only
    return config


def producer_config(settings: Settings, *, transactional_id: str | None = None, **callbacks: Any) -> dict[str, Any]:
    """The outcomes' producer; with ``transactional_id``, transactional (exactly-once delivery)."""
    config: dict[str, Any] = {
        **CONNECTION_RETRY,
        **{k: v for k, v in settings.kafka.librdkafka_common().items() if not k.startswith("auto.offset")},
        "client.id": f"imgsweep-{socket.gethostname()}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "partitioner": PARTITIONER,
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": log_kafka_error,
        **callbacks,
    }
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = settings.kafka.transaction_timeout_ms
    return config


def _assigned_reader(settings: Settings, topic: str, *, partition_eof: bool) -> dict[str, Any]:
    """A reader of one of imgsweep's internal topics by assignment (group ``<group id>.<topic>-reader``, never
    joined, never committed), without statistics."""
    config = reader_config(settings, f"{settings.kafka.group_id}.{topic}-reader")
    config.pop("statistics.interval.ms", None)
    config["enable.partition.eof"] = partition_eof
    return config


def changelog_reader_config(settings: Settings) -> dict[str, Any]:
    """Reads the deletions changelog back by assignment (never joins a group, never commits)."""
    return _assigned_reader(settings, "changelog", partition_eof=False)


def demand_reader_config(settings: Settings) -> dict[str, Any]:
    """Reads the demand topic by assignment (never joins a group, never commits)."""
    return _assigned_reader(settings, "demand", partition_eof=False)


def demand_producer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    """Announcements are worth a second at most: not retried for long, never waited for by the outcomes' flush."""
    return {
        **CONNECTION_RETRY,
        **{k: v for k, v in settings.kafka.librdkafka_common().items() if not k.startswith("auto.offset")},
        "client.id": f"imgsweep-{socket.gethostname()}-demand",
        "acks": "1",
        "linger.ms": 0,
        "message.timeout.ms": 5000,
        "partitioner": PARTITIONER,
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": log_kafka_error,
        **callbacks,
    }


def budget_reader_config(settings: Settings) -> dict[str, Any]:
    """Reads the budget topic by assignment from its beginning (never joins a group, never commits)."""
    return _assigned_reader(settings, "budget", partition_eof=False)


def budget_producer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    """A call waits for its claim: written at once (no linger), by every in-sync replica, idempotent (a retry
    never counts a claim twice; it is cumulative anyway)."""
    return {
        **CONNECTION_RETRY,
        **{k: v for k, v in settings.kafka.librdkafka_common().items() if not k.startswith("auto.offset")},
        "client.id": f"imgsweep-{socket.gethostname()}-budget",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 0,
        "message.timeout.ms": 10000,
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": log_kafka_error,
        **callbacks,
    }


def control_reader_config(settings: Settings) -> dict[str, Any]:
    """Reads the control topic by assignment from its beginning (never joins a group, never commits); says when it
    reached the end (partition EOF): the offsets of a compacted topic's last records may be gone."""
    return _assigned_reader(settings, "control", partition_eof=True)


def control_producer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    """A pause, a resume or a tripped brake: acknowledged by every in-sync replica, retried for 30 s at most."""
    return {
        **CONNECTION_RETRY,
        **{k: v for k, v in settings.kafka.librdkafka_common().items() if not k.startswith("auto.offset")},
        "client.id": f"imgsweep-{socket.gethostname()}-control",
        "acks": "all",
        "linger.ms": 0,
        "message.timeout.ms": 30000,
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": log_kafka_error,
        **callbacks,
    }


def admin_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    """The admin client that creates imgsweep's internal topics (deletions, demand, control) when missing."""
    return {
        **CONNECTION_RETRY,
        **{k: v for k, v in settings.kafka.librdkafka_common().items() if not k.startswith("auto.offset")},
        "client.id": f"imgsweep-{socket.gethostname()}-admin",
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": log_kafka_error,
        **callbacks,
    }


LEADER_RETRY_SECONDS: Final = 0.2
"""Between two asks for a partition's offsets while it has no leader."""


def watermarks(
    consumer: Consumer,
    partition: TopicPartition,
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:
    """A partition's first and next offsets. A topic imgsweep has just made may have no leader for a moment
    (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE): asked again until ``deadline`` (on ``clock``), then the last
    ``KafkaException`` is raised for the caller to say what it means."""
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=min(10.0, max(0.5, deadline - clock())))
        except KafkaException:
            if clock() + LEADER_RETRY_SECONDS >= deadline:
                raise
        sleep(LEADER_RETRY_SECONDS)
