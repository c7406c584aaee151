"""The router stage: input records -> the collections topic, at their collection's partition (decision 0022).

Kafka Streams' repartition topic for a group-by: this stage reads the input topic in the user's group (input lag
and commits stay where operators look), decodes each record only to learn its collection, and forwards it
unchanged (key, value, headers, timestamp) with an ``imgsweep_origin`` header to the partition
``CollectionPartitions`` gives. The pipeline then reads the collections topic in its own group. With
exactly-once delivery each turn's records and the input's offsets are one transaction (the producer's id is the
instance's, with ``-router``, so a restarted pod fences its predecessor); with at-least-once, the records are
flushed, then the offsets committed. A record the router cannot read is forwarded all the same (the pipeline's
decode step dead-letters or skips it, the one place that does), and a record too large to forward whole goes as a
truncated copy naming its size and digest: nothing a record holds stops the router.

One thread runs ``run``; ``stop`` may be called from any thread (a signal handler).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from service.health import HealthState
from service.metrics.router import RouterMetrics
from service.pipeline.collections_topic import CollectionPartitions, RecordOrigin, origin_header
from service.pipeline.events import InvalidEvent, OtherEventType
from service.pipeline.pending import Headers, SourceRecord
from service.pipeline.poison import PoisonMarks
from service.pipeline.steps.decode import EventFormat
from service.pipeline.steps.publish import fit_dead_letter
from service.pipeline.steps.route import Routes

__all__ = ["Destination", "Router"]

log = logging.getLogger(__name__)

CONSUME_BATCH: Final = 500
POLL_SECONDS: Final = 0.2
LEAVE_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the router writes: the collections topic, its partitions dealt out by account, the accounts' order
    (the pipeline's lanes' order: account ``i`` owns partitions ``p % A == i``) and the producer's record limit."""

    topic: str
    partitions: CollectionPartitions
    accounts: Sequence[tuple[str, Sequence[str]]]
    max_record_bytes: int


class Router:
    def __init__(
        self, *, consumer: Consumer, producer: Producer, destination: Destination, events: EventFormat,
        health: HealthState, metrics: RouterMetrics, marks: PoisonMarks | None = None,
    ) -> None:  # fmt: skip
        """``producer``: transactional (exactly-once: ``init_transactions`` is called here) or not; ``marks``: which
        record the router is reading, remembered across a restart (a record that killed it once is forwarded
        without being read: the pipeline's own marks then dead-letter it, decision 0018)."""
        self._marks = marks or PoisonMarks(None, group="", limit=1)
        self._consumer, self._producer = consumer, producer
        self._to = destination
        self._routes = Routes(destination.accounts)
        self._number = {name: number for number, (name, _) in enumerate(destination.accounts)}
        self._events = events
        self._health, self._metrics = health, metrics
        self._transactional = False
        self._stop = threading.Event()
        self.failed: str | None = None
        """Why the router ended on its own (a fatal Kafka error): the process then ends too."""

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, input_topic: str, *, transactional: bool, on_end: Callable[[], None]) -> None:
        """Forwards until ``stop``; then commits what it forwarded, leaves the group and closes. ``on_end`` is
        called once it ended, whatever ended it (a fatal error stops the pipeline too)."""
        try:
            self._transactional = transactional
            if transactional:
                self._producer.init_transactions(30)  # fences a predecessor of the same id
            self._consumer.subscribe([input_topic])
            self._health.router = None
            log.info("router forwarding", extra={"topic": input_topic})
            while not self._stop.is_set():
                self._health.router_heartbeat = time.monotonic()
                self._turn()
        except KafkaException as error:
            self.failed = str(error.args[0])
            self._health.router = f"router stopped: {self.failed}"
            log.error("router stopped on a Kafka error: %s", self.failed)  # noqa: TRY400 - the error says it
        finally:
            self._close()
            on_end()

    def _turn(self) -> None:
        records = [m for m in self._consumer.consume(CONSUME_BATCH, timeout=POLL_SECONDS) if self._usable(m)]
        if not records:
            return
        if self._transactional:
            self._producer.begin_transaction()
        for message in records:
            self._forward(message)
        self._commit(records)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("router consumer error: %s", error.str(), extra={"code": str(error.code())})
            if error.fatal():
                raise KafkaException(error)
        return False

    def _forward(self, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return
        _, timestamp = message.timestamp()
        origin = RecordOrigin(topic, partition, offset, timestamp if timestamp > 0 else None)
        raw = message.headers() or []
        headers: Headers = [
            (name, value.encode() if isinstance(value, str) else value)
            for name, value in (raw.items() if isinstance(raw, dict) else raw)
        ]
        key, value = _bytes(message.key()), _bytes(message.value())
        mark = SourceRecord(topic, partition, offset, None, None, [], None)
        if self._marks.condemned(mark):
            origin = RecordOrigin(topic, partition, offset, origin.timestamp_ms, self._marks.failures(mark))
            self._marks.forget(mark)
            log.warning(
                "a record stopped the router before: forwarded without reading it",
                extra={"partition": partition, "offset": offset},
            )
            target, kind = self._to.partitions.unroutable(partition), "unroutable"
        else:
            with self._marks.handling(mark):
                target, kind = self._target(value, headers, partition)
        marked = [*headers, origin_header(origin)]
        fitted_key, fitted_value, fitted_headers = fit_dead_letter(key, value, marked, self._to.max_record_bytes)
        if fitted_headers is not marked:
            kind = "truncated"
            if not any(name == origin_header(origin)[0] for name, _ in fitted_headers):
                fitted_headers = [*fitted_headers, origin_header(origin)]
            log.warning(
                "record too large to forward whole: a truncated copy goes on (the pipeline dead-letters it)",
                extra={"partition": partition, "offset": offset, "count": len(value or b"")},
            )
        produced: list[tuple[str, str | bytes | None]] = list(fitted_headers)
        self._producer.produce(
            self._to.topic, value=fitted_value, key=fitted_key, headers=produced, partition=target,
            timestamp=origin.timestamp_ms or 0,
        )  # fmt: skip
        self._producer.poll(0)
        self._metrics.forwarded.labels(kind).inc()

    def _target(self, value: bytes | None, headers: Headers, partition: int) -> tuple[int, str]:
        """The collection's partition; for a record with no account's collection, its input partition folded."""
        try:
            collection = self._events(value, headers).collection_name
        except (InvalidEvent, OtherEventType):
            collection = None
        except Exception:  # the pipeline's decode step meets it again and dead-letters it
            log.exception("router could not read a record; it is forwarded for the pipeline to dead-letter")
            collection = None
        account = None if collection is None else self._routes.account_of(collection)
        if collection is None or account is None:
            return self._to.partitions.unroutable(partition), "unroutable"
        return self._to.partitions.partition_of(collection, self._number[account]), "event"

    def _commit(self, records: list[Message]) -> None:
        """The input's positions after ``records``, committed with what was forwarded (one transaction), or after
        the broker acknowledged it all. An aborted transaction's records are read again: the consumer goes back."""
        positions = _positions(records)
        try:
            self._send_commit(positions)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal() or (self._transactional and not error.txn_requires_abort() and not error.retriable()):
                raise
            self._metrics.commit_failures.inc()
            log.warning("router commit failed, its records are read again: %s", error.str())
            if self._transactional:
                self._producer.abort_transaction(30)
            self._rewind(records)
            return
        self._metrics.commits.inc()
        self._metrics.last_commit.set(time.time())

    def _send_commit(self, positions: list[TopicPartition]) -> None:
        if self._transactional:
            metadata = self._consumer.consumer_group_metadata()
            self._producer.send_offsets_to_transaction(positions, metadata, 30)
            self._producer.commit_transaction(60)
            return
        if self._producer.flush(60) > 0:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "forwarded records not acknowledged"))
        self._consumer.commit(offsets=positions, asynchronous=False)

    def _rewind(self, records: list[Message]) -> None:
        """Back to each partition's first record of the turn (those not committed)."""
        first: dict[tuple[str, int], int] = {}
        for message in records:
            first.setdefault((str(message.topic()), int(message.partition() or 0)), int(message.offset() or 0))
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException:  # revoked meanwhile: its next owner starts from the committed offset
                continue

    def _close(self) -> None:
        self._health.router = self._health.router or "router stopped"
        try:
            self._consumer.unsubscribe()
            deadline = time.monotonic() + LEAVE_SECONDS
            while self._consumer.assignment() and time.monotonic() < deadline:
                self._consumer.consume(CONSUME_BATCH, timeout=0.1)  # serves the revoke; records are not taken
            self._consumer.close()
        finally:
            self._producer.flush(5)
            log.info("router stopped")


def _positions(records: list[Message]) -> list[TopicPartition]:
    """The next offset to read of every partition ``records`` came from."""
    after: dict[tuple[str, int], int] = {}
    for message in records:
        after[(str(message.topic()), int(message.partition() or 0))] = int(message.offset() or 0) + 1
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in after.items()]


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
