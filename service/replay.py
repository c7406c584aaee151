"""``imgsweep replay-dlq``: put dead-lettered events back on the input topic, once their cause is fixed.

Reads the dead-letter topic from the beginning up to its end *as it was when the command started* (so a
replayed event that fails again cannot loop), keeps the records that match the filters, and republishes
each one's original key, value and headers (imgsweep's own ``imgsweep_*`` headers removed) to the input
topic. It commits nothing and can be run again; ``--dry-run`` only counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from service.kafka_clients import producer_config, reader_config
from service.pipeline.outcomes import DLQ_HEADER_PREFIX
from service.settings import ConfigError, Settings, load_settings

__all__ = ["ReplayFilter", "add_replay_command", "replay_dead_letters"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayFilter:
    error_classes: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None

    def matches(self, headers: dict[str, bytes]) -> bool:
        error_class = headers.get(f"{DLQ_HEADER_PREFIX}error_class", b"").decode(errors="replace")
        if self.error_classes and error_class not in self.error_classes:
            return False
        if self.since is None and self.until is None:
            return True
        try:
            at = datetime.fromisoformat(headers.get(f"{DLQ_HEADER_PREFIX}dead_lettered_at", b"").decode())
        except ValueError:
            return False
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)


def replay_dead_letters(settings: Settings, selection: ReplayFilter, *, dry_run: bool) -> dict[str, object]:
    """Republishes matching dead letters; returns counts by error class. Blocks until done."""
    kafka = settings.kafka
    consumer = Consumer(reader_config(settings, f"imgsweep-replay-{uuid.uuid4().hex[:8]}"))
    producer = Producer(producer_config(settings))
    metadata = consumer.list_topics(kafka.dlq_topic, timeout=10)
    topic = metadata.topics.get(kafka.dlq_topic)
    if topic is None or topic.error is not None or not topic.partitions:
        consumer.close()
        raise ConfigError(f"dead-letter topic {kafka.dlq_topic!r} does not exist (IMGSWEEP_KAFKA__DLQ_TOPIC)")
    ends: dict[int, int] = {}
    for partition in topic.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(kafka.dlq_topic, partition), timeout=10)
        if high > low:
            ends[partition] = high
    consumer.assign([TopicPartition(kafka.dlq_topic, partition, OFFSET_BEGINNING) for partition in ends])
    replayed: Counter[str] = Counter()
    skipped = 0
    failures: list[str] = []
    remaining = dict(ends)
    while remaining:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error() is not None:
            log.warning("reading the dead-letter topic: %s", message.error())
            continue
        partition, offset = message.partition(), message.offset()
        if partition is None or offset is None or partition not in remaining:
            continue
        if offset >= remaining[partition] - 1:
            del remaining[partition]
        if offset >= ends[partition]:
            continue
        headers = _headers(message)
        if not selection.matches(headers) or (
            selection.limit is not None and sum(replayed.values()) >= selection.limit
        ):
            skipped += 1
            continue
        error_class = headers.get(f"{DLQ_HEADER_PREFIX}error_class", b"").decode(errors="replace") or "unknown"
        replayed[error_class] += 1
        if not dry_run:
            original: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in headers.items() if not k.startswith(DLQ_HEADER_PREFIX)
            ]

            def delivered(error: object, _message: Message) -> None:
                if error is not None:
                    failures.append(str(error))

            producer.produce(
                kafka.input_topic, key=message.key(), value=message.value(), headers=original, on_delivery=delivered
            )
            producer.poll(0)
    consumer.close()
    undelivered = producer.flush(30)
    return {
        "dry_run": dry_run,
        "replayed": sum(replayed.values()),
        "by_error_class": dict(replayed),
        "skipped": skipped,
        "failed": len(failures) + undelivered,
        "to_topic": kafka.input_topic,
    }


def _headers(message: Message) -> dict[str, bytes]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {name: value.encode() if isinstance(value, str) else (value or b"") for name, value in pairs}


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        selection = ReplayFilter(
            error_classes=frozenset(args.error_class or ()),
            since=_aware(args.since, "--since"),
            until=_aware(args.until, "--until"),
            limit=args.limit,
        )
        summary = replay_dead_letters(settings, selection, dry_run=args.dry_run)
    except ConfigError as error:
        print(f"imgsweep replay-dlq: {error}", file=sys.stderr)
        return 2
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if summary["failed"] else 0


def _aware(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not an ISO 8601 time like 2026-11-23T08:00:00+00:00") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{flag} {value!r} needs a time zone, e.g. +00:00")
    return parsed


def add_replay_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay-dlq",
        help="republish dead-lettered events to the input topic (filters, --dry-run)",
        description=__doc__,
    )
    parser.add_argument(
        "--error-class",
        action="append",
        help="only records dead-lettered for this class (repeatable), e.g. retries_exhausted or invalid_json",
    )
    parser.add_argument("--since", help="only records dead-lettered at or after this ISO 8601 time")
    parser.add_argument("--until", help="only records dead-lettered before this ISO 8601 time")
    parser.add_argument("--limit", type=int, help="at most this many records")
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed, publish nothing")
    parser.set_defaults(handler=_run)
