"""A topic read to its end as a ``read_committed`` consumer sees it, without joining any group of imgsweep's."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message, TopicPartition

__all__ = ["messages_to_end"]


def messages_to_end(bootstrap: str, topic: str, timeout: float = 120) -> list[Message]:
    """Every committed record in the topic now (up to the high watermarks taken at the start): the last offsets
    may be transaction markers, which are never read, so the end is where the consumer's position reaches the
    watermark. Errors (a partition's end) are left out."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    messages: list[Message] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        remaining = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                remaining[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(1000, timeout=0.5) if m.error() is None)
            for position in consumer.position([TopicPartition(topic, p) for p in list(remaining)]):
                if position.offset >= remaining[position.partition]:
                    del remaining[position.partition]
        assert not remaining, f"could not read {topic} to its end"
    finally:
        consumer.close()
    return messages
