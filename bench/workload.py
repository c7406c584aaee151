"""The data every figure is measured on: topics, a pre-loaded backlog, and a live stream at a steady rate.

Events come from :class:`devkit.sample.SampleStream` (several collections, 1 to 8 images per product, some
images already gone, some CloudEvents, a few invalid records), seeded so two runs produce the same stream.
The images that should exist are stored in the sandboxes, so deletes find them.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from devkit.sample import SampleRecord, SampleStream

__all__ = ["Backlog", "ImagesByCollection", "LiveStream", "create_topics", "preload_backlog", "produce_live"]

ImagesByCollection = dict[str, list[tuple[str, str]]]
CHUNK = 20_000
ADMIN_TIMEOUT = 60.0


def create_topics(admin: AdminClient, topics: Sequence[NewTopic]) -> None:
    """Blocks until the broker created every topic."""
    for future in admin.create_topics(list(topics), operation_timeout=ADMIN_TIMEOUT).values():
        future.result(ADMIN_TIMEOUT)


def _producer(bootstrap: str, linger_ms: int) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": 200_000,
        }
    )


def _produce(producer: Producer, topic: str, record: SampleRecord, on_delivery: Callable[..., None] | None) -> None:
    while True:
        try:
            producer.produce(topic, key=record.key, value=record.value, headers=record.headers, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.05)
        else:
            producer.poll(0)
            return


def _present(records: Sequence[SampleRecord], into: ImagesByCollection) -> None:
    for record in records:
        for collection, product, image in record.present:
            into.setdefault(collection, []).append((product, image))


@dataclass
class Backlog:
    """What was pre-loaded on the backlog topic."""

    topic: str
    partitions: int
    events: int
    kinds: Counter[str]
    images: int
    present_images: int
    head_present: ImagesByCollection
    """Images that exist, of the first ``head`` events only: what the 2-QPS sandboxes are seeded with."""
    seconds: float


def preload_backlog(
    bootstrap: str,
    topic: str,
    partitions: int,
    count: int,
    *,
    seed: int,
    head: int,
    seed_all: Callable[[ImagesByCollection], object],
    progress: Callable[[str], None],
) -> Backlog:
    """Produces ``count`` sample events, chunk by chunk so memory stays flat, handing each chunk's present
    images to ``seed_all`` (the instant sandbox). Blocks until the broker acknowledged every record."""
    started = time.monotonic()
    stream = SampleStream(rng=random.Random(seed))
    producer = _producer(bootstrap, linger_ms=20)
    kinds: Counter[str] = Counter()
    head_present: ImagesByCollection = {}
    images = present = produced = 0
    while produced < count:
        records = list(stream.records(min(CHUNK, count - produced)))
        chunk_present: ImagesByCollection = {}
        _present(records, chunk_present)
        seed_all(chunk_present)
        if produced < head:
            _present(records[: head - produced], head_present)
        for record in records:
            _produce(producer, topic, record, None)
            kinds[record.kind] += 1
        images += sum(len(_image_ids(record)) for record in records)
        present += sum(len(items) for items in chunk_present.values())
        produced += len(records)
        if produced % 100_000 == 0 or produced == count:
            progress(f"pre-loaded {produced}/{count} events")
    if producer.flush(120):
        raise RuntimeError("some backlog records were not acknowledged within 120 s")
    return Backlog(
        topic, partitions, produced, kinds, images, present, head_present, seconds=time.monotonic() - started
    )


def _image_ids(record: SampleRecord) -> list[str]:
    """The images a valid sample record names (the present ones plus the absent ones), from its value."""
    if record.kind == "invalid" or record.value is None:
        return []
    document = json.loads(record.value)
    fields = document.get("data", document)
    ids: list[str] = fields["image_ids"]
    return ids


@dataclass
class LiveStream:
    """A stream produced at a steady rate while imgsweep runs; when each valid event was stamped."""

    records: list[SampleRecord]
    rate: float
    created_ms: dict[bytes, int] = field(default_factory=dict)
    """The broker timestamp (CreateTime) of each valid event, by key (the product id)."""

    @classmethod
    def generate(cls, count: int, rate: float, *, seed: int) -> LiveStream:
        stream = SampleStream(rng=random.Random(seed))
        return cls(list(stream.records(count)), rate)

    def present(self) -> ImagesByCollection:
        images: ImagesByCollection = {}
        _present(self.records, images)
        return images

    @property
    def valid_keys(self) -> set[bytes]:
        return {record.key for record in self.records if record.kind != "invalid" and record.key is not None}


def produce_live(bootstrap: str, topic: str, live: LiveStream) -> None:
    """Produces ``live.records`` at ``live.rate`` a second; blocks until all are acknowledged."""
    producer = _producer(bootstrap, linger_ms=5)  # as devkit.sample does; CreateTime is stamped at produce()
    valid = live.valid_keys

    def delivered(error: KafkaError | None, message: Message) -> None:
        key = message.key()
        if error is None and key in valid:
            live.created_ms[key] = message.timestamp()[1]

    started = time.monotonic()
    for n, record in enumerate(live.records):
        delay = started + n / live.rate - time.monotonic()
        if delay > 0:
            producer.poll(delay)
        _produce(producer, topic, record, delivered)
    if producer.flush(60):
        raise RuntimeError("some live records were not acknowledged within 60 s")
