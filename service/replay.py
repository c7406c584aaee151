"""``imgsweep replay-dlq``: put dead-lettered events back on the input topic, once their cause is fixed.

Reads the dead-letter topic up to its end *as it was when the command started* (so a replayed event that fails
again cannot loop), from where its own consumer group stands, keeps the records that match the filters, and
republishes each one's original key, value and headers (imgsweep's ``imgsweep_*`` headers removed, repeated
header names kept in order) to the input topic, with ``imgsweep_replay_of_*`` headers naming the dead letter, so
the event's new outcome says which dead letter it answers (``replay_of``).

It resumes where it stopped: once the broker acknowledged a replayed copy, the group's position moves past the
dead letter (and past those the filters passed over before it), so running it again replays nothing twice. A
copy the broker refused holds its partition's position there; the next run tries again from it. ``--dry-run``
only counts, and commits nothing.

A dead letter written truncated (``imgsweep_truncated``: the record was larger than the producer takes) is passed
over: its copy is not the record. The original is on the input topic, where ``imgsweep_source_*`` say.

It runs as ``imgsweep run`` does: JSON log lines, librdkafka's configuration checked first, and a problem it
cannot get past (a misspelt property, no broker answering, an unknown ``--error-class``) is one line on stderr
and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from service.kafka_clients import producer_config, reader_config
from service.kafka_preflight import check_librdkafka_config
from service.logs import configure_logging
from service.pipeline.events import ERROR_CLASSES
from service.pipeline.outcomes import DLQ_HEADER_PREFIX, TRUNCATION_HEADERS, replay_of_headers
from service.pipeline.pending import DeadLetterRef, Headers
from service.settings import ConfigError, Settings, load_settings
from service.vocabulary import DeadLetterReason

__all__ = ["KNOWN_ERROR_CLASSES", "ReplayFilter", "add_replay_command", "default_group", "replay_dead_letters"]

log = logging.getLogger(__name__)

_ERROR_CLASS = f"{DLQ_HEADER_PREFIX}error_class"
_DEAD_LETTERED_AT = f"{DLQ_HEADER_PREFIX}dead_lettered_at"

Verdict = Literal["replay", "pass", "stop"]

KNOWN_ERROR_CLASSES: Final = (
    *ERROR_CLASSES,
    *(reason.value for reason in DeadLetterReason if reason is not DeadLetterReason.INVALID_EVENT),
)
"""The values of ``imgsweep_error_class``: the decoder's error classes and the reasons an event fails for good."""


@dataclass(frozen=True)
class ReplayFilter:
    error_classes: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None

    def verdict(self, headers: Headers) -> Verdict:
        """Replay the dead letter, pass over it (the group's position moves past it), or stop reading its
        partition there (it and the later ones stay for another run: dead letters come in time order)."""
        if self.since is not None or self.until is not None:
            try:
                at = datetime.fromisoformat((_first(headers, _DEAD_LETTERED_AT) or b"").decode())
            except ValueError:  # UnicodeDecodeError too
                return "pass"
            if at.tzinfo is None:
                return "pass"
            if self.until is not None and at >= self.until:
                return "stop"
            if self.since is not None and at < self.since:
                return "pass"
        if self.error_classes and _error_class(headers) not in self.error_classes:
            return "pass"
        return "replay"


def default_group(service_group: str, error_classes: frozenset[str]) -> str:
    """``<service group>.replay-dlq``, plus the error classes chosen: each selection resumes on its own, so
    replaying one class does not pass over the dead letters of another."""
    suffix = "." + "+".join(sorted(error_classes)) if error_classes else ""
    return f"{service_group}.replay-dlq{suffix}"


@dataclass
class _Progress:
    """One dead-letter partition, read up to ``end`` (its end when the command started). The group's position is
    past every record read, except one in flight or refused by the broker."""

    read_up_to: int
    end: int
    committed: int
    """The group's position as last committed (-1: none), asynchronously at first: the last commit is made
    again, synchronously, from ``started_at``."""
    started_at: int
    reading: bool = True
    inflight: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)

    def next_position(self) -> int:
        return min((*self.inflight, *self.refused), default=self.read_up_to)


def replay_dead_letters(
    settings: Settings, selection: ReplayFilter, *, dry_run: bool, group: str | None = None
) -> dict[str, object]:
    """Republishes matching dead letters, committing as it goes; returns counts by error class. Blocks until done."""
    kafka = settings.kafka
    group = group or default_group(kafka.group_id, selection.error_classes)
    consumer = Consumer(reader_config(settings, group))
    producer = Producer(producer_config(settings))
    try:
        progress = _assign(consumer, kafka.dlq_topic)
        summary = _replay(consumer, producer, progress, settings, selection, dry_run=dry_run)
    finally:
        consumer.close()
    return {**summary, "to_topic": kafka.input_topic, "group": group}


def _assign(consumer: Consumer, topic_name: str) -> dict[int, _Progress]:
    """Assigns each partition with records between the group's position (or its start) and its end now."""
    topic = consumer.list_topics(topic_name, timeout=10).topics.get(topic_name)
    if topic is None or topic.error is not None or not topic.partitions:
        raise ConfigError(f"dead-letter topic {topic_name!r} does not exist (IMGSWEEP_KAFKA__DLQ_TOPIC)")
    committed = consumer.committed([TopicPartition(topic_name, p) for p in topic.partitions], timeout=10)
    positions = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
    progress: dict[int, _Progress] = {}
    for partition in topic.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, partition), timeout=10)
        start = max(low, positions.get(partition, low))
        if high > start:
            position = positions.get(partition, -1)
            progress[partition] = _Progress(read_up_to=start, end=high, committed=position, started_at=position)
    consumer.assign(
        [
            TopicPartition(topic_name, p, state.read_up_to if p in positions else OFFSET_BEGINNING)
            for p, state in progress.items()
        ]
    )
    return progress


def _replay(
    consumer: Consumer,
    producer: Producer,
    progress: dict[int, _Progress],
    settings: Settings,
    selection: ReplayFilter,
    *,
    dry_run: bool,
) -> dict[str, object]:
    kafka = settings.kafka
    replayed: Counter[str] = Counter()
    skipped = truncated = 0
    failures: list[str] = []
    while any(state.reading for state in progress.values()) and (
        selection.limit is None or replayed.total() < selection.limit
    ):
        message = _next_dead_letter(consumer, kafka.dlq_topic, progress)
        producer.poll(0)
        if not dry_run:
            _commit(consumer, kafka.dlq_topic, progress, asynchronous=True)
        if message is None:
            continue
        partition, offset = message.partition(), message.offset()
        if partition is None or offset is None:
            continue
        state = progress.get(partition)
        if state is None or not state.reading or offset >= state.end:
            continue
        state.reading = offset < state.end - 1
        headers = _headers(message)
        verdict = selection.verdict(headers)
        if verdict == "stop":
            state.reading = False
            continue
        state.read_up_to = offset + 1
        if verdict == "pass":
            skipped += 1
            continue
        if _first(headers, TRUNCATION_HEADERS[0]) is not None:
            truncated += 1  # not the record: its original is on the input topic
            log.warning(
                "a truncated dead letter is not replayed: the original is on the input topic",
                extra={"partition": partition, "offset": offset},
            )
            continue
        replayed[_error_class(headers) or "unknown"] += 1
        if not dry_run:
            state.inflight.add(offset)
            copy_headers: list[tuple[str, str | bytes | None]] = [
                *((name, value) for name, value in headers if not name.startswith(DLQ_HEADER_PREFIX)),
                *replay_of_headers(DeadLetterRef(kafka.dlq_topic, partition, offset)),
            ]
            _republish(producer, kafka.input_topic, message, copy_headers, _on_delivery(state, offset, failures))
    undelivered = producer.flush(30)
    if not dry_run:
        try:
            _commit(consumer, kafka.dlq_topic, progress, asynchronous=False)
        except KafkaException as error:
            log.error("committing the replay's position failed; the next run replays again from the last one")  # noqa: TRY400
            failures.append(f"commit: {error}")
    return {
        "dry_run": dry_run,
        "replayed": replayed.total(),
        "by_error_class": dict(replayed),
        "skipped": skipped,
        "truncated": truncated,
        "failed": len(failures) + undelivered,
    }


def _next_dead_letter(consumer: Consumer, topic: str, progress: dict[int, _Progress]) -> Message | None:
    """The next record read, or None (none came: the partitions whose end is reached stop being read)."""
    message = consumer.poll(0.2)
    if message is None:
        _reached_ends(consumer, topic, progress)
        return None
    if message.error() is not None:
        log.warning("reading the dead-letter topic: %s", message.error())
        return None
    return message


def _reached_ends(consumer: Consumer, topic: str, progress: dict[int, _Progress]) -> None:
    """Partitions whose position passed the end taken at the start stop being read: the last offsets of a topic
    written in transactions are markers, which a consumer never receives."""
    reading = [partition for partition, state in progress.items() if state.reading]
    if not reading:
        return
    for position in consumer.position([TopicPartition(topic, partition) for partition in reading]):
        if position.offset >= progress[position.partition].end:
            progress[position.partition].reading = False


def _republish(
    producer: Producer,
    topic: str,
    message: Message,
    headers: list[tuple[str, str | bytes | None]],
    delivered: Callable[[KafkaError | None, Message], None],
) -> None:
    while True:
        try:
            producer.produce(topic, key=message.key(), value=message.value(), headers=headers, on_delivery=delivered)
        except BufferError:  # the producer's queue is full: let it deliver, then try again
            producer.poll(0.1)
        else:
            return


def _on_delivery(state: _Progress, offset: int, failures: list[str]) -> Callable[[KafkaError | None, Message], None]:
    def delivered(error: KafkaError | None, _message: Message) -> None:
        state.inflight.discard(offset)
        if error is not None:
            state.refused.add(offset)
            failures.append(str(error))

    return delivered


def _commit(consumer: Consumer, topic: str, progress: dict[int, _Progress], *, asynchronous: bool) -> None:
    """Commits every partition whose position moved: past what is read and acknowledged, never past a refusal.
    The synchronous commit at the end commits every position moved since the start (an asynchronous one may
    have failed unseen)."""
    moved = []
    for partition, state in progress.items():
        position = state.next_position()
        if position > (state.committed if asynchronous else state.started_at):
            moved.append((state, TopicPartition(topic, partition, position)))
    if not moved:
        return
    offsets = [tp for _, tp in moved]
    if asynchronous:
        consumer.commit(offsets=offsets, asynchronous=True)
    else:
        consumer.commit(offsets=offsets, asynchronous=False)
    for state, tp in moved:
        state.committed = tp.offset


def _first(headers: Headers, name: str) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


def _error_class(headers: Headers) -> str:
    return (_first(headers, _ERROR_CLASS) or b"").decode(errors="replace")


def _headers(message: Message) -> Headers:
    """Every header in order, repeated names kept (confluent-kafka gives a list of pairs)."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs]


def _run(args: argparse.Namespace) -> int:
    settings: Settings | None = None
    try:
        settings = _live_settings()
        configure_logging(settings.log.level, settings.log.format)
        for warning in check_librdkafka_config(settings):  # the same check as `imgsweep run`
            log.warning("librdkafka: %s", warning)
        selection = ReplayFilter(
            error_classes=_known(args.error_class or ()),
            since=_aware(args.since, "--since"),
            until=_aware(args.until, "--until"),
            limit=args.limit,
        )
        summary = replay_dead_letters(settings, selection, dry_run=args.dry_run, group=args.group)
    except ConfigError as error:
        print(f"imgsweep replay-dlq: {error}", file=sys.stderr)
        return 2
    except KafkaException as error:
        kafka_error = error.args[0] if error.args else error
        text = kafka_error.str() if isinstance(kafka_error, KafkaError) else str(kafka_error)
        print(
            f"imgsweep replay-dlq: IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS: Kafka at "
            f"{settings.kafka.bootstrap_servers if settings else '?'} did not answer as needed: {text}",
            file=sys.stderr,
        )
        return 2
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if summary["failed"] else 0


def _known(error_classes: Iterable[str]) -> frozenset[str]:
    unknown = sorted(set(error_classes) - set(KNOWN_ERROR_CLASSES))
    if unknown:
        raise ConfigError(
            f"--error-class {', '.join(unknown)}: not an error class imgsweep writes; one of: "
            + ", ".join(KNOWN_ERROR_CLASSES)
        )
    return frozenset(error_classes)


def _live_settings() -> Settings:
    settings = load_settings()
    if settings.dry_run:
        raise ConfigError(
            "IMGSWEEP_DRY_RUN is true: the dead letters are a dry run's (the .dry-run topic), and replaying them "
            "would put them on the live input topic; unset IMGSWEEP_DRY_RUN to replay the live dead letters"
        )
    return settings


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
        metavar="CLASS",
        help="only records dead-lettered for this class (repeatable): " + ", ".join(KNOWN_ERROR_CLASSES),
    )
    parser.add_argument(
        "--since", help="only records dead-lettered at or after this ISO 8601 time (older ones are passed over)"
    )
    parser.add_argument(
        "--until",
        help="only records dead-lettered before this ISO 8601 time (a partition stops at the first later one, "
        "which stays for another run)",
    )
    parser.add_argument("--limit", type=int, help="at most this many records; the rest stay for another run")
    parser.add_argument(
        "--group",
        help="the consumer group that remembers what was replayed (default: IMGSWEEP_KAFKA__GROUP_ID + "
        "'.replay-dlq', plus '.<class>[+<class>...]' with --error-class); a new name starts from the beginning",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed, publish and commit nothing"
    )
    parser.set_defaults(handler=_run)
