"""A real broker round trip: what the service relies on from Kafka, checked once end to end.

Keyed messages with headers go through an idempotent producer (acks=all) into three partitions and come
back through a consumer group that commits by hand: each exactly once, intact, in per-key order, and the
committed offsets are the ones the group asked for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

pytestmark = pytest.mark.integration

MESSAGES = 300
PARTITIONS = 3
KEYS = 17
TIMEOUT_S = 30.0

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True)
class Position:
    partition: int
    offset: int


def _record(seq: int) -> Record:
    """Message `seq`: a repeated key, and headers that exercise binary, empty and repeated values."""
    return Record(
        key=f"product-{seq % KEYS}".encode(),
        value=f'{{"seq": {seq}, "image": "jfs/t1/{seq}.jpg"}}'.encode(),
        headers=[
            ("seq", str(seq).encode()),
            ("binary", bytes([0, 255, seq % 256])),
            ("empty", None),
            ("collection", b"a"),
            ("collection", b"b"),
        ],
    )


def _headers(message: Message) -> Headers:
    headers = message.headers()
    assert isinstance(headers, list), f"headers came back as {headers!r}"
    return headers


def _seq(message: Message) -> int:
    value = dict(_headers(message))["seq"]
    assert isinstance(value, bytes)
    return int(value)


def _position(message: Message) -> Position:
    partition, offset = message.partition(), message.offset()
    assert partition is not None
    assert offset is not None
    return Position(partition, offset)


def _produce_all(bootstrap: str, topic: str) -> dict[int, Position]:
    """Produce every message and return where the broker acknowledged each one."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    acknowledged: dict[int, Position] = {}
    failures: list[str] = []

    def on_delivery(seq: int) -> Callable[[KafkaError | None, Message], None]:
        def record(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failures.append(f"{seq}: {error}")
            else:
                acknowledged[seq] = _position(message)

        return record

    for seq in range(MESSAGES):
        sent = _record(seq)
        producer.produce(topic, value=sent.value, key=sent.key, headers=sent.headers, on_delivery=on_delivery(seq))
        producer.poll(0)
    assert producer.flush(TIMEOUT_S) == 0, "messages still queued after flush"
    assert failures == []
    return acknowledged


def _consume_all(consumer: Consumer) -> list[Message]:
    received: list[Message] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(received) < MESSAGES and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=100, timeout=1.0):
            assert message.error() is None, message.error()
            received.append(message)
    return received


def test_keyed_messages_with_headers_round_trip_exactly_once(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=PARTITIONS)
    acknowledged = _produce_all(kafka_bootstrap, topic)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"it-{uuid.uuid4().hex[:16]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        # Asked before subscribing: once fetches are in flight, each watermark query waits out a fetch long-poll.
        high_watermarks = {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S)[1]
            for partition in range(PARTITIONS)
        }
        assert sum(high_watermarks.values()) == MESSAGES, "the idempotent producer wrote a duplicate"
        consumer.subscribe([topic])
        received = _consume_all(consumer)

        seqs = sorted(_seq(message) for message in received)
        assert seqs == list(range(MESSAGES)), "a message was lost or delivered twice"
        for message in received:
            seq = _seq(message)
            assert Record(message.key(), message.value(), _headers(message)) == _record(seq)
            assert _position(message) == acknowledged[seq]

        partition_of_key: dict[bytes | None, set[int]] = {}
        for message in received:
            partition_of_key.setdefault(message.key(), set()).add(_position(message).partition)
        assert all(len(partitions) == 1 for partitions in partition_of_key.values()), partition_of_key
        for key in partition_of_key:
            in_log_order = sorted((m for m in received if m.key() == key), key=lambda m: _position(m).offset)
            assert [_seq(m) for m in in_log_order] == sorted(_seq(m) for m in in_log_order), f"order of {key!r}"

        next_offset: dict[int, int] = {}
        for message in received:
            position = _position(message)
            next_offset[position.partition] = max(next_offset.get(position.partition, 0), position.offset + 1)
        assert set(next_offset) == set(range(PARTITIONS)), "the keys did not spread over every partition"
        assert next_offset == high_watermarks, "the group stopped short of the end of a partition"

        to_commit = [TopicPartition(topic, partition, offset) for partition, offset in sorted(next_offset.items())]
        results = consumer.commit(offsets=to_commit, asynchronous=False)
        assert [result.error for result in results] == [None] * PARTITIONS

        committed = consumer.committed(
            [TopicPartition(topic, partition) for partition in range(PARTITIONS)], timeout=TIMEOUT_S
        )
        assert {tp.partition: tp.offset for tp in committed} == next_offset
        assert all(tp.error is None for tp in committed)
    finally:
        consumer.close()
