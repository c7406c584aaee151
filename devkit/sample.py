"""``python -m devkit produce-sample``: a realistic stream of delist events, for demos, load and trying things out.

Several collections, products with 1 to 8 images, a share of images that are already gone, a share of
CloudEvents (structured and binary mode) and a share of invalid records (broken JSON, bad UTF-8, empty or
oversized image lists, wrong types), produced at a steady rate. With ``--seed-sandbox URL`` the images that
should exist are first stored in a sandbox, so the deletes find them.

The topic must be named (``--topic``); the configured input topic (``IMGSWEEP_KAFKA__INPUT_TOPIC``), which a
running imgsweep consumes and deletes images for, is written to only with ``--yes``. Anything else exits 2
before a record is made.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from confluent_kafka import Producer

from devkit.processes import Record, seed_images, send
from service.settings import ConfigError, load_settings

__all__ = ["SampleRecord", "SampleStream", "add_sample_command", "present_images"]

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class SampleRecord:
    key: bytes | None
    value: bytes | None
    headers: Headers
    kind: str
    """plain, cloudevents-structured, cloudevents-binary, or invalid"""
    present: list[tuple[str, str, str]] = field(default_factory=list)
    """(collection, product, image) that exist before the delete."""

    @property
    def record(self) -> Record:
        """(key, value, headers), as the harness produces it."""
        return self.key, self.value, self.headers


@dataclass
class SampleStream:
    collections: tuple[str, ...] = ("apparel", "shoes", "electronics", "home")
    invalid_fraction: float = 0.05
    absent_fraction: float = 0.1
    cloudevents_fraction: float = 0.2
    rng: random.Random = field(default_factory=random.Random)

    def records(self, count: int) -> Iterator[SampleRecord]:
        for n in range(count):
            if self.rng.random() < self.invalid_fraction:
                yield self._invalid(n)
            else:
                yield self._valid(n)

    def _valid(self, n: int) -> SampleRecord:
        collection = self.rng.choice(self.collections)
        product = str(10_000_000_000 + self.rng.randrange(90_000_000_000))
        images = [f"{product}-{i}.jpg" for i in range(self.rng.randint(1, 8))]
        present = [(collection, product, image) for image in images if self.rng.random() >= self.absent_fraction]
        fields = {"collection_name": collection, "product_id": product, "image_ids": images}
        now = datetime.now(UTC).isoformat()
        event_id = f"sample-{uuid.uuid4()}"
        roll = self.rng.random()
        if roll < self.cloudevents_fraction / 2:
            envelope = {
                "specversion": "1.0",
                "id": event_id,
                "source": "/catalog/sample",
                "type": "com.example.catalog.product-delisted",
                "time": now,
                "datacontenttype": "application/json",
                "data": fields,
            }
            headers: Headers = [("content-type", b"application/cloudevents+json")]
            return SampleRecord(product.encode(), _json(envelope), headers, "cloudevents-structured", present)
        if roll < self.cloudevents_fraction:
            headers = [
                ("ce_specversion", b"1.0"),
                ("ce_id", event_id.encode()),
                ("ce_source", b"/catalog/sample"),
                ("ce_type", b"com.example.catalog.product-delisted"),
                ("ce_time", now.encode()),
                ("content-type", b"application/json"),
            ]
            return SampleRecord(product.encode(), _json(fields), headers, "cloudevents-binary", present)
        document = {"event_id": event_id, **fields, "occurred_at": now}
        return SampleRecord(product.encode(), _json(document), [], "plain", present)

    def _invalid(self, n: int) -> SampleRecord:
        broken: list[bytes | None] = [
            b'{"event_id": "x", "collection_name": ',
            b"\xff\xfe not utf-8",
            _json({"event_id": "x", "collection_name": "shoes", "product_id": "p", "image_ids": []}),
            _json({"event_id": "x", "collection_name": "shoes", "product_id": "p", "image_ids": ["i"] * 31}),
            _json({"event_id": 7, "collection_name": "shoes", "product_id": "p", "image_ids": "a.jpg"}),
            _json({"event_id": "x", "collection_name": "sh\x00oes", "product_id": "p", "image_ids": ["a"]}),
            None,
        ]
        return SampleRecord(f"invalid-{n}".encode(), self.rng.choice(broken), [], "invalid")


def _json(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def present_images(records: Iterable[SampleRecord]) -> dict[str, list[tuple[str, str]]]:
    """The images that exist before the deletes: (product, image) pairs per collection, for a sandbox's seed."""
    by_collection: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        for collection, product, image in record.present:
            by_collection.setdefault(collection, []).append((product, image))
    return by_collection


EXIT_USAGE = 2
_INPUT_VARIABLE = "IMGSWEEP_KAFKA__INPUT_TOPIC"


class UsageError(Exception):
    """The command line asks for something the command will not do."""


def target_topic(topic: str | None, *, configured_input: str, yes: bool) -> str:
    """The topic to write to, or UsageError: synthetic events go to the configured input topic, which a service
    consumes and deletes images for, only when asked for with ``yes``; any other topic must be named."""
    if topic is None and not yes:
        raise UsageError(
            f"name the topic to write to with --topic, or add --yes to write to the configured input topic "
            f"{configured_input!r} ({_INPUT_VARIABLE})"
        )
    chosen = configured_input if topic is None else topic
    if chosen == configured_input and not yes:
        raise UsageError(
            f"refusing to write synthetic events to {configured_input!r}, the configured input topic "
            f"({_INPUT_VARIABLE}) that imgsweep consumes and deletes images for; name another topic, or add --yes "
            "if that is what you mean"
        )
    return chosen


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        topic = target_topic(args.topic, configured_input=settings.kafka.input_topic, yes=args.yes)
    except (ConfigError, UsageError) as error:
        print(f"devkit produce-sample: {error}", file=sys.stderr)
        return EXIT_USAGE
    stream = SampleStream(
        invalid_fraction=args.invalid_fraction,
        absent_fraction=args.absent_fraction,
        cloudevents_fraction=args.cloudevents_fraction,
        rng=random.Random(args.seed),
    )
    records = list(stream.records(args.count))
    if args.seed_sandbox:
        with httpx.Client(base_url=args.seed_sandbox.rstrip("/"), timeout=30, trust_env=False) as client:
            stored = seed_images(client, present_images(records))
        print(f"stored {stored} images in the sandbox at {args.seed_sandbox}", file=sys.stderr)
    producer = Producer({**settings.kafka.librdkafka_common(), "enable.idempotence": True, "linger.ms": 5})
    send(producer, topic, [record.record for record in records], rate=args.rate)
    kinds = Counter(record.kind for record in records)
    print(json.dumps({"produced": len(records), "topic": topic, "by_kind": dict(kinds)}))
    return 0


def add_sample_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "produce-sample",
        help="produce a realistic stream of delist events (some invalid, some CloudEvents) to a topic you name",
        description=__doc__,
    )
    parser.add_argument("--topic", help="the topic to write to (the configured input topic only with --yes)")
    parser.add_argument(
        "--yes",
        action="store_true",
        help="write to the configured input topic (IMGSWEEP_KAFKA__INPUT_TOPIC), which a running imgsweep consumes",
    )
    parser.add_argument("--count", type=int, default=1000, help="records to produce (default: 1000)")
    parser.add_argument("--rate", type=float, default=None, help="records per second (default: as fast as possible)")
    parser.add_argument("--invalid-fraction", type=float, default=0.05)
    parser.add_argument("--absent-fraction", type=float, default=0.1, help="images not in the collection")
    parser.add_argument("--cloudevents-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable stream")
    parser.add_argument("--seed-sandbox", metavar="URL", help="first store the present images in this sandbox")
    parser.set_defaults(handler=_run)
