"""imgsweep's producers put a key where Java's producer would: on ``toPositive(murmur2(key)) % partitions``.

Keys go through a producer built from ``producer_config`` (as outcomes, dead letters and replays are) into a topic
of seven partitions; each comes back on the partition that Java's partitioner, written out in
``tests/support/murmur2.py``, gives for it. librdkafka's default partitioner (CRC32) would put most elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from service.kafka_clients import producer_config
from service.settings import load_settings
from tests.support.murmur2 import java_partition

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settings_from_the_test_only")]

PARTITIONS = 7
KEYS = [f"product-{n}".encode() for n in range(40)] + [b"21", b"foobar", "商品-7".encode()]


def test_a_key_lands_on_the_partition_javas_murmur2_gives(
    kafka_bootstrap: str, new_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = new_topic(partitions=PARTITIONS)
    monkeypatch.setenv("IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    producer = Producer(producer_config(load_settings()))
    for key in KEYS:
        producer.produce(topic, key=key, value=b"v")
    assert producer.flush(30) == 0

    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    landed: dict[bytes, int] = {}
    try:
        for _ in range(150):
            for message in consumer.consume(100, timeout=0.2):
                raw, partition = message.key(), message.partition()
                if message.error() is None and isinstance(raw, bytes) and partition is not None:
                    landed[raw] = partition
            if len(landed) == len(KEYS):
                break
    finally:
        consumer.close()
    assert landed == {key: java_partition(key, PARTITIONS) for key in KEYS}
    assert len(set(landed.values())) > 1
