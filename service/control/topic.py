"""The control topic on the broker: made when missing (unless ``IMGSWEEP_KAFKA__CREATE_TOPICS`` is false: then
named with its command), read from its beginning, written to. Blocking; start-up
and the command line only (the running replica reads it through ``ReplicaControls``, which never blocks).

One partition and ``cleanup.policy=compact``: one record per key (``collection:NAME``, ``account:NAME``) is kept,
so the topic stays as small as the stops in force, and a tombstone lifts a stop.
"""

from __future__ import annotations

import time
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin re-exports it implicitly only

from service.control.state import ControlTable, Stop, Target, UnknownRecord
from service.internal_topics import control_topic, create_command
from service.kafka_clients import admin_config, control_producer_config, control_reader_config, watermarks
from service.settings import ConfigError, Settings

__all__ = ["ensure_topic", "heard", "open_reader", "read_table", "write_stop"]

TIMEOUT: Final = 10.0


def ensure_topic(settings: Settings, timeout: float = TIMEOUT) -> bool:
    """Creates the control topic if the brokers do not have it (``service.internal_topics.control_topic``: one
    partition, compacted); True if it made it.

    ConfigError, naming the setting and the command that creates it, if it can be neither found nor created, or is
    missing and ``IMGSWEEP_KAFKA__CREATE_TOPICS`` is false."""
    topic = control_topic(settings)
    admin = AdminClient(admin_config(settings))
    try:
        found = admin.list_topics(topic.name, timeout=timeout).topics.get(topic.name)
        if found is not None and found.error is None:
            return False
        if not settings.kafka.create_topics:
            raise ConfigError(
                _cannot(
                    settings,
                    "does not exist (or this user may not describe it) and IMGSWEEP_KAFKA__CREATE_TOPICS is false",
                )
            )
        futures = admin.create_topics(
            [NewTopic(topic.name, num_partitions=1, replication_factor=-1, config=dict(topic.config))],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        futures[topic.name].result(timeout=timeout)
    except KafkaException as error:
        kafka_error: KafkaError = error.args[0]
        if kafka_error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise ConfigError(_cannot(settings, f"could not create it: {kafka_error.str()}")) from None
    return True


def _cannot(settings: Settings, why: str) -> str:
    kafka = settings.kafka
    return (
        f"IMGSWEEP_KAFKA__CONTROL_TOPIC: control topic {kafka.control_topic!r} on {kafka.bootstrap_servers}: {why}; "
        f"create it: {create_command(control_topic(settings), kafka.bootstrap_servers)}"
    )


def open_reader(settings: Settings, timeout: float = TIMEOUT) -> tuple[Consumer, int]:
    """A reader assigned to the control topic's beginning, and the topic's end now (what it must read first; 0
    when it holds no record)."""
    reader = Consumer(control_reader_config(settings))
    partition = TopicPartition(settings.kafka.control_topic, 0)
    try:
        low, end = watermarks(reader, partition, deadline=time.monotonic() + timeout)
    except KafkaException as error:
        reader.close()
        raise ConfigError(_cannot(settings, f"not readable: {error.args[0].str()}")) from None
    reader.assign([TopicPartition(settings.kafka.control_topic, 0, OFFSET_BEGINNING)])
    return reader, end if end > low else 0


def heard(table: ControlTable, message: Message) -> tuple[Target, Stop | None, Stop | None] | None:
    """Applies one record to ``table``: (its target, its stop or None for a tombstone, the stop it replaced).

    None for what is not a control record (an error, no key); UnknownRecord for a record of another shape."""
    key = message.key()
    if message.error() is not None or key is None:
        return None
    target = Target.parse(key.decode(errors="replace"))
    value = message.value()
    stop = None if value is None else Stop.decode(value)
    return target, stop, table.heard(target, stop)


def read_table(settings: Settings, timeout: float = TIMEOUT) -> ControlTable:
    """Every stop in force: the control topic read from its beginning to its end now."""
    reader, end = open_reader(settings, timeout)
    table = ControlTable()
    deadline = time.monotonic() + timeout
    try:
        while end > 0 and _position(reader, settings) < end:
            if time.monotonic() > deadline:
                raise ConfigError(_cannot(settings, f"not read to its end within {timeout:g} s"))
            messages = reader.consume(500, timeout=0.2)
            for message in messages:
                try:
                    heard(table, message)
                except UnknownRecord:
                    continue
            if any(_at_end(message) for message in messages):
                break
    finally:
        reader.close()
    return table


def _at_end(message: Message) -> bool:
    error = message.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF


def _position(reader: Consumer, settings: Settings) -> int:
    (position,) = reader.position([TopicPartition(settings.kafka.control_topic, 0)])
    return int(position.offset)


def write_stop(settings: Settings, target: Target, stop: Stop | None, timeout: float = TIMEOUT) -> None:
    """Produces a stop (or a tombstone) and waits for every in-sync replica to have it; ConfigError otherwise."""
    errors: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error.str())

    producer = Producer(control_producer_config(settings, **{"message.timeout.ms": int(timeout * 1000)}))
    producer.produce(
        settings.kafka.control_topic,
        key=target.key.encode(),
        value=None if stop is None else stop.encode(),
        on_delivery=delivered,
    )
    if producer.flush(timeout + 1) or errors:
        raise ConfigError(_cannot(settings, f"not written: {errors[0] if errors else 'no acknowledgement'}"))
